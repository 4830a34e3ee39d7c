package admin

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/portier/portier/balancer"
)

// /routes lists a quic route's quic:// backends beside its other schemes.
func TestPoolBackendsQUIC(t *testing.T) {
	r := balancer.RouteSpec{Name: "h3.test", Backends: []string{"quic://127.0.0.1:9443", "tls://127.0.0.1:9443"}}
	table, err := balancer.NewTable(context.Background(), []balancer.RouteSpec{r}, "", balancer.TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bes, ok := poolBackends(table, r)
	if !ok || len(bes) != 2 {
		t.Fatalf("ok %v, backends %v", ok, bes)
	}
	schemes := bes[0].Spec.Scheme.String() + "," + bes[1].Spec.Scheme.String()
	if !strings.Contains(schemes, "quic") || !strings.Contains(schemes, "tls") {
		t.Errorf("schemes %s", schemes)
	}
}

func TestMetricsQUIC(t *testing.T) {
	e := newEnv(t, nil)
	resp, body := e.do(t, http.MethodGet, "/metrics")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	for _, want := range []string{"portier_quic_flows 0", `portier_quic_datagrams_total{direction="up"}`,
		`portier_quic_drops_total{reason="not_initial"}`, `portier_quic_flows_total{outcome="idle_timeout"}`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

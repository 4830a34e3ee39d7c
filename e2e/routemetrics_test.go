package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRouteMetrics: a route with metrics: true gets exact connection and
// byte counters, other routes none; route_metrics' top N names the busiest
// routes of the last window and sums the rest as "(other)".
func TestRouteMetrics(t *testing.T) {
	body := func(n int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(strings.Repeat("x", n)))
		})
	}
	big := startOpsBackend(t, "big", body(20000))
	mid := startOpsBackend(t, "mid", body(5000))
	small := startOpsBackend(t, "small", body(10))
	yml := fmt.Sprintf(`listeners:
  - {name: web, address: "127.0.0.1:0", protocol: http}
routes:
  watched.test:
    metrics: true
    backends: [http://%s]
  busy.test: [http://%s]
  quiet.test: [http://%s]
loops: 1
admin: 127.0.0.1:0
route_metrics: {top: 2, window: 1s}
`, small.addr, big.addr, mid.addr)
	p := startPortier(t, yml)
	admin := opsAdminAddr(t, p)
	c := opsClient(nil)
	get := func(host string, n int) {
		for range n {
			if st, _, err := opsGet(c, p.addr("web"), host, "/"); err != nil || st != 200 {
				t.Fatalf("GET %s: %d %v", host, st, err)
			}
		}
	}
	// One connection per request (opsClient does not keep connections
	// alive), so connections = requests. Rounds go on until a published
	// window holds a complete round (a round takes far less than the 1 s
	// window, so one comes): then busy.test and quiet.test lead the top 2
	// by bytes whatever partial rounds the window also holds.
	inTop := func(text, name string) bool {
		_, ok := opsMetric(text, "portier_route_top_bytes_per_second", map[string]string{"route": name, "direction": "down"})
		return ok
	}
	rounds := 0
	var text string
	deadline := time.Now().Add(20 * time.Second)
	for {
		get("watched.test", 5)
		get("busy.test", 3)
		get("quiet.test", 2)
		rounds++
		text = opsScrape(t, admin)
		if inTop(text, "busy.test") && inTop(text, "quiet.test") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("busy.test and quiet.test never both in the top 2 within 20 s:\n%s", opsGrep(text, "portier_route_top"))
		}
	}
	if inTop(text, "watched.test") || !inTop(text, "(other)") {
		t.Errorf("top 2 lists watched.test or lacks (other):\n%s", opsGrep(text, "portier_route_top"))
	}
	// The opt-in counter is exact: every connection, once it has ended.
	want := float64(5 * rounds)
	for {
		text = opsScrape(t, admin)
		v, _ := opsMetric(text, "portier_route_connections_total", map[string]string{"route": "watched.test"})
		if v == want {
			break
		}
		if v > want || time.Now().After(deadline.Add(10*time.Second)) {
			t.Fatalf("watched.test connections %v, want %v", v, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v, _ := opsMetric(text, "portier_route_bytes_total", map[string]string{"route": "watched.test", "direction": "down"}); v < want*10 {
		t.Errorf("watched.test bytes down %v, want at least %v", v, want*10)
	}
	for _, name := range []string{"busy.test", "quiet.test"} {
		if _, ok := opsMetric(text, "portier_route_connections_total", map[string]string{"route": name}); ok {
			t.Errorf("%s has a per-route counter without metrics: true", name)
		}
	}
	t.Logf("%d rounds", rounds)
}

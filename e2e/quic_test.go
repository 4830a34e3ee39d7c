package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/portier/portier/internal/selfsigned"
)

// The binary with a `protocol: quic` listener: HTTP/3 through it to a quic-go
// backend, with active health checks running (a quic:// backend is checked by
// version negotiation, so it stays up), and the quic metrics on /metrics.
func TestQUICBinary(t *testing.T) {
	cert, err := selfsigned.Certificate("h3.test")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http3.Server{
		TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "h3 backend %s %s", r.Host, r.Proto)
		}),
	}
	go func() { _ = srv.Serve(pc) }()
	t.Cleanup(func() { _ = srv.Close(); _ = pc.Close() })

	p := startPortier(t, fmt.Sprintf(`listeners:
  - {name: h3, address: "127.0.0.1:0", protocol: quic}
routes:
  h3.test: ["quic://%s"]
health: {check: tcp, interval: 100ms, timeout: 100ms, rise: 1, fall: 2}
timeouts: {shutdown: 2s}
admin: 127.0.0.1:0
`, pc.LocalAddr()))
	addr := p.addr("h3")
	if addr == "" {
		t.Fatalf("no quic listener address in the log:\n%s", p.logText())
	}
	// Several check intervals: a failing check would have marked the backend down.
	time.Sleep(500 * time.Millisecond)
	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, cfg *quicgo.Config) (*quicgo.Conn, error) {
			return quicgo.DialAddr(ctx, addr, tlsCfg, cfg)
		},
	}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://h3.test/", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("HTTP/3 through portier: %v\n%s", err, p.logText())
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "h3 backend h3.test HTTP/3.0" {
		t.Fatalf("body %q", body)
	}
	if strings.Contains(p.logText(), "backend down") {
		t.Errorf("the quic backend was marked down:\n%s", p.logText())
	}
	metrics := opsScrape(t, opsAdminAddr(t, p))
	if v, ok := opsMetric(metrics, "portier_quic_flows", nil); !ok || v != 1 {
		t.Errorf("portier_quic_flows = %v (present %v), want 1", v, ok)
	}
	if v, ok := opsMetric(metrics, "portier_quic_split_client_hellos_total", nil); !ok || v != 1 {
		t.Errorf("portier_quic_split_client_hellos_total = %v, want 1", v)
	}
	_ = tr.Close()
	if err := p.stop(t); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}

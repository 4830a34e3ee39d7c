package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/portier/portier/internal/redistest"
)

// backendUpMetric reads portier_backend_up for an http backend addr.
func backendUpMetric(t *testing.T, admin, addr string) string {
	t.Helper()
	v, ok := opsMetric(opsScrape(t, admin), "portier_backend_up", map[string]string{"backend": addr, "scheme": "http"})
	if !ok {
		return "absent"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// TestFleetSharesHealth: portier A checks a backend actively, portier B does
// not check at all; when A sees the backend die, B skips it too, through
// Redis, and both see it come back.
func TestFleetSharesHealth(t *testing.T) {
	rs := redistest.Start(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	serve := func(ln net.Listener) *http.Server {
		s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
		go s.Serve(ln)
		return s
	}
	srv := serve(ln)
	defer func() { srv.Close() }()

	conf := func(check string) string {
		return fmt.Sprintf(`listeners: [{name: web, address: 127.0.0.1:0, protocol: http}]
routes:
  fleet.test:
    health: {check: %s, interval: 200ms, timeout: 150ms, rise: 1, fall: 1}
    backends: [http://%s]
admin: 127.0.0.1:0
redis: {url: %q, resync: 1s}
`, check, addr, rs.URL())
	}
	a := startPortier(t, conf("tcp"))
	b := startPortier(t, conf("none"))
	adminA, adminB := opsAdminAddr(t, a), opsAdminAddr(t, b)
	waitMetric := func(admin, want string, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			got := backendUpMetric(t, admin, addr)
			if got == want {
				return time.Since(start)
			}
			if time.Since(start) > within {
				t.Fatalf("portier_backend_up at %s = %s, want %s within %s", admin, got, want, within)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitMetric(adminA, "1", 3*time.Second)
	waitMetric(adminB, "1", 3*time.Second)

	srv.Close() // the backend dies; only A checks it
	downA := waitMetric(adminA, "0", 3*time.Second)
	downB := waitMetric(adminB, "0", 3*time.Second)
	t.Logf("backend down: seen by A after %v, by B (no checks of its own) %v later", downA.Round(time.Millisecond), downB.Round(time.Millisecond))

	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("relisten on %s: %v", addr, err)
	}
	srv = serve(ln2)
	upA := waitMetric(adminA, "1", 3*time.Second)
	upB := waitMetric(adminB, "1", 3*time.Second)
	t.Logf("backend back: seen by A after %v, by B %v later", upA.Round(time.Millisecond), upB.Round(time.Millisecond))

	// B routes to it again.
	req, _ := http.NewRequest("GET", "http://"+b.addr("web")+"/", nil)
	req.Host = "fleet.test"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Fatalf("through B: %q", body)
	}
}

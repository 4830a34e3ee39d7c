package engine

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
)

// TestIPv6EndToEnd: listeners and backends on ::1, for HTTP (with the
// forwarding headers an IPv6 client gets) and TLS passthrough.
func TestIPv6EndToEnd(t *testing.T) {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "xff="+r.Header.Get("X-Forwarded-For")+" fwd="+r.Header.Get("Forwarded")+" from="+r.RemoteAddr)
	}))
	hs.Listener = ln
	hs.Start()
	t.Cleanup(hs.Close)
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "tls ok") }))
	ts.Listener, err = net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.StartTLS()
	t.Cleanup(ts.Close)

	p := startProxy(t, []balancer.RouteSpec{{Name: "v6.test", Backends: []string{
		"http://" + ln.Addr().String(), "tls://" + ts.Listener.Addr().String()}}}, "", func(o *Options) {
		o.Listeners[0].Address = "[::1]:0"
		o.Listeners[1].Address = "[::1]:0"
	})
	if !strings.HasPrefix(p.httpAddr, "[::1]:") || !strings.HasPrefix(p.tlsAddr, "[::1]:") {
		t.Fatalf("listeners bound to %s and %s", p.httpAddr, p.tlsAddr)
	}
	got := string(rawExchange(t, p.httpAddr, []byte("GET / HTTP/1.1\r\nHost: v6.test\r\nConnection: close\r\n\r\n")))
	if !strings.Contains(got, `xff=::1 fwd=for="[::1]";host="v6.test";proto=http from=[::1]:`) {
		t.Fatalf("HTTP over IPv6: %q", got)
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp6", p.tlsAddr, tlsClientConfig("v6.test"))
	if err != nil {
		t.Fatalf("TLS over IPv6: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: v6.test\r\nConnection: close\r\n\r\n")
	body, _ := io.ReadAll(c)
	if !strings.HasSuffix(string(body), "tls ok") {
		t.Fatalf("TLS over IPv6: %q", body)
	}
}

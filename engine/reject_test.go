package engine

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
)

func TestHTTPRejections(t *testing.T) {
	curl := need(t, "curl")
	be := httpBackend(t, "a")
	p := startProxy(t, []balancer.RouteSpec{
		{Name: "app1.test", Backends: []string{"http://" + be}},
		{Name: "dead.test", Backends: []string{"http://" + deadAddr(t), "http://" + deadAddr(t)}},
	}, "", func(o *Options) { o.HandshakeTimeout = 400 * time.Millisecond })

	statusOf := func(host string) string {
		out, _ := runCmd(t, 10*time.Second, curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: "+host, "http://"+p.httpAddr+"/")
		return out
	}
	if got := statusOf("unknown.test"); got != "404" {
		t.Errorf("unknown name: status %s, want 404", got)
	}
	if got := statusOf("dead.test"); got != "502" {
		t.Errorf("unreachable pool: status %s, want 502", got)
	}
	raw := []struct {
		name, req, want string
	}{
		{"no Host", "GET / HTTP/1.0\r\n\r\n", "HTTP/1.1 400 "},
		{"malformed header", "GET / HTTP/1.1\r\nHost: app1.test\r\nBad Header\r\n\r\n", "HTTP/1.1 400 "},
		{"TLS on the HTTP port", "\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", "HTTP/1.1 400 "},
		{"head too large", "GET / HTTP/1.1\r\nHost: app1.test\r\nX-Big: " + strings.Repeat("a", 17<<10) + "\r\n\r\n", "HTTP/1.1 431 "},
		{"incomplete then timeout", "GET / HTTP/1.1\r\nHost: app1.t", "HTTP/1.1 408 "},
	}
	for _, tc := range raw {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", p.httpAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(c, tc.req); err != nil {
				t.Fatal(err)
			}
			// While this connection is being rejected, others are served.
			if got := statusOf("app1.test"); got != "200" {
				t.Errorf("a normal request during the bad one got %s", got)
			}
			resp, err := io.ReadAll(c)
			if !strings.HasPrefix(string(resp), tc.want) {
				t.Errorf("got %q (%v), want prefix %q", resp, err, tc.want)
			}
		})
	}
	for _, reason := range []string{"no route for this name", "no backend reachable", "malformed request", "too large", "handshake timeout"} {
		if !p.log.has(reason) {
			t.Errorf("no log line says %q", reason)
		}
	}
}

// readAlert reads until EOF and returns the alert description of a fatal
// alert record, or -1 when the connection closed without one.
func readAlert(t *testing.T, c net.Conn) int {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if len(b) == 0 {
		return -1
	}
	if len(b) != 7 || b[0] != 21 || b[5] != 2 {
		t.Fatalf("not a fatal alert record: % x", b)
	}
	return int(b[6])
}

func TestTLSRejections(t *testing.T) {
	openssl := need(t, "openssl")
	be := tlsBackend(t, "one")
	p := startProxy(t, []balancer.RouteSpec{
		{Name: "one.test", Backends: []string{"tls://" + be}},
		{Name: "dead.test", Backends: []string{"tls://" + deadAddr(t)}},
	}, "", func(o *Options) {
		o.HandshakeTimeout = 400 * time.Millisecond
		o.MaxHeaderBytes = 1024
	})

	sClient := func(args ...string) string {
		args = append([]string{"s_client", "-connect", p.tlsAddr}, args...)
		cmd := append([]string{}, args...)
		out, _ := runCmd(t, 10*time.Second, openssl, cmd...)
		return out
	}
	// OpenSSL's small ClientHello (no ML-KEM share) fits the 1 KiB limit.
	if out := sClient("-servername", "unknown.test", "-groups", "X25519"); !strings.Contains(out, "alert number 112") {
		t.Errorf("unknown SNI: openssl says %q, want alert 112 (unrecognized_name)", out)
	}
	if out := sClient("-noservername", "-groups", "X25519"); !strings.Contains(out, "alert number 112") {
		t.Errorf("no SNI: openssl says %q, want alert 112", out)
	}
	if out := sClient("-servername", "dead.test", "-groups", "X25519"); !strings.Contains(out, "alert number 80") {
		t.Errorf("unreachable: openssl says %q, want alert 80 (internal_error)", out)
	}
	// Go's ClientHello with its ML-KEM key share is larger than the 1 KiB limit.
	_, err := tls.Dial("tcp", p.tlsAddr, tlsClientConfig("one.test"))
	if err == nil || !strings.Contains(err.Error(), "remote error: tls: illegal parameter") {
		t.Errorf("ClientHello over the limit: %v, want alert 47 (illegal_parameter)", err)
	}

	raw := []struct {
		name  string
		bytes string
		alert int
	}{
		{"malformed ClientHello", "\x16\x03\x01\x00\x06\x01\x00\x00\x02\x03\x03", 50},
		{"not a handshake record", "\x17\x03\x03\x00\x01\x00", -1},
		{"truncated then timeout", "\x16\x03\x01\x02\x00\x01\x00\x01", -1},
	}
	for _, tc := range raw {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", p.tlsAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tc.bytes); err != nil {
				t.Fatal(err)
			}
			if got := readAlert(t, c); got != tc.alert {
				t.Errorf("alert %d, want %d", got, tc.alert)
			}
		})
	}
	// Plain HTTP on the TLS port gets a readable answer.
	resp := rawExchange(t, p.tlsAddr, []byte("GET / HTTP/1.1\r\nHost: one.test\r\n\r\n"))
	if !strings.Contains(string(resp), "plain HTTP request sent to a TLS port") {
		t.Errorf("plain HTTP on the TLS port: %q", resp)
	}
}

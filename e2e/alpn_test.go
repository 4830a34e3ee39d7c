package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/portier/portier/internal/selfsigned"
)

// alpnBackend is a TLS server that completes the handshake, writes its name
// and closes: which backend a connection reached is what the client reads.
func alpnBackend(t *testing.T, name string) string {
	t.Helper()
	cert, err := selfsigned.Certificate("alpn.test")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1", "acme-tls/1", "x-other"}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				tc := tls.Server(c, cfg)
				if tc.Handshake() == nil { // health checks connect and close
					_, _ = io.WriteString(tc, name)
					_ = tc.Close()
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestALPNRouting: a route's per-ALPN pools get the TLS clients that offer
// their protocol first among those the route has a pool for; other clients
// (no ALPN, or only unknown protocols) get the route's own backends.
func TestALPNRouting(t *testing.T) {
	site, acme, h2, h1 := alpnBackend(t, "site"), alpnBackend(t, "acme"), alpnBackend(t, "h2"), alpnBackend(t, "h1")
	yml := fmt.Sprintf(`listeners:
  - {name: secure, address: "127.0.0.1:0", protocol: tls}
routes:
  alpn.test:
    backends: [tls://%s]
    alpn:
      acme-tls/1: [tls://%s]
      h2: [tls://%s]
      http/1.1: [tls://%s]
loops: 1
`, site, acme, h2, h1)
	p := startPortier(t, yml)
	tests := []struct {
		offer []string
		want  string
	}{
		{nil, "site"},
		{[]string{"acme-tls/1"}, "acme"},
		{[]string{"h2", "http/1.1"}, "h2"},
		{[]string{"http/1.1", "h2"}, "h1"},
		{[]string{"x-other", "http/1.1"}, "h1"},
		{[]string{"x-other"}, "site"},
	}
	for _, tc := range tests {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", p.addr("secure"),
			&tls.Config{ServerName: "alpn.test", NextProtos: tc.offer, InsecureSkipVerify: true})
		if err != nil {
			t.Errorf("offer %q: %v", tc.offer, err)
			continue
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		c.Close()
		if string(got) != tc.want {
			t.Errorf("offer %q: reached %q (%v), want %q", tc.offer, got, err, tc.want)
		}
	}
}

package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/portier/portier/internal/redistest"
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

// alpnReach connects offering protos and returns the backend's name ("" on
// any error).
func alpnReach(addr, name string, protos ...string) string {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: name, NextProtos: protos, InsecureSkipVerify: true})
	if err != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(c)
	return string(b)
}

// TestALPNRoutingRedis: frontend:<name>@<alpn> keys add ALPN pools to a
// Redis route, live, and removing the key sends those clients back to the
// route's backends.
func TestALPNRoutingRedis(t *testing.T) {
	r := redistest.Start(t)
	site, acme := alpnBackend(t, "site"), alpnBackend(t, "acme")
	p := startRedisPortier(t, fmt.Sprintf(`listeners:
  - {name: secure, address: "127.0.0.1:0", protocol: tls}
loops: 1
redis:
  url: %s
`, r.URL()))
	addr := p.addr("secure")
	r.Cli("RPUSH", "frontend:r.test", "r", "tls://"+site)
	r.Cli("RPUSH", "frontend:r.test@acme-tls/1", "r-acme", "tls://"+acme)
	wait := func(what, want string, protos ...string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for alpnReach(addr, "r.test", protos...) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: offer %q never reached %s\n%s", what, protos, want, p.logText())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	wait("ALPN key added", "acme", "acme-tls/1")
	if got := alpnReach(addr, "r.test", "h2"); got != "site" {
		t.Errorf("offer h2 reached %q, want site", got)
	}
	r.Cli("DEL", "frontend:r.test@acme-tls/1")
	wait("ALPN key removed", "site", "acme-tls/1")
}

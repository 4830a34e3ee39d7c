package engine

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
)

// testLogWriter sends the engine's log lines to the test log.
type testLogWriter struct {
	mu  sync.Mutex
	t   testing.TB
	buf strings.Builder
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	w.t.Logf("portier: %s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// has waits (up to 5 s) for a line containing sub: the loops' lines are
// written by the event log's writer goroutine, shortly after the event.
func (w *testLogWriter) has(sub string) bool {
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(w.String(), sub); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

func (w *testLogWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

type proxy struct {
	e         *Engine
	httpAddr  string
	tlsAddr   string
	log       *testLogWriter
	httpPort  string
	tlsPortNo string
}

// startProxy runs an engine with one http and one tls listener on loopback.
func startProxy(t testing.TB, routes []balancer.RouteSpec, def string, mod func(*Options)) *proxy {
	t.Helper()
	table, err := balancer.NewTable(context.Background(), routes, def, balancer.TableOptions{})
	if err != nil {
		t.Fatalf("NewTable: %v", err)
	}
	lw := &testLogWriter{t: t}
	opts := Options{
		Listeners: []ListenerSpec{
			{Name: "web", Address: "127.0.0.1:0", Scheme: balancer.SchemeHTTP},
			{Name: "secure", Address: "127.0.0.1:0", Scheme: balancer.SchemeTLS},
		},
		Router: balancer.NewRouter(table),
		Loops:  2,
		Logger: slog.New(slog.NewTextHandler(lw, nil)),
	}
	if mod != nil {
		mod(&opts)
	}
	e, err := New(opts)
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	e.Start()
	t.Cleanup(func() { _ = e.Close() })
	p := &proxy{e: e, log: lw, httpAddr: e.Addrs()[0].String(), tlsAddr: e.Addrs()[1].String()}
	_, p.httpPort, _ = net.SplitHostPort(p.httpAddr)
	_, p.tlsPortNo, _ = net.SplitHostPort(p.tlsAddr)
	return p
}

// httpBackend serves "backend=<name> host=<Host>" and /big bodies.
func httpBackend(t testing.TB, name string) string {
	t.Helper()
	s := httptest.NewServer(backendHandler(name))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// tlsBackend serves the same over HTTPS with httptest's self-signed certificate.
func tlsBackend(t testing.TB, name string) string {
	t.Helper()
	s := httptest.NewUnstartedServer(backendHandler(name))
	s.EnableHTTP2 = true
	s.TLS = &tls.Config{NextProtos: []string{"h2", "http/1.1"}}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

func backendHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "backend=%s host=%s proto=%s body=%d\n", name, r.Host, r.Proto, len(body))
	})
}

// deadAddr returns a loopback address nobody listens on.
func deadAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func need(t testing.TB, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s is not installed (.ci/run installs it: apt-get install -y %s)", tool, tool)
	}
	return p
}

func runCmd(t testing.TB, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// rawExchange writes req, half-closes, and returns everything read back.
func rawExchange(t testing.TB, addr string, req []byte) []byte {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, _ := io.ReadAll(c)
	return resp
}

func tlsClientConfig(name string) *tls.Config {
	return &tls.Config{ServerName: name, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}
}

package engine

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portier/portier/accesslog"
	"github.com/portier/portier/balancer"
)

// TestPerIPLimit: the third simultaneous connection from one address gets
// 503 and is counted; another address and later connections are fine.
func TestPerIPLimit(t *testing.T) {
	be := httpBackend(t, "lim")
	p := startProxy(t, []balancer.RouteSpec{{Name: "lim.test", Backends: []string{"http://" + be}}}, "", func(o *Options) {
		o.MaxConnectionsPerIP = 2
	})
	dial := func(src string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", p.httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}
	held := []net.Conn{dial("127.0.0.31"), dial("127.0.0.31")}
	waitFor(t, func() bool { return p.e.Stats().Open.Load() == 2 })
	third := dial("127.0.0.31")
	got, _ := io.ReadAll(third)
	if !strings.HasPrefix(string(got), "HTTP/1.1 503 ") || !strings.Contains(string(got), "connection limit reached") {
		t.Fatalf("third connection got %q, want 503", got)
	}
	if n := p.e.Stats().Limited[LimitPerIP].Load(); n != 1 {
		t.Fatalf("per-IP limit counted %d times, want 1", n)
	}
	other := dial("127.0.0.32")
	io.WriteString(other, "GET / HTTP/1.1\r\nHost: lim.test\r\nConnection: close\r\n\r\n")
	if got, _ := io.ReadAll(other); !strings.Contains(string(got), "backend=lim") {
		t.Fatalf("another address: %q", got)
	}
	for _, c := range append(held, third, other) {
		c.Close()
	}
	waitFor(t, func() bool { return p.e.Stats().Open.Load() == 0 })
	again := dial("127.0.0.31")
	io.WriteString(again, "GET / HTTP/1.1\r\nHost: lim.test\r\nConnection: close\r\n\r\n")
	if got, _ := io.ReadAll(again); !strings.Contains(string(got), "backend=lim") {
		t.Fatalf("after the others closed: %q", got)
	}
}

func TestIPCountsSketch(t *testing.T) {
	var s ipCounts
	a := []byte{10, 0, 0, 0}
	// 20,000 addresses with a connection each never push another address
	// to a limit of 10: over-counting needs both of its counters crowded.
	for i := 0; i < 20000; i++ {
		a[2], a[3] = byte(i>>8), byte(i)
		if !s.acquire(netipFrom4(a), 10) {
			t.Fatalf("address %d refused below its limit", i)
		}
	}
	for i := 0; i < 20000; i++ {
		a[2], a[3] = byte(i>>8), byte(i)
		s.release(netipFrom4(a))
	}
	b := netipFrom4([]byte{192, 0, 2, 1})
	for i := 0; i < 3; i++ {
		if !s.acquire(b, 3) {
			t.Fatalf("connection %d refused under a limit of 3", i+1)
		}
	}
	if s.acquire(b, 3) {
		t.Fatal("fourth connection admitted over a limit of 3")
	}
	s.release(b)
	if !s.acquire(b, 3) {
		t.Fatal("release did not free a place")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestShutdownLetsResponsesFinish: Shutdown stops accepting at once and waits
// for an in-flight slow response.
func TestShutdownLetsResponsesFinish(t *testing.T) {
	release := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "part one,")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "part two")
	}))
	t.Cleanup(s.Close)
	p := startProxy(t, []balancer.RouteSpec{{Name: "slow.test", Backends: []string{"http://" + s.Listener.Addr().String()}}}, "", nil)
	c, err := net.Dial("tcp", p.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: slow.test\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.e.Shutdown(context.Background()) }()
	waitFor(t, func() bool {
		c, err := net.DialTimeout("tcp", p.httpAddr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a response in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "part one,part two" {
		t.Fatalf("body %q (%v)", body, err)
	}
	// The kept-alive connection's next request (within the drain grace) is
	// answered with Connection: close, then the connection closes.
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: slow.test\r\n\r\n")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("request after shutdown began: %v", err)
	}
	body, err = io.ReadAll(resp.Body)
	if err != nil || string(body) != "part one,part two" || !resp.Close {
		t.Fatalf("answer while draining: %q (%v), close %v", body, err, resp.Close)
	}
	if rest, err := io.ReadAll(br); len(rest) != 0 || err != nil {
		t.Fatalf("after the answer that said close: %q (%v), want a clean close", rest, err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return once the connection ended")
	}
}

// TestShutdownTimeout: connections still open when the context ends are closed.
func TestShutdownTimeout(t *testing.T) {
	be := httpBackend(t, "x")
	p := startProxy(t, []balancer.RouteSpec{{Name: "x.test", Backends: []string{"http://" + be}}}, "", nil)
	c, err := net.Dial("tcp", p.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, func() bool { return p.e.Stats().Open.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := p.e.Shutdown(ctx); err != context.DeadlineExceeded {
		t.Fatalf("Shutdown = %v, want deadline exceeded", err)
	}
	if n := p.e.Stats().Listeners[0].Outcomes[OutcomeShutdown].Load() + p.e.Stats().Listeners[0].Outcomes[OutcomeClosedEarly].Load(); n != 1 {
		t.Fatalf("outcomes: %d closed by shutdown", n)
	}
}

// TestAccessLogRecords: one JSON line per connection with its facts.
func TestAccessLogRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	al, err := accesslog.Open(accesslog.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	be := httpBackend(t, "log")
	p := startProxy(t, []balancer.RouteSpec{{Name: "log.test", Backends: []string{"http://" + be}}}, "", func(o *Options) {
		o.AccessLog = al
	})
	rawExchange(t, p.httpAddr, []byte("GET / HTTP/1.1\r\nHost: log.test\r\nConnection: close\r\n\r\n"))
	rawExchange(t, p.httpAddr, []byte("GET / HTTP/1.1\r\nHost: nope.test\r\n\r\n"))
	waitFor(t, func() bool { return p.e.Stats().Open.Load() == 0 })
	if err := al.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines: %s", len(lines), data)
	}
	byName := map[string]map[string]any{}
	for _, ln := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(ln), &m); err != nil {
			t.Fatalf("%v: %s", err, ln)
		}
		byName[m["name"].(string)] = m
	}
	ok := byName["log.test"]
	if ok == nil || ok["outcome"] != "forwarded" || ok["listener"] != "web" || ok["backend"] != be ||
		ok["bytes_up"].(float64) <= 0 || ok["bytes_down"].(float64) <= 0 || !strings.HasPrefix(ok["client"].(string), "127.0.0.1:") {
		t.Errorf("forwarded line: %v", ok)
	}
	bad := byName["nope.test"]
	if bad == nil || bad["outcome"] != "rejected" || bad["reason"] != "unknown_name" {
		t.Errorf("rejected line: %v", bad)
	}
}

func netipFrom4(b []byte) netip.Addr { return netip.AddrFrom4([4]byte(b)) }

// TestShutdownClosesIdleKeepAlive: on Shutdown, kept-alive http connections
// between requests close at once, whatever kind of answers came before
// (length, chunked, HEAD, 204, 304, 100-continue), while one waiting for a
// slow answer gets it first.
func TestShutdownClosesIdleKeepAlive(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			io.WriteString(w, "part")
			w.(http.Flusher).Flush()
			io.WriteString(w, "s")
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/same":
			w.WriteHeader(http.StatusNotModified)
		case "/slow":
			<-release
			io.WriteString(w, "slow done")
		default:
			io.ReadAll(r.Body)
			io.WriteString(w, "hello")
		}
	}))
	t.Cleanup(s.Close)
	t.Cleanup(unblock) // runs first: a failing test must not leave the handler blocked
	p := startProxy(t, []balancer.RouteSpec{{Name: "ka.test", Backends: []string{"http://" + s.Listener.Addr().String()}}}, "", nil)
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", p.httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		return c, bufio.NewReader(c)
	}
	do := func(c net.Conn, br *bufio.Reader, method, path, extra string) {
		t.Helper()
		io.WriteString(c, method+" "+path+" HTTP/1.1\r\nHost: ka.test\r\n"+extra+"\r\n")
		req, _ := http.NewRequest(method, path, nil)
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	idle, idleR := dial()
	do(idle, idleR, "GET", "/", "")
	do(idle, idleR, "GET", "/chunked", "")
	do(idle, idleR, "HEAD", "/", "")
	do(idle, idleR, "GET", "/empty", "")
	do(idle, idleR, "GET", "/same", "")
	// 100-continue: an interim answer, then the body, then the final answer.
	io.WriteString(idle, "POST / HTTP/1.1\r\nHost: ka.test\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
	if resp, err := http.ReadResponse(idleR, nil); err != nil || resp.StatusCode != 100 {
		t.Fatalf("interim answer: %v %v", resp, err)
	}
	io.WriteString(idle, "ok")
	if resp, err := http.ReadResponse(idleR, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("final answer: %v %v", resp, err)
	} else {
		io.ReadAll(resp.Body)
	}
	busy, busyR := dial()
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: ka.test\r\n\r\n")
	waitFor(t, func() bool { return p.e.Stats().Open.Load() == 2 })

	done := make(chan error, 1)
	go func() { done <- p.e.Shutdown(context.Background()) }()
	// The idle connection is closed at once.
	if rest, err := io.ReadAll(idleR); err != nil || len(rest) != 0 {
		t.Fatalf("idle connection: %q %v, want a close", rest, err)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v while an answer was pending", err)
	case <-time.After(300 * time.Millisecond):
	}
	unblock()
	resp, err := http.ReadResponse(busyR, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "slow done" {
		t.Fatalf("slow answer: %q", body)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown still waiting after the last answer")
	}
}

// TestShutdownServesFirstRequest: a connection accepted before Shutdown
// whose first request arrives during the drain is served.
func TestShutdownServesFirstRequest(t *testing.T) {
	be := httpBackend(t, "first")
	p := startProxy(t, []balancer.RouteSpec{{Name: "f.test", Backends: []string{"http://" + be}}}, "", nil)
	c, err := net.Dial("tcp", p.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	waitFor(t, func() bool { return p.e.Stats().Open.Load() == 1 })
	done := make(chan error, 1)
	go func() { done <- p.e.Shutdown(context.Background()) }()
	waitFor(t, func() bool { return p.e.Draining() })
	time.Sleep(50 * time.Millisecond) // the listeners are closed by now
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: f.test\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("first request during the drain: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "backend=first") {
		t.Fatalf("body %q", body)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

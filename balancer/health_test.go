package balancer

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portier/portier/internal/selfsigned"
	"github.com/portier/portier/internal/testutil"
)

// fast are short check settings for tests.
var fast = HealthCheck{Interval: 50 * time.Millisecond, Timeout: 50 * time.Millisecond, Rise: 2, Fall: 2}

// tcpBackend is a real TCP listener on 127.0.0.1 that accepts and closes
// connections. Close and Reopen simulate a backend going away and coming back
// on the same port.
type tcpBackend struct {
	t    *testing.T
	addr string
	mu   sync.Mutex
	ln   net.Listener
}

func newTCPBackend(t *testing.T) *tcpBackend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &tcpBackend{t: t, addr: ln.Addr().String()}
	b.serve(ln)
	t.Cleanup(b.Close)
	return b
}

func (b *tcpBackend) serve(ln net.Listener) {
	b.mu.Lock()
	b.ln = ln
	b.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

func (b *tcpBackend) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ln != nil {
		b.ln.Close()
		b.ln = nil
	}
}

func (b *tcpBackend) Reopen() {
	ln, err := net.Listen("tcp", b.addr)
	if err != nil {
		b.t.Fatalf("listen again on %s: %v", b.addr, err)
	}
	b.serve(ln)
}

// changes records OnChange calls.
type changes struct {
	mu  sync.Mutex
	log []string
}

func (c *changes) on(addr string, up bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.log = append(c.log, fmt.Sprintf("%s %v", addr, up))
}

func (c *changes) get() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.log...)
}

// runHealth starts h.Run until the test ends.
func runHealth(t *testing.T, h *Health) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		h.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// eventually polls cond every 10ms until it holds or 5 s pass.
func eventually(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for deadline := start.Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return time.Since(start)
		}
	}
	t.Fatalf("%s: not within 5s", what)
	return 0
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func healthTable(t *testing.T, h *Health, routes []RouteSpec) *Table {
	t.Helper()
	tab, err := NewTable(context.Background(), routes, "", TableOptions{Health: h})
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func TestHealthTCP(t *testing.T) {
	var ch changes
	h := NewHealth(HealthOptions{Defaults: fast, Logger: quietLogger(), OnChange: ch.on})
	bes := []*tcpBackend{newTCPBackend(t), newTCPBackend(t), newTCPBackend(t)}
	tab := healthTable(t, h, []RouteSpec{{Name: "a.test", Backends: []string{
		"http://" + bes[0].addr, "http://" + bes[1].addr, "tls://" + bes[2].addr,
	}}})
	h.Track(tab)
	runHealth(t, h)
	all := tab.Backends()
	if len(all) != 3 {
		t.Fatalf("Backends() = %v", all)
	}
	for _, b := range all {
		if !b.Up() {
			t.Fatalf("%v down before any check", b)
		}
	}

	bes[1].Close()
	took := eventually(t, "closed backend goes down", func() bool { return !all[1].Up() })
	t.Logf("down after %v (fall 2 x interval 50ms)", took)
	// The others stay up through several more checks.
	time.Sleep(200 * time.Millisecond)
	if !all[0].Up() || !all[2].Up() {
		t.Fatalf("healthy backends went down: %v %v", all[0].Up(), all[2].Up())
	}
	states := h.States()
	if len(states) != 3 {
		t.Fatalf("States() = %+v", states)
	}
	for _, s := range states {
		if s.LastCheck.IsZero() {
			t.Errorf("%s: no check recorded", s.Addr)
		}
		if wantUp := s.Addr != bes[1].addr; s.Up != wantUp || (s.LastError == "") != wantUp {
			t.Errorf("state %+v: want up %v", s, wantUp)
		} else if !wantUp && !strings.Contains(s.LastError, "connect") {
			t.Errorf("last error %q", s.LastError)
		}
	}

	bes[1].Reopen()
	took = eventually(t, "reopened backend comes up", func() bool { return all[1].Up() })
	t.Logf("up after %v (rise 2 x interval 50ms)", took)
	eventually(t, "OnChange reported", func() bool { return len(ch.get()) == 2 })
	if got, want := strings.Join(ch.get(), ","), bes[1].addr+" false,"+bes[1].addr+" true"; got != want {
		t.Errorf("OnChange calls %q, want %q", got, want)
	}
}

func TestHealthHTTP(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	type seen struct{ path, host, conn string }
	reqs := make(chan seen, 100)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case reqs <- seen{r.URL.Path, r.Host, r.Header.Get("Connection")}:
		default:
		}
		w.WriteHeader(int(status.Load()))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	for _, tc := range []struct {
		name   string
		check  HealthCheck
		good   int32
		bad    int32
		proxy  string
		expect string
	}{
		{"any 2xx/3xx", HealthCheck{Kind: CheckHTTP, Path: "/healthz"}, 200, 503, "", "/healthz"},
		{"redirect is fine", HealthCheck{Kind: CheckHTTP}, 302, 404, "", "/"},
		{"exact status", HealthCheck{Kind: CheckHTTP, Path: "/h", Expect: 204}, 204, 200, "", "/h"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status.Store(tc.good)
			for len(reqs) > 0 {
				<-reqs // left by the previous case's checker
			}
			h := NewHealth(HealthOptions{Defaults: fast, Logger: quietLogger()})
			port := ln.Addr().(*net.TCPAddr).Port
			tab := healthTable(t, h, []RouteSpec{{Name: "a.test", Health: tc.check,
				Backends: []string{fmt.Sprintf("http://localhost:%d", port)}}})
			h.Track(tab)
			runHealth(t, h)
			b := tab.Backends()[0]
			got := <-reqs
			if want := (seen{tc.expect, fmt.Sprintf("localhost:%d", port), "close"}); got != want {
				t.Errorf("check request %+v, want %+v", got, want)
			}
			time.Sleep(150 * time.Millisecond)
			if !b.Up() {
				t.Fatalf("down while answering %d", tc.good)
			}
			status.Store(tc.bad)
			eventually(t, fmt.Sprintf("down on %d", tc.bad), func() bool { return !b.Up() })
			if s := h.States()[0]; !strings.Contains(s.LastError, fmt.Sprintf("status %d", tc.bad)) {
				t.Errorf("last error %q", s.LastError)
			}
			status.Store(tc.good)
			eventually(t, fmt.Sprintf("up on %d", tc.good), func() bool { return b.Up() })
		})
	}
}

func TestStatusCode(t *testing.T) {
	for line, want := range map[string]int{
		"HTTP/1.1 200 OK\r\n": 200, "HTTP/1.0 503\r\n": 503, "HTTP/1.1 204\n": 204,
		"HTTP/2 200\r\n": -1, "HTTP/1.1 20 OK\r\n": -1, "HTTP/1.1 2000\r\n": -1, "SSH-2.0-x\r\n": -1, "": -1,
	} {
		code, ok := statusCode([]byte(line))
		if !ok {
			code = -1
		}
		if code != want {
			t.Errorf("statusCode(%q) = %d, want %d", line, code, want)
		}
	}
	if got := hostHeader("::1", 8080); got != "[::1]:8080" {
		t.Errorf("hostHeader = %q", got)
	}
	if got := hostHeader("a.test", 80); got != "a.test" {
		t.Errorf("hostHeader = %q", got)
	}
}

// TestPassiveHealth covers connect failures: without active checks a
// backend comes back by itself after Interval; with them, after Rise checks.
func TestPassiveHealth(t *testing.T) {
	passive := HealthCheck{Kind: CheckNone, Interval: 100 * time.Millisecond, Fall: 2}
	be := newTCPBackend(t)
	for _, tc := range []struct {
		name   string
		health bool
		check  HealthCheck
	}{
		{"no Health", false, passive},
		{"CheckNone", true, passive},
		{"active checks", true, fast},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ch changes
			var h *Health
			if tc.health {
				h = NewHealth(HealthOptions{Logger: quietLogger(), OnChange: ch.on})
			}
			tab, err := NewTable(context.Background(), []RouteSpec{{Name: "a.test", Health: tc.check,
				Backends: []string{"http://" + be.addr}}}, "", TableOptions{Health: h, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			if h != nil {
				h.Track(tab)
				runHealth(t, h)
			}
			b := tab.Backends()[0]
			b.ConnectFailed()
			b.ConnectSucceeded() // resets the count
			b.ConnectFailed()
			if !b.Up() {
				t.Fatal("down after 1 consecutive failure with fall 2")
			}
			if h != nil && tc.check.Kind != CheckNone {
				// Let the checker start, so that the active case holds
				// the backend down for its checks.
				eventually(t, "checker running", func() bool { return b.st.checkers.Load() == 1 })
			}
			if tc.check.Kind == CheckNone && b.st.checkers.Load() != 0 {
				t.Fatal("a checker goroutine runs for check: none")
			}
			b.ConnectFailed()
			if b.Up() {
				t.Fatal("up after 2 consecutive failures with fall 2")
			}
			took := eventually(t, "back up", func() bool { return b.Up() })
			t.Logf("back up after %v", took)
			if took < 30*time.Millisecond {
				t.Errorf("back up after %v, before an interval or rise checks could pass", took)
			}
			if h != nil {
				eventually(t, "OnChange reported", func() bool { return len(ch.get()) == 2 })
				if got, want := strings.Join(ch.get(), ","), be.addr+" false,"+be.addr+" true"; got != want {
					t.Errorf("OnChange calls %q, want %q", got, want)
				}
			}
		})
	}
}

// TestHealthSharedState rebuilds the table the way a route source does: with
// the same *Health, health, drain and active counts carry over; without one,
// each table starts afresh.
func TestHealthSharedState(t *testing.T) {
	h := NewHealth(HealthOptions{Logger: quietLogger()})
	routes := []RouteSpec{{Name: "a.test", Backends: []string{"http://127.0.0.1:9001", "http://127.0.0.1:9002"}}}
	t1 := healthTable(t, h, routes)
	h.Track(t1)
	b1 := t1.Lookup(SchemeHTTP, []byte("a.test")).Backends
	b1[0].Acquire()
	b1[0].Acquire()
	b1[1].SetDrain(true)
	markDown(t, b1[0])

	routes2 := []RouteSpec{
		{Name: "b.test", Backends: []string{"http://127.0.0.1:9003"}},
		{Name: "a.test", Balance: LeastConn, Backends: []string{"http://127.0.0.1:9001?weight=3", "http://127.0.0.1:9002", "tls://127.0.0.1:9001"}},
	}
	t2 := healthTable(t, h, routes2)
	h.Track(t2)
	p := t2.Lookup(SchemeHTTP, []byte("a.test"))
	if p.Algorithm != LeastConn {
		t.Errorf("pool algorithm %v", p.Algorithm)
	}
	b2 := p.Backends
	if b2[0] == b1[0] || b2[0].Active() != 2 || b2[0].Up() || !b2[1].Draining() {
		t.Errorf("after rebuild: active %d, up %v, draining %v", b2[0].Active(), b2[0].Up(), b2[1].Draining())
	}
	// The tls backend at the same address is another (scheme, address).
	tb := t2.Lookup(SchemeTLS, []byte("a.test")).Backends[0]
	if tb.Active() != 0 || !tb.Up() {
		t.Errorf("tls backend shares the http backend's state")
	}
	b2[0].Release()
	if b1[0].Active() != 1 {
		t.Errorf("release through the new table: old table sees %d", b1[0].Active())
	}
	states := h.States()
	if len(states) != 4 {
		t.Fatalf("States() = %+v", states)
	}
	want := []string{"127.0.0.1:9001 http up=false active=1 drain=false", "127.0.0.1:9001 tls up=true active=0 drain=false",
		"127.0.0.1:9002 http up=true active=0 drain=true", "127.0.0.1:9003 http up=true active=0 drain=false"}
	for i, s := range states {
		if got := fmt.Sprintf("%s %v up=%v active=%d drain=%v", s.Addr, s.Scheme, s.Up, s.Active, s.Draining); got != want[i] {
			t.Errorf("States()[%d] = %s, want %s", i, got, want[i])
		}
	}

	// No Health: every table has its own state.
	t3, err := NewTable(context.Background(), routes, "", TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b3 := t3.Backends()[0]; b3.Active() != 0 || !b3.Up() {
		t.Errorf("table without Health shares state: active %d up %v", b3.Active(), b3.Up())
	}
}

// TestHealthTrack checks that each address is checked once however many
// routes name it (the first route's settings win) and that checks stop for
// addresses that leave the table.
func TestHealthTrack(t *testing.T) {
	h := NewHealth(HealthOptions{Defaults: fast, Logger: quietLogger()})
	be1, be2 := newTCPBackend(t), newTCPBackend(t)
	runHealth(t, h)
	slow := HealthCheck{Interval: time.Hour}
	t1 := healthTable(t, h, []RouteSpec{
		{Name: "a.test", Backends: []string{"http://" + be1.addr, "http://" + be2.addr}},
		{Name: "b.test", Health: slow, Backends: []string{"http://" + be1.addr + "?weight=2"}},
	})
	h.Track(t1)
	st1 := t1.Backends()[0].st
	if got := st1.cfg.Load().Interval; got != fast.Interval {
		t.Errorf("interval %v: the first route's settings should win", got)
	}
	eventually(t, "one checker per address", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.checkers) == 2
	})
	time.Sleep(100 * time.Millisecond)
	h.mu.Lock()
	n := len(h.checkers)
	h.mu.Unlock()
	if n != 2 {
		t.Errorf("%d checkers for 2 addresses", n)
	}
	eventually(t, "both checked", func() bool {
		for _, s := range h.States() {
			if s.LastCheck.IsZero() {
				return false
			}
		}
		return true
	})

	t2 := healthTable(t, h, []RouteSpec{{Name: "b.test", Health: slow, Backends: []string{"http://" + be1.addr}}})
	h.Track(t2)
	if got := st1.cfg.Load().Interval; got != time.Hour {
		t.Errorf("interval %v after a rebuild with new settings", got)
	}
	if s := h.States(); len(s) != 1 || s[0].Addr != be1.addr {
		t.Errorf("States() after dropping %s: %+v", be2.addr, s)
	}
	st2 := t1.Backends()[1].st
	eventually(t, "checker of the removed address stops", func() bool { return st2.checkers.Load() == 0 })

	h.Track(nil)
	eventually(t, "all checkers stop", func() bool { return st1.checkers.Load() == 0 })
	if len(h.States()) != 0 {
		t.Errorf("States() after Track(nil): %+v", h.States())
	}
}

func TestHealthFleetDown(t *testing.T) {
	h := NewHealth(HealthOptions{Logger: quietLogger()})
	h.SetFleetDown("127.0.0.1:9002", true) // before any table names it
	tab := healthTable(t, h, []RouteSpec{{Name: "a.test", Backends: []string{"http://127.0.0.1:9001", "tls://127.0.0.1:9002"}}})
	h.Track(tab)
	b1 := tab.Lookup(SchemeHTTP, []byte("a.test")).Backends[0]
	b2 := tab.Lookup(SchemeTLS, []byte("a.test")).Backends[0]
	if !b1.Up() || b2.Up() {
		t.Fatalf("up: %v %v, want true false", b1.Up(), b2.Up())
	}
	h.SetFleetDown("[::ffff:127.0.0.1]:9001", true) // v4-mapped form of the same address
	if b1.Up() {
		t.Error("fleet down ignored")
	}
	s := h.States()[0]
	if !s.Up || !s.FleetDown {
		t.Errorf("state %+v: want local up, fleet down", s)
	}
	h.SetFleetDown("127.0.0.1:9001", false)
	h.SetFleetDown("127.0.0.1:9002", false)
	if !b1.Up() || !b2.Up() {
		t.Error("fleet up ignored")
	}
}

// TestHealthTLS: a tls check completes a handshake; a backend whose port
// accepts but does not speak TLS is down, with the reason.
func TestHealthTLS(t *testing.T) {
	cert, err := selfsigned.Certificate("tls.test")
	if err != nil {
		t.Fatal(err)
	}
	var speakTLS atomic.Bool
	speakTLS.Store(true)
	var sni atomic.Value
	addr := testutil.RawBackend(t, func(c *net.TCPConn) {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if !speakTLS.Load() {
			io.WriteString(c, "HTTP/1.1 400 Bad Request\r\n\r\n")
			return
		}
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert},
			GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
				sni.Store(h.ServerName)
				return nil, nil
			}})
		_ = tc.Handshake()
	})
	_, port, _ := net.SplitHostPort(addr)
	h := NewHealth(HealthOptions{Defaults: fast, Logger: quietLogger()})
	tab := healthTable(t, h, []RouteSpec{{Name: "a.test", Health: HealthCheck{Kind: CheckTLS},
		Backends: []string{"tls://localhost:" + port}}})
	h.Track(tab)
	runHealth(t, h)
	b := tab.Backends()[0]
	time.Sleep(150 * time.Millisecond)
	if !b.Up() {
		t.Fatalf("down while completing handshakes: %+v", h.States())
	}
	if got, _ := sni.Load().(string); got != "localhost" {
		t.Errorf("check sent SNI %q, want the backend's host name", got)
	}
	speakTLS.Store(false)
	eventually(t, "down when the port does not speak TLS", func() bool { return !b.Up() })
	if s := h.States()[0]; !strings.Contains(s.LastError, "tls handshake") {
		t.Errorf("last error %q", s.LastError)
	}
	speakTLS.Store(true)
	eventually(t, "up again", func() bool { return b.Up() })
}

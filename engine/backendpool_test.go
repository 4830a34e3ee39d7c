package engine

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
	"github.com/portier/portier/internal/testutil"
)

// countingBackend is a Go HTTP server that counts the connections it
// accepted and whether a request's context was cancelled.
func countingBackend(t *testing.T, accepted *atomic.Int64) string {
	t.Helper()
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Conn", r.Header.Get("Connection"))
		io.WriteString(w, r.Method+" "+r.URL.Path+" "+string(body))
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			accepted.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// closeRequest sends one request on a new connection and reads the answer
// to the close; it checks that the answer said close and returns the body.
func closeRequest(t *testing.T, addr, method, host, path, body string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req := method + " " + path + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n"
	if body != "" || method == "POST" {
		req += "Content-Length: " + itoa(len(body)) + "\r\n"
	}
	io.WriteString(c, req+"\r\n"+body)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil || !resp.Close {
		t.Fatalf("%s %s: body %q (%v), close %v", method, path, got, err, resp.Close)
	}
	if h := resp.Header.Get("X-Conn"); h != "" {
		t.Fatalf("the backend got the client's Connection header %q", h)
	}
	if rest, err := io.ReadAll(br); len(rest) != 0 || err != nil {
		t.Fatalf("after the answer: %q (%v), want the close", rest, err)
	}
	return string(got)
}

func itoa(n int) string {
	b := []byte{}
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
		if n == 0 {
			return string(b)
		}
	}
}

// TestPoolReusesBackendConnections: clients that open a connection per
// request (Connection: close) share the loops' kept-alive backend
// connections; the backend accepts at most one per loop.
func TestPoolReusesBackendConnections(t *testing.T) {
	var accepted atomic.Int64
	be := countingBackend(t, &accepted)
	p := startProxy(t, []balancer.RouteSpec{{Name: "ka.test", Backends: []string{"http://" + be}}}, "", nil)
	const n = 40
	for i := range n {
		if got := closeRequest(t, p.httpAddr, "GET", "ka.test", "/r"+itoa(i), ""); got != "GET /r"+itoa(i)+" " {
			t.Fatalf("request %d: %q", i, got)
		}
	}
	st := p.e.Stats()
	loops := int64(p.e.Loops())
	if a := accepted.Load(); a > loops {
		t.Errorf("backend accepted %d connections for %d sequential requests over %d loops", a, n, loops)
	}
	if r := st.PoolReuses.Load(); r < n-loops {
		t.Errorf("%d reuses, want at least %d", r, n-loops)
	}
	if c := st.BackendConnects.Load(); c != accepted.Load() {
		t.Errorf("%d connects counted, backend accepted %d", c, accepted.Load())
	}
	waitFor(t, func() bool { return st.PoolIdle.Load() == accepted.Load() })

	// HTTP/1.0 clients without keep-alive (ab) share them too: the request
	// goes out asking for keep-alive, the answer says close.
	before := accepted.Load()
	for i := range 10 {
		got := string(rawExchange(t, p.httpAddr, []byte("GET /h"+itoa(i)+" HTTP/1.0\r\nHost: ka.test\r\n\r\n")))
		if !strings.Contains(got, "GET /h"+itoa(i)+" ") || !strings.Contains(got, "\r\nConnection: close\r\n") {
			t.Fatalf("HTTP/1.0 request %d: %q", i, got)
		}
	}
	if accepted.Load() != before {
		t.Errorf("HTTP/1.0 requests opened %d backend connections", accepted.Load()-before)
	}

	// A POST cannot be replayed: it gets a new connection (HAProxy's
	// http-reuse safe sends a connection's first request the same way).
	before = accepted.Load()
	if got := closeRequest(t, p.httpAddr, "POST", "ka.test", "/p", "data"); got != "POST /p data" {
		t.Fatalf("POST: %q", got)
	}
	if accepted.Load() != before+1 {
		t.Errorf("a POST went over a pooled connection (backend accepted %d, was %d)", accepted.Load(), before)
	}
}

// TestPoolNeverAndProxyProtocol: reuse: never and ?proxy= backends get a
// connection per request.
func TestPoolNeverAndProxyProtocol(t *testing.T) {
	var acceptedNever atomic.Int64
	be := countingBackend(t, &acceptedNever)
	p := startProxy(t, []balancer.RouteSpec{
		{Name: "never.test", Backends: []string{"http://" + be}, Reuse: balancer.Reuse{Never: true}},
	}, "", nil)
	for i := range 5 {
		closeRequest(t, p.httpAddr, "GET", "never.test", "/n"+itoa(i), "")
	}
	if a := acceptedNever.Load(); a != 5 {
		t.Errorf("reuse: never: backend accepted %d connections for 5 requests", a)
	}
	if p.e.Stats().PoolReuses.Load() != 0 || p.e.Stats().PoolIdle.Load() != 0 {
		t.Errorf("reuse: never pooled connections")
	}

	// A PROXY header names one client: such a connection is never reused.
	var ppConns atomic.Int64
	pp := testutil.RawBackend(t, func(c *net.TCPConn) {
		ppConns.Add(1)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "PROXY TCP4 127.0.0.1 ") {
			return
		}
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\npp")
		}
	})
	p2 := startProxy(t, []balancer.RouteSpec{{Name: "pp.test", Backends: []string{"http://" + pp + "?proxy=v1"}}}, "", nil)
	for range 3 {
		if got := closeRequest(t, p2.httpAddr, "GET", "pp.test", "/", ""); got != "pp" {
			t.Fatalf("proxy=v1 backend: %q", got)
		}
	}
	if ppConns.Load() != 3 || p2.e.Stats().PoolIdle.Load() != 0 {
		t.Errorf("proxy=v1: backend saw %d connections for 3 requests, %d pooled", ppConns.Load(), p2.e.Stats().PoolIdle.Load())
	}
}

// TestPoolRetryAfterDeadPooledConnection: the backend closes a kept-alive
// connection just as the next request arrives on it (its keep-alive timeout
// in the same instant). The client never notices: the request is resent
// over a new connection, and the retry is counted.
func TestPoolRetryAfterDeadPooledConnection(t *testing.T) {
	var conns atomic.Int64
	be := testutil.RawBackend(t, func(c *net.TCPConn) {
		conns.Add(1)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body := "first on conn " + req.URL.Path
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+itoa(len(body))+"\r\n\r\n"+body)
		// The next request on this connection finds it closed: read its
		// head, then close without a byte of answer.
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		_ = c.SetLinger(0)
	})
	p := startProxy(t, []balancer.RouteSpec{{Name: "dead.test", Backends: []string{"http://" + be}}}, "",
		func(o *Options) { o.Loops = 1 })
	for i := range 6 {
		if got := closeRequest(t, p.httpAddr, "GET", "dead.test", "/d"+itoa(i), ""); got != "first on conn /d"+itoa(i) {
			t.Fatalf("request %d: %q", i, got)
		}
	}
	st := p.e.Stats()
	if st.PoolRetries.Load() != 5 || st.PoolReuses.Load() != 5 || st.ConnectFailures.Load() != 0 {
		t.Errorf("retries %d, reuses %d, connect failures %d; want 5, 5, 0",
			st.PoolRetries.Load(), st.PoolReuses.Load(), st.ConnectFailures.Load())
	}
	if conns.Load() != 6 {
		t.Errorf("backend saw %d connections, want 6", conns.Load())
	}
}

// TestPoolClosedIdleConnectionLeavesPool: a backend that closes an idle
// pooled connection (EOF) removes it from the pool at once.
func TestPoolClosedIdleConnectionLeavesPool(t *testing.T) {
	closeNow := make(chan struct{})
	be := testutil.RawBackend(t, func(c *net.TCPConn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		<-closeNow
	})
	p := startProxy(t, []balancer.RouteSpec{{Name: "idle.test", Backends: []string{"http://" + be}}}, "", nil)
	closeRequest(t, p.httpAddr, "GET", "idle.test", "/", "")
	st := p.e.Stats()
	waitFor(t, func() bool { return st.PoolIdle.Load() == 1 })
	close(closeNow)
	waitFor(t, func() bool { return st.PoolIdle.Load() == 0 })
}

// TestPoolDrainedBackend: pooled connections are not counted as active
// (least_conn counts requests in flight), and those to a backend that
// starts draining are closed.
func TestPoolDrainedBackend(t *testing.T) {
	var accepted atomic.Int64
	be := countingBackend(t, &accepted)
	p := startProxy(t, []balancer.RouteSpec{{Name: "dr.test", Backends: []string{"http://" + be}, Balance: balancer.LeastConn}}, "", nil)
	closeRequest(t, p.httpAddr, "GET", "dr.test", "/", "")
	st := p.e.Stats()
	waitFor(t, func() bool { return st.PoolIdle.Load() == 1 })
	b := p.e.opts.Router.Load().Lookup(balancer.SchemeHTTP, []byte("dr.test")).Backends[0]
	if a := b.Active(); a != 0 {
		t.Errorf("backend counts %d active with one idle pooled connection, want 0", a)
	}
	b.SetDrain(true)
	waitFor(t, func() bool { return st.PoolIdle.Load() == 0 })
}

// TestPoolClientCloseWithoutAsking: a client that closes after its answer
// without having said Connection: close (curl, a script) gives its backend
// connection back to the pool.
func TestPoolClientCloseWithoutAsking(t *testing.T) {
	var accepted atomic.Int64
	be := countingBackend(t, &accepted)
	p := startProxy(t, []balancer.RouteSpec{{Name: "eof.test", Backends: []string{"http://" + be}}}, "",
		func(o *Options) { o.Loops = 1 })
	for i := range 5 {
		c, err := net.Dial("tcp", p.httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET /e"+itoa(i)+" HTTP/1.1\r\nHost: eof.test\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		c.Close()
		if string(body) != "GET /e"+itoa(i)+" " {
			t.Fatalf("request %d: %q", i, body)
		}
		waitFor(t, func() bool { return p.e.Stats().PoolIdle.Load() == 1 })
	}
	if a := accepted.Load(); a != 1 {
		t.Errorf("backend accepted %d connections for 5 clients one after another, want 1", a)
	}
}

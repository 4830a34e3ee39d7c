package engine

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
)

// holdLoops stops every loop of p inside a task until the returned function
// is called, so that what a client sends meanwhile is in its socket when
// the loop accepts it.
func holdLoops(t *testing.T, p *proxy) (release func()) {
	t.Helper()
	gate := make(chan struct{})
	for _, l := range p.e.loops {
		in := make(chan struct{})
		l.trigger(func(any) error {
			close(in)
			<-gate
			return nil
		})
		select {
		case <-in:
		case <-time.After(5 * time.Second):
			t.Fatal("a loop did not run its task")
		}
	}
	return func() { close(gate) }
}

func watchedClients(p *proxy) int64 {
	var n int64
	for _, l := range p.e.loops {
		n += l.watched.Load()
	}
	return n
}

// TestCloseRequestNotWatched: a client whose request, read at accept,
// asked for the close is answered and closed without ever joining the
// poller; a kept-alive client and a request cut in two join it. Whatever the client sends after such a request, once it was read,
// still gets the answer in full and a clean close (no reset for unread
// input).
func TestCloseRequestNotWatched(t *testing.T) {
	held := make(chan struct{}, 1)
	release := make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			held <- struct{}{}
			<-release
		}
		io.WriteString(w, "answer "+r.URL.Path)
	}))
	defer be.Close()
	// One loop: its first request opens the backend connection that the
	// others reuse (a client waiting for a new backend connection is
	// registered: its head is examined only once the backend is there).
	p := startProxy(t, []balancer.RouteSpec{{Name: "w.test", Backends: []string{"http://" + be.Listener.Addr().String()}}}, "",
		func(o *Options) { o.Loops = 1 })

	send := func(req string) net.Conn {
		t.Helper()
		free := holdLoops(t, p)
		defer free()
		c, err := net.Dial("tcp", p.httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		return c
	}
	answer := func(c net.Conn, path string) {
		t.Helper()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || !strings.HasPrefix(string(got), "HTTP/1.") || !strings.Contains(string(got), " 200 OK\r\n") || !strings.HasSuffix(string(got), "answer "+path) ||
			!strings.Contains(string(got), "\r\nConnection: close\r\n") {
			t.Fatalf("%s: %q, %v", path, got, err)
		}
	}

	answer(send("GET /warm HTTP/1.0\r\nHost: w.test\r\n\r\n"), "/warm")
	before := watchedClients(p)
	for i := range 20 {
		path := "/c" + itoa(i)
		if i%2 == 0 {
			answer(send("GET "+path+" HTTP/1.0\r\nHost: w.test\r\n\r\n"), path)
		} else {
			answer(send("GET "+path+" HTTP/1.1\r\nHost: w.test\r\nConnection: close\r\n\r\n"), path)
		}
	}
	if n := watchedClients(p) - before; n != 0 {
		t.Errorf("%d of 20 connection-per-request clients were registered with the poller, want 0", n)
	}

	// Bytes after the request, sent once it was forwarded: the answer is
	// not destroyed by a reset for unread input.
	before = watchedClients(p)
	c := send("GET /hold HTTP/1.1\r\nHost: w.test\r\nConnection: close\r\n\r\n")
	<-held
	io.WriteString(c, "more bytes the proxy never reads as a request")
	time.Sleep(10 * time.Millisecond) // loopback queues them before Write returns; this is margin
	close(release)
	answer(c, "/hold")
	if n := watchedClients(p) - before; n != 1 {
		t.Errorf("a client that sent more after its close request: %d registrations, want 1 (to linger)", n)
	}

	// A kept-alive client joins the poller: its next request must be heard.
	before = watchedClients(p)
	c = send("GET /k1 HTTP/1.1\r\nHost: w.test\r\n\r\n")
	br := bufio.NewReader(c)
	for _, path := range []string{"/k1", "/k2"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "answer "+path {
			t.Fatalf("keep-alive %s: %q", path, body)
		}
		if path == "/k1" {
			io.WriteString(c, "GET /k2 HTTP/1.1\r\nHost: w.test\r\nConnection: close\r\n\r\n")
		}
	}
	c.Close()
	if n := watchedClients(p) - before; n != 1 {
		t.Errorf("kept-alive client: %d registrations, want 1", n)
	}

	// A head cut in two: the first part is read at accept, the rest comes
	// by the poller.
	before = watchedClients(p)
	c = send("GET /cut HTTP/1.1\r\nHost: w.te")
	waitFor(t, func() bool { return watchedClients(p) == before+1 }) // read, and registered for the rest
	io.WriteString(c, "st\r\nConnection: close\r\n\r\n")
	answer(c, "/cut")
	if n := watchedClients(p) - before; n != 1 {
		t.Errorf("a head cut in two: %d registrations, want 1", n)
	}
}

// TestAcceptedBeforeSpeaking: a client accepted before its first bytes
// arrived is registered, and its first bytes are examined as first bytes
// (another protocol is told at once: 400, not a 408 at the timeout).
func TestAcceptedBeforeSpeaking(t *testing.T) {
	p := startProxy(t, []balancer.RouteSpec{{Name: "w.test", Backends: []string{"http://127.0.0.1:9"}}}, "",
		func(o *Options) { o.Loops = 1 })
	before := watchedClients(p)
	c, err := net.Dial("tcp", p.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, func() bool { return watchedClients(p) == before+1 }) // accepted, read (nothing), registered
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	t0 := time.Now()
	io.WriteString(c, "\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00") // a TLS record on the HTTP port
	got, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(got), "HTTP/1.1 400 ") {
		t.Fatalf("after %v: %q, want a 400 at once", time.Since(t0), got)
	}
}

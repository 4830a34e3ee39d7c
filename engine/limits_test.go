package engine

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
)

// keepAliveGet sends one request on c and reads its answer, leaving c open.
func keepAliveGet(t *testing.T, c net.Conn, br *bufio.Reader, host string) *http.Response {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: " + host + "\r\n\r\n")); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	body := make([]byte, resp.ContentLength)
	if _, err := io.ReadFull(br, body); err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp
}

// TestMaxConnectionsStopsAccepting: at max_connections a new client is not
// accepted (it waits in the kernel's backlog, not answered 503) and is
// served as soon as a slot frees.
func TestMaxConnectionsStopsAccepting(t *testing.T) {
	be := httpBackend(t, "a")
	p := startProxy(t, []balancer.RouteSpec{{Name: "a.test", Backends: []string{"http://" + be}}}, "",
		func(o *Options) { o.MaxConnections = 2 })
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", p.httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if resp := keepAliveGet(t, c, bufio.NewReader(c), "a.test"); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		held = append(held, c)
	}
	// The third client's connect succeeds (the kernel completes it into the
	// backlog) but portier does not accept it while two are open.
	c3, err := net.Dial("tcp", p.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if _, err := c3.Write([]byte("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	br3 := bufio.NewReader(c3)
	_ = c3.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := br3.ReadByte(); err == nil {
		t.Fatal("the third client got an answer while max_connections were open")
	}
	if n := p.e.Stats().Accepted.Load(); n != 2 {
		t.Fatalf("accepted %d connections at max_connections 2", n)
	}
	if p.e.Stats().Limited[LimitTotal].Load() == 0 {
		t.Error("no loop recorded pausing at max_connections")
	}
	start := time.Now()
	held[0].Close()
	_ = c3.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br3, nil)
	if err != nil {
		t.Fatalf("third client after a slot freed: %v", err)
	}
	resp.Body.Close()
	t.Logf("third client answered %d, %v after a slot freed", resp.StatusCode, time.Since(start))
	if resp.StatusCode != 200 {
		t.Fatalf("third client got %d, want 200", resp.StatusCode)
	}
	if n := p.e.Stats().Rejects[ReasonLimit].Load(); n != 0 {
		t.Errorf("%d connections answered 503 for max_connections", n)
	}
}

// TestPerIPCountsRace: loops admitting the same client at once never let it
// past max_connections_per_ip.
func TestPerIPCountsRace(t *testing.T) {
	s := newIPCounts(64)
	a := netip.MustParseAddr("192.0.2.9")
	const workers, rounds, limit = 4, 20000, 1
	var over atomic.Int64
	for range rounds {
		var admitted atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if s.acquire(a, limit) {
					admitted.Add(1)
				}
			}()
		}
		close(start)
		wg.Wait()
		if admitted.Load() > limit {
			over.Add(1)
		}
		for range admitted.Load() {
			s.release(a)
		}
	}
	if over.Load() > 0 {
		t.Fatalf("%d of %d rounds admitted more than %d connection(s) from one address", over.Load(), rounds, limit)
	}
}

// TestPerIPv6Prefix: IPv6 clients of one /64 share a count (a host owns a
// whole /64); another /64, IPv4 and v4-mapped addresses count on their own.
func TestPerIPv6Prefix(t *testing.T) {
	s := newIPCounts(0) // default /64
	must := func(a string, want bool) {
		t.Helper()
		if got := s.acquire(netip.MustParseAddr(a), 2); got != want {
			t.Fatalf("acquire(%s) = %v, want %v", a, got, want)
		}
	}
	must("2001:db8:1:2::1", true)
	must("2001:db8:1:2:ffff::7", true)
	must("2001:db8:1:2:abcd::9", false) // third in the same /64
	must("2001:db8:1:3::1", true)       // the next /64
	must("192.0.2.1", true)
	must("::ffff:192.0.2.1", true)
	must("192.0.2.1", false)
	s.release(netip.MustParseAddr("2001:db8:1:2::55"))
	must("2001:db8:1:2::1", true)

	narrow := newIPCounts(128)
	if !narrow.acquire(netip.MustParseAddr("2001:db8::1"), 1) || !narrow.acquire(netip.MustParseAddr("2001:db8::2"), 1) {
		t.Fatal("with prefix 128 two IPv6 addresses shared a count")
	}
	if n := testing.AllocsPerRun(100, func() {
		s.acquire(netip.MustParseAddr("2001:db8:9::1"), 1000)
	}); n != 0 {
		t.Errorf("acquire allocates %v times", n)
	}
}

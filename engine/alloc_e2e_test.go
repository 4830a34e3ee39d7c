package engine

import (
	"bytes"
	"net/netip"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/portier/portier/balancer"
)

// Raw blocking sockets for the test's client and backends: unix.Read and
// unix.Write on them allocate nothing, so every allocation counted while
// requests flow is the proxy's.

func rawListen(t *testing.T) (int, string) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 8); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	t.Cleanup(func() { unix.Close(fd) })
	return fd, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port)).String()
}

func rawDial(t *testing.T, addr string) int {
	t.Helper()
	ap := netip.MustParseAddrPort(addr)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		t.Fatal(err)
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// readFull reads exactly len(b) bytes; false at EOF or error.
func readFull(fd int, b []byte) bool {
	for got := 0; got < len(b); {
		n, err := unix.Read(fd, b[got:])
		if n <= 0 {
			if err == unix.EINTR {
				continue
			}
			return false
		}
		got += n
	}
	return true
}

func writeFull(fd int, b []byte) bool {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if n <= 0 {
			if err == unix.EINTR {
				continue
			}
			return false
		}
		b = b[n:]
	}
	return true
}

// TestForwardingAllocatesNothing: an in-process engine forwards 10,000
// keep-alive HTTP requests (each head rewritten with forwarding headers),
// 10,000 TLS records and 10,000 requests that each come on a connection of
// their own and go out over a pooled backend connection, and allocates
// nothing while doing so (as fasthttp's allocation tests check its server).
func TestForwardingAllocatesNothing(t *testing.T) {
	const n, warm = 10000, 500
	httpLn, httpBE := rawListen(t)
	tlsLn, tlsBE := rawListen(t)
	p := startProxy(t, []balancer.RouteSpec{
		{Name: "za.test", Backends: []string{"http://" + httpBE, "tls://" + tlsBE}},
	}, "", func(o *Options) { o.Loops = 1 })

	req := []byte("GET /x HTTP/1.1\r\nHost: za.test\r\nUser-Agent: alloc-test\r\n\r\n")
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	serveHTTP := func(fd int) { // answer each head
		defer unix.Close(fd)
		buf, have := make([]byte, 4096), 0
		for {
			k, _ := unix.Read(fd, buf[have:])
			if k <= 0 {
				return
			}
			have += k
			for {
				end := bytes.Index(buf[:have], []byte("\r\n\r\n"))
				if end < 0 {
					break
				}
				have = copy(buf, buf[end+4:have])
				if !writeFull(fd, resp) {
					return
				}
			}
		}
	}
	go func() { // the HTTP backend: the keep-alive client's connection, then the pool's
		for {
			fd, _, err := unix.Accept(httpLn)
			if err != nil {
				return
			}
			go serveHTTP(fd)
		}
	}()
	hello := helloBytes(1, sniExt("za.test"))
	record := append([]byte{23, 3, 3, 0, 100}, bytes.Repeat([]byte{0xab}, 100)...)
	go func() { // the TLS backend: take the ClientHello, echo every record
		fd, _, err := unix.Accept(tlsLn)
		if err != nil {
			return
		}
		defer unix.Close(fd)
		buf := make([]byte, len(hello))
		if !readFull(fd, buf) {
			return
		}
		rec := make([]byte, len(record))
		for readFull(fd, rec) && writeFull(fd, rec) {
		}
	}()

	hc, tc := rawDial(t, p.httpAddr), rawDial(t, p.tlsAddr)
	if !writeFull(tc, hello) {
		t.Fatal("ClientHello not sent")
	}
	got := make([]byte, len(resp))
	gotRec := make([]byte, len(record))
	closeReq := []byte("GET /c HTTP/1.1\r\nHost: za.test\r\nConnection: close\r\n\r\n")
	closeResp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	gotClose := make([]byte, 2*len(closeResp))
	ap := netip.MustParseAddrPort(p.httpAddr)
	sa := &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	exchange := func() {
		if !writeFull(hc, req) || !readFull(hc, got) || !bytes.Equal(got, resp) {
			t.Fatalf("HTTP answer %q", got)
		}
		if !writeFull(tc, record) || !readFull(tc, gotRec) || !bytes.Equal(gotRec, record) {
			t.Fatal("TLS record not echoed")
		}
	}
	connection := func() { // a connection of its own, closed by portier after the answer
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if err := unix.Connect(fd, sa); err != nil {
			t.Fatal(err)
		}
		if !writeFull(fd, closeReq) {
			t.Fatal("request not sent")
		}
		have := 0
		for have < len(gotClose) {
			k, err := unix.Read(fd, gotClose[have:])
			if k == 0 || k < 0 && err != unix.EINTR {
				break
			}
			have += max(k, 0)
		}
		if !bytes.Equal(gotClose[:have], closeResp) {
			t.Fatalf("answer on a connection of its own: %q", gotClose[:have])
		}
	}
	old := runtime.MemProfileRate
	runtime.MemProfileRate = 1 // every allocation, with its stack
	defer func() { runtime.MemProfileRate = old }()
	for range warm { // free lists, buffers and runtime threads settle
		exchange()
		connection()
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	var before, after runtime.MemStats
	loop0, _ := loopAllocs(t, false, "")
	runtime.ReadMemStats(&before)
	for range n {
		exchange()
	}
	runtime.ReadMemStats(&after)
	inLoop, _ := loopAllocs(t, false, "")
	inLoop -= loop0
	all := after.Mallocs - before.Mallocs
	t.Logf("%d allocations on the loop's event path, %d in the whole process, for %d HTTP requests and %d TLS records",
		inLoop, all, n, n)
	if inLoop != 0 {
		t.Errorf("the loop allocated %d times handling %d requests and %d records", inLoop, n, n)
	}
	// Connections take their first-bytes buffer from bytebufferpool, whose
	// sync.Pool drops its contents at every collection (this measurement
	// runs some) and, under the race detector, a quarter of what is put
	// back: its refills are not counted, and under the race detector only
	// the backend pool's path is held to nothing (a fresh buffer's growth
	// cannot be told from other allocations). Otherwise a few allocations
	// are allowed, as free lists grow whenever more connections are closing
	// at once than before; one per connection (a pool bucket made anew, as
	// before: 20,006 here) is thousands.
	loop0, pool0 := loopAllocs(t, true, "engine.(*loop).detach")
	for range n {
		connection()
	}
	inLoop, inPool := loopAllocs(t, true, "engine.(*loop).detach")
	inLoop, inPool = inLoop-loop0, inPool-pool0
	t.Logf("%d allocations on the loop's event path (%d giving back backend connections) for %d connections, each with one request over a pooled backend connection",
		inLoop, inPool, n)
	if inPool != 0 {
		t.Errorf("giving backend connections back to the pool allocated %d times for %d connections", inPool, n)
	}
	if !raceEnabled && inLoop > 32 {
		t.Errorf("the loop allocated %d times handling %d connections", inLoop, n)
	}
	// The rest of the process is not asserted: the engine's 100 ms ticker
	// queues a task (gnet's queue allocates a node) once per tick, so its
	// count depends on how long the run took, not on the requests.
}

// loopAllocs is the number of allocations so far (memory profile, complete
// at MemProfileRate 1) whose stack passes through the loop's event handler,
// and of those whose stack also passes through the function named by the
// suffix under (if not empty); with notPools, not counting those made by
// sync.Pool or bytebufferpool refilling.
func loopAllocs(t *testing.T, notPools bool, under string) (total, inUnder int64) {
	runtime.GC() // the profile is as of the last collection
	n, _ := runtime.MemProfile(nil, true)
	recs := make([]runtime.MemProfileRecord, n+64)
	n, ok := runtime.MemProfile(recs, true)
	if !ok {
		t.Fatal("memory profile grew while being read")
	}
	for _, r := range recs[:n] {
		frames := runtime.CallersFrames(r.Stack())
		seen := false
		for {
			f, more := frames.Next()
			seen = seen || under != "" && strings.HasSuffix(f.Function, under)
			if notPools && (strings.HasPrefix(f.Function, "sync.(*Pool)") || strings.HasPrefix(f.Function, "sync.(*poolChain)") ||
				strings.HasSuffix(f.Function, "bytebufferpool.(*Pool).Get")) {
				break
			}
			if strings.HasSuffix(f.Function, "engine.(*loop).onEvent") || strings.HasSuffix(f.Function, "engine.(*loop).runReady") {
				total += r.AllocObjects
				if seen {
					inUnder += r.AllocObjects
				}
				break
			}
			if !more {
				break
			}
		}
	}
	return total, inUnder
}

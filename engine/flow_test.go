package engine

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
	"github.com/portier/portier/internal/testutil"
)

// maxAhead bounds what may sit between a fast sender and a slow reader:
// kernel socket buffers on both hops (autotuned to a few MiB each) plus the
// proxy's one pending buffer. Without flow control the proxy would buffer it all.
const maxAhead = 40 << 20

// The same checks on the real binary with its RSS and 1 GiB are in e2e/.
func TestSlowClientFastBackendBounded(t *testing.T) {
	const total = 256 << 20
	var sent atomic.Int64
	sum := make(chan uint32, 1)
	be := testutil.RawBackend(t, func(c *net.TCPConn) {
		if testutil.SkipHead(bufio.NewReader(c)) != nil {
			return
		}
		crc, _ := testutil.SendPattern(c, total, &sent)
		sum <- crc
	})
	p := startProxy(t, []balancer.RouteSpec{{Name: "dl.test", Backends: []string{"http://" + be}}}, "", nil)
	c, err := net.Dial("tcp", p.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: dl.test\r\n\r\n")
	var got atomic.Int64
	worst := int64(0)
	n, crc, err := testutil.SlowThenFast(c, 1<<20, 2*time.Second, &got, func() {
		worst = max(worst, sent.Load()-got.Load())
	})
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	t.Logf("backend ran at most %.1f MiB ahead of the slow client", float64(worst)/(1<<20))
	if worst > maxAhead {
		t.Errorf("backend got %d MiB ahead of the reader: the proxy buffers without bound", worst>>20)
	}
	if want := <-sum; n != total || crc != want {
		t.Errorf("received %d bytes, want %d; checksums match: %v", n, total, crc == want)
	}
}

func TestFastClientSlowBackendBounded(t *testing.T) {
	const total = 256 << 20
	type result struct {
		n   int64
		crc uint32
		err error
	}
	res := make(chan result, 1)
	var sent, got atomic.Int64
	worst := int64(0)
	be := testutil.RawBackend(t, func(c *net.TCPConn) {
		br := bufio.NewReader(c)
		if testutil.SkipHead(br) != nil {
			return
		}
		// The body ends at its Content-Length: the client's FIN is not
		// passed on while the answer is owed.
		n, crc, err := testutil.SlowThenFast(io.LimitReader(br, total), 1<<20, 2*time.Second, &got, func() {
			worst = max(worst, sent.Load()-got.Load())
		})
		res <- result{n, crc, err}
		io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
	})
	p := startProxy(t, []balancer.RouteSpec{{Name: "ul.test", Backends: []string{"http://" + be}}}, "", nil)
	c, err := net.Dial("tcp", p.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	fmt.Fprintf(c, "PUT /big HTTP/1.1\r\nHost: ul.test\r\nContent-Length: %d\r\n\r\n", total)
	crc, err := testutil.SendPattern(c, total, &sent)
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	c.(*net.TCPConn).CloseWrite()
	r := <-res
	if r.err != nil {
		t.Fatalf("backend read: %v", r.err)
	}
	if r.n != total || r.crc != crc {
		t.Errorf("backend received %d body bytes, want %d; checksums match: %v", r.n, total, r.crc == crc)
	}
	t.Logf("client ran at most %.1f MiB ahead of the slow backend", float64(worst)/(1<<20))
	if worst > maxAhead {
		t.Errorf("client got %d MiB ahead of the slow backend", worst>>20)
	}
}

// TestOpaqueFlowBounded: the same bounds for TLS passthrough (opaque bytes,
// spliced past the first large read), both directions, checksummed.
func TestOpaqueFlowBounded(t *testing.T) {
	const total = 128 << 20
	hello := helloBytes(1, sniExt("bulk.test"))
	for _, down := range []bool{true, false} {
		t.Run(fmt.Sprintf("download=%v", down), func(t *testing.T) {
			var sent, got atomic.Int64
			worst := int64(0)
			check := func() { worst = max(worst, sent.Load()-got.Load()) }
			type result struct {
				n   int64
				crc uint32
				err error
			}
			res := make(chan result, 1)
			be := testutil.RawBackend(t, func(c *net.TCPConn) {
				if _, err := io.ReadFull(c, make([]byte, len(hello))); err != nil {
					res <- result{err: err}
					return
				}
				if down {
					crc, err := testutil.SendPattern(c, total, &sent)
					res <- result{total, crc, err}
					return
				}
				n, crc, err := testutil.SlowThenFast(c, 1<<20, 2*time.Second, &got, check)
				res <- result{n, crc, err}
			})
			p := startProxy(t, []balancer.RouteSpec{{Name: "bulk.test", Backends: []string{"tls://" + be}}}, "", nil)
			c, err := net.Dial("tcp", p.tlsAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(60 * time.Second))
			if _, err := c.Write(hello); err != nil {
				t.Fatal(err)
			}
			var n int64
			var crc uint32
			if down {
				n, crc, err = testutil.SlowThenFast(c, 1<<20, 2*time.Second, &got, check)
			} else {
				crc, err = testutil.SendPattern(c, total, &sent)
				n = total
				c.(*net.TCPConn).CloseWrite()
			}
			if err != nil {
				t.Fatal(err)
			}
			r := <-res
			if r.err != nil || r.n != n || r.crc != crc || n != total {
				t.Fatalf("%d bytes sent, %d received (%v); checksums match: %v", r.n, n, r.err, r.crc == crc)
			}
			t.Logf("sender ran at most %.1f MiB ahead of the slow reader", float64(worst)/(1<<20))
			if worst > maxAhead {
				t.Errorf("sender got %d MiB ahead: the proxy buffers without bound", worst>>20)
			}
		})
	}
}

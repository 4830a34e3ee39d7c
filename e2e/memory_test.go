package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portier/portier/internal/testutil"
)

// The acceptance bound of the flow control: a 1 GiB transfer between a fast
// peer and one reading at about 1 MiB/s keeps portier under 64 MiB RSS, and
// every byte arrives in order.
const (
	transferSize = 1 << 30
	rssLimitKiB  = 64 << 10
)

func proxyConfig(backend string) string {
	return fmt.Sprintf(`listeners:
  - {name: web, address: "127.0.0.1:0", protocol: http}
routes:
  big.test:
    - http://%s
loops: 1
`, backend)
}

func TestSlowClientDownloadMemoryBound(t *testing.T) {
	var sent atomic.Int64
	sum := make(chan uint32, 1)
	be := testutil.RawBackend(t, func(c *net.TCPConn) {
		if testutil.SkipHead(bufio.NewReader(c)) != nil {
			return
		}
		crc, _ := testutil.SendPattern(c, transferSize, &sent)
		sum <- crc
	})
	p := startPortier(t, proxyConfig(be))
	c, err := net.Dial("tcp", p.addr("web"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Minute))
	io.WriteString(c, "GET /1g HTTP/1.1\r\nHost: big.test\r\n\r\n")
	var got atomic.Int64
	var worstRSS int64
	check := func() { worstRSS = max(worstRSS, p.rssKiB(t)) }
	n, crc, err := testutil.SlowThenFast(c, 1<<20, 3*time.Second, &got, check)
	check()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	t.Logf("portier RSS peaked at %.1f MiB during a %d MiB download by a slow reader", float64(worstRSS)/1024, n>>20)
	if worstRSS > rssLimitKiB {
		t.Errorf("RSS %d KiB exceeds %d KiB", worstRSS, rssLimitKiB)
	}
	if want := <-sum; n != transferSize || crc != want {
		t.Errorf("received %d bytes, want %d; checksums match: %v", n, transferSize, crc == want)
	}
}

func TestSlowBackendUploadMemoryBound(t *testing.T) {
	type result struct {
		n   int64
		crc uint32
		err error
	}
	res := make(chan result, 1)
	var proc atomic.Pointer[process]
	var worstRSS atomic.Int64
	var got atomic.Int64
	be := testutil.RawBackend(t, func(c *net.TCPConn) {
		br := bufio.NewReader(c)
		if testutil.SkipHead(br) != nil {
			return
		}
		// The body ends at its Content-Length: the client's FIN is not
		// passed on while the answer is owed.
		n, crc, err := testutil.SlowThenFast(io.LimitReader(br, transferSize), 1<<20, 3*time.Second, &got, func() {
			if r := proc.Load().rssKiB(t); r > worstRSS.Load() {
				worstRSS.Store(r)
			}
		})
		res <- result{n, crc, err}
		io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
	})
	p := startPortier(t, proxyConfig(be))
	proc.Store(p)
	c, err := net.Dial("tcp", p.addr("web"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Minute))
	fmt.Fprintf(c, "PUT /1g HTTP/1.1\r\nHost: big.test\r\nContent-Length: %d\r\n\r\n", transferSize)
	var sent atomic.Int64
	crc, err := testutil.SendPattern(c, transferSize, &sent)
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	c.(*net.TCPConn).CloseWrite()
	r := <-res
	if r.err != nil {
		t.Fatalf("backend read: %v", r.err)
	}
	t.Logf("portier RSS peaked at %.1f MiB during a %d MiB upload to a slow backend", float64(worstRSS.Load())/1024, r.n>>20)
	if worstRSS.Load() > rssLimitKiB {
		t.Errorf("RSS %d KiB exceeds %d KiB", worstRSS.Load(), rssLimitKiB)
	}
	if r.n != transferSize || r.crc != crc {
		t.Errorf("backend received %d bytes, want %d; checksums match: %v", r.n, transferSize, r.crc == crc)
	}
}

func TestSIGTERMExitsZero(t *testing.T) {
	p := startPortier(t, proxyConfig("127.0.0.1:1"))
	if err := p.stop(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.logText())
	}
}

package engine

import (
	"bufio"
	"encoding/binary"
	"hash/crc32"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// pattern is a deterministic stream: 64 KiB blocks, each stamped with its
// index so a lost or reordered block changes the checksum.
type pattern struct {
	block []byte
	n     uint64
}

func newPattern() *pattern {
	p := &pattern{block: make([]byte, 64<<10)}
	for i := range p.block {
		p.block[i] = byte(i*7 + i>>8)
	}
	return p
}

func (p *pattern) next() []byte {
	binary.BigEndian.PutUint64(p.block, p.n)
	p.n++
	return p.block
}

// sendPattern writes total bytes of the pattern to w, counting into sent, and
// returns the checksum.
func sendPattern(w io.Writer, total int64, sent *atomic.Int64) (uint32, error) {
	p := newPattern()
	var crc uint32
	start := sent.Load()
	total += start
	for sent.Load() < total {
		b := p.next()
		if rem := total - sent.Load(); rem < int64(len(b)) {
			b = b[:rem]
		}
		crc = crc32.Update(crc, castagnoli, b)
		n, err := w.Write(b)
		sent.Add(int64(n))
		if err != nil {
			return crc, err
		}
	}
	return crc, nil
}

// slowThenFast reads for slowFor at about rate bytes/s, calling check while
// slow, then reads the rest at full speed; returns bytes read and checksum.
func slowThenFast(r io.Reader, rate int, slowFor time.Duration, got *atomic.Int64, check func()) (int64, uint32, error) {
	var crc uint32
	buf := make([]byte, 64<<10)
	end := time.Now().Add(slowFor)
	chunk := rate / 20
	for time.Now().Before(end) {
		n, err := io.ReadFull(r, buf[:chunk])
		crc = crc32.Update(crc, castagnoli, buf[:n])
		got.Add(int64(n))
		if err != nil {
			return got.Load(), crc, err
		}
		check()
		time.Sleep(50 * time.Millisecond)
	}
	for {
		n, err := r.Read(buf)
		crc = crc32.Update(crc, castagnoli, buf[:n])
		got.Add(int64(n))
		if err == io.EOF {
			return got.Load(), crc, nil
		}
		if err != nil {
			return got.Load(), crc, err
		}
	}
}

// maxAhead bounds what may sit between a fast sender and a slow reader:
// kernel socket buffers on both hops (autotuned to a few MiB each) plus the
// proxy's one pending buffer. Without flow control the proxy would buffer it all.
const maxAhead = 40 << 20

func TestSlowClientFastBackendBounded(t *testing.T) {
	const total = 256 << 20
	var sent atomic.Int64
	sum := make(chan uint32, 1)
	be := rawBackend(t, func(c *net.TCPConn) {
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil || line == "\r\n" {
				break
			}
		}
		crc, _ := sendPattern(c, total, &sent)
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
	n, crc, err := slowThenFast(c, 1<<20, 2*time.Second, &got, func() {
		if ahead := sent.Load() - got.Load(); ahead > worst {
			worst = ahead
		}
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
	var got atomic.Int64
	type result struct {
		n   int64
		crc uint32
		err error
	}
	res := make(chan result, 1)
	var sent atomic.Int64
	worst := int64(0)
	be := rawBackend(t, func(c *net.TCPConn) {
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil || line == "\r\n" {
				break
			}
		}
		n, crc, err := slowThenFast(br, 1<<20, 2*time.Second, &got, func() {
			if ahead := sent.Load() - got.Load(); ahead > worst {
				worst = ahead
			}
		})
		res <- result{n, crc, err}
	})
	p := startProxy(t, []balancer.RouteSpec{{Name: "ul.test", Backends: []string{"http://" + be}}}, "", nil)
	c, err := net.Dial("tcp", p.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	head := "PUT /big HTTP/1.1\r\nHost: ul.test\r\n\r\n"
	io.WriteString(c, head)
	crc, err := sendPattern(c, total, &sent)
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

package engine

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/valyala/bytebufferpool"
	"golang.org/x/sys/unix"

	"github.com/portier/portier/balancer"
)

// handshakeHarness drives one loop's first-bytes path in-process, without
// running the loop: bytes are handed to examine as if each came in its own
// read. The client's socket is one end of a socketpair (answers land there).
type handshakeHarness struct {
	e    *Engine
	l    *loop
	peer int // the other end of the client's socketpair
}

func newHandshakeHarness(tb testing.TB, maxHead int) *handshakeHarness {
	tb.Helper()
	table, err := balancer.NewTable(context.Background(), nil, "", balancer.TableOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	e, err := New(Options{
		Listeners:      []ListenerSpec{{Name: "web", Address: "127.0.0.1:0", Scheme: balancer.SchemeHTTP}},
		Router:         balancer.NewRouter(table),
		Loops:          1,
		MaxHeaderBytes: maxHead,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(e.closeLoops)
	return &handshakeHarness{e: e, l: e.loops[0]}
}

// client returns a fresh client in its handshake.
func (hh *handshakeHarness) client(tb testing.TB) *conn {
	tb.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	hh.peer = fds[1]
	c := hh.l.newConn(fds[0], kindClient)
	c.state = stHandshake
	c.ln = hh.l.lns[0].ln
	c.remote = netip.MustParseAddrPort("127.0.0.1:1")
	c.first = bytebufferpool.Get()
	return c
}

// done closes a client and its peer socket.
func (hh *handshakeHarness) done(c *conn) {
	hh.l.closeConn(c)
	_ = unix.Close(hh.peer)
}

// feed hands data to examine one byte per read up to the last byte, then
// the last byte, and reports how the connection was answered (nil: waiting).
func (hh *handshakeHarness) feed(c *conn, data []byte) *rejection {
	for i := range data {
		c.first.B = append(c.first.B, data[i])
		hh.l.examine(c)
		if c.state != stHandshake {
			return c.reason
		}
	}
	return nil
}

// bigHead is a head of about size bytes, many header lines, no route.
func bigHead(size int) []byte {
	var sb strings.Builder
	sb.WriteString("GET /some/path?q=1 HTTP/1.1\r\nHost: nowhere.test\r\n")
	for i := 0; sb.Len() < size-40; i++ {
		sb.WriteString("X-Filler: 0123456789abcdef0123456789abcdef0123456789abcdef0123\r\n")
	}
	sb.WriteString("\r\n")
	return []byte(sb.String())
}

// TestHeadOneBytePerRead: a head arriving one byte per read gets the answer
// the whole head gets (here: no route), including heads the framer refuses
// only at a line it sees once the head may have ended.
func TestHeadOneBytePerRead(t *testing.T) {
	hh := newHandshakeHarness(t, 64<<10)
	for _, tt := range []struct {
		name string
		in   []byte
		want *rejection
	}{
		{"16 KiB head", bigHead(16 << 10), rejUnknownName},
		{"with leading empty lines", []byte("\r\n\r\nGET / HTTP/1.1\r\nHost: x.test\r\n\r\n"), rejUnknownName},
		{"bad header line", []byte("GET / HTTP/1.1\r\nHost: x.test\r\nBad Header\r\n\r\n"), rejMalformed},
		{"bare LF head", []byte("GET / HTTP/1.1\nHost: x.test\n\n"), rejMalformed},
		{"TLS on the HTTP port", []byte("\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00"), rejNotProtocol},
		{"over the limit", bigHead(65 << 10), rejTooLarge},
		{"smuggling", []byte("POST / HTTP/1.1\r\nHost: x.test\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"), rejBadFraming},
	} {
		t.Run(tt.name, func(t *testing.T) {
			whole := hh.client(t)
			whole.first.B = append(whole.first.B, tt.in...)
			hh.l.examine(whole)
			if whole.reason != tt.want {
				t.Fatalf("whole: %v, want %v", whole.reason, tt.want)
			}
			hh.done(whole)
			c := hh.client(t)
			if got := hh.feed(c, tt.in); got != tt.want {
				t.Fatalf("one byte per read: %v, want %v", got, tt.want)
			}
			hh.done(c)
		})
	}
}

func TestHeadMayEnd(t *testing.T) {
	for _, tt := range []struct {
		in   string
		from int
		want bool
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, true},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r", 0, false},
		{"GET / HTTP/1.1\r\nHost: a\r\n", 0, false},
		{"GET / HTTP/1.1\nHost: a\n\n", 0, true},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27, false}, // past the end
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 24, true},  // resumes at the last LF's CR
		{"\r\n\r\n", 0, true},
		{"", 0, false},
	} {
		if got := headMayEnd([]byte(tt.in), tt.from); got != tt.want {
			t.Errorf("headMayEnd(%q, %d) = %v", tt.in, tt.from, got)
		}
	}
}

// BenchmarkHeadOneBytePerRead: the loop's CPU for a 16 KiB head that
// arrives one byte per read (the socket reads themselves not included).
func BenchmarkHeadOneBytePerRead(b *testing.B) {
	hh := newHandshakeHarness(b, 64<<10)
	head := bigHead(16 << 10)
	b.ReportAllocs()
	b.SetBytes(int64(len(head)))
	for b.Loop() {
		c := hh.client(b)
		if r := hh.feed(c, head); r != rejUnknownName {
			b.Fatal(r)
		}
		hh.done(c)
	}
}

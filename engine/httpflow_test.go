package engine

import (
	"net/netip"
	"testing"

	"github.com/portier/portier/balancer"
	"github.com/portier/portier/parser"
)

// rewriteFixture is a loop and client just complete enough for rewriteHead.
func rewriteFixture(noForward uint8, trusted bool) (*loop, *conn) {
	e := &Engine{addrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:8080")}}
	l := &loop{e: e}
	c := &conn{ln: &listener{spec: ListenerSpec{Scheme: balancer.SchemeHTTP, NoForward: noForward}},
		remote: netip.MustParseAddrPort("[2001:db8::7]:4711")}
	if trusted {
		c.flags |= fTrusted
	}
	return l, c
}

func TestRewriteHead(t *testing.T) {
	head := "\r\nGET /x HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 6.6.6.6\r\nAccept: */*\r\n" +
		"X-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nForwarded: for=6.6.6.6\r\n\r\n"
	tests := []struct {
		name      string
		noForward uint8
		trusted   bool
		want      string
	}{
		{"untrusted", 0, false, "GET /x HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\n" +
			"X-Forwarded-For: 2001:db8::7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Port: 8080\r\n" +
			"Forwarded: for=\"[2001:db8::7]\";host=\"a.test\";proto=http\r\n\r\n"},
		{"trusted", 0, true, "GET /x HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n" +
			"X-Forwarded-For: 6.6.6.6, 2001:db8::7\r\nX-Forwarded-Port: 8080\r\n" +
			"Forwarded: for=6.6.6.6, for=\"[2001:db8::7]\";host=\"a.test\";proto=http\r\n\r\n"},
		{"only xff", FwdProto | FwdPort | FwdForwarded, false, "GET /x HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\n" +
			"X-Forwarded-Proto: https\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-For: 2001:db8::7\r\n\r\n"},
		{"all off", FwdXFF | FwdProto | FwdPort | FwdForwarded, false, head[2:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, c := rewriteFixture(tt.noForward, tt.trusted)
			var f parser.RequestFramer
			step, n, err := f.Next([]byte(head), 0)
			if err != nil || step != parser.StepHead || n != len(head) {
				t.Fatalf("framer: %v %v %d", step, err, n)
			}
			got := string(l.rewriteHead(c, nil, []byte(head), &f.Head))
			if got != tt.want {
				t.Fatalf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestRewriteHeadAllocs(t *testing.T) {
	l, c := rewriteFixture(0, false)
	head := []byte("GET /x HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 6.6.6.6\r\nAccept: */*\r\n\r\n")
	var f parser.RequestFramer
	out := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(200, func() {
		f.Reset()
		_, _, _ = f.Next(head, 0)
		out = l.rewriteHead(c, out[:0], head, &f.Head)
	}); n != 0 {
		t.Fatalf("framing and rewriting a head allocates %.1f times", n)
	}
}

func BenchmarkRewriteHead(b *testing.B) {
	l, c := rewriteFixture(0, false)
	head := []byte("GET /index.html HTTP/1.1\r\nHost: www.example.test\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n")
	var f parser.RequestFramer
	out := make([]byte, 0, 1024)
	b.ReportAllocs()
	b.SetBytes(int64(len(head)))
	for b.Loop() {
		f.Reset()
		_, _, _ = f.Next(head, 0)
		out = l.rewriteHead(c, out[:0], head, &f.Head)
	}
}

// TestRewriteHeadHopByHop: a request that closes its connection, and any
// HTTP/1.0 request, loses its hop-by-hop lines; HTTP/1.0 asks the backend
// for keep-alive. A kept-alive HTTP/1.1 request keeps its Connection line.
func TestRewriteHeadHopByHop(t *testing.T) {
	const fwd = "X-Forwarded-For: 2001:db8::7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Port: 8080\r\n"
	tests := []struct{ name, head, want string }{
		{"close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-A\r\nX-A: 1\r\nX-Forwarded-For: 6.6.6.6\r\nB: 2\r\n\r\n",
			"GET / HTTP/1.1\r\nHost: a\r\nB: 2\r\n" + fwd},
		{"close names a forwarding header", "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close, X-Forwarded-For\r\n\r\n",
			"GET / HTTP/1.1\r\nHost: a\r\n" + fwd},
		{"1.0", "GET / HTTP/1.0\r\nHost: a\r\nKeep-Alive: 300\r\n\r\n",
			"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n" + fwd},
		{"1.1 keep-alive", "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
			"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n" + fwd},
	}
	for _, tt := range tests {
		l, c := rewriteFixture(FwdForwarded, false)
		var f parser.RequestFramer
		if step, n, err := f.Next([]byte(tt.head), 0); err != nil || step != parser.StepHead || n != len(tt.head) {
			t.Fatalf("%s: framer: %v %v %d", tt.name, step, err, n)
		}
		if got := string(l.rewriteHead(c, nil, []byte(tt.head), &f.Head)); got != tt.want+"\r\n" {
			t.Errorf("%s: got\n%q\nwant\n%q", tt.name, got, tt.want+"\r\n")
		}
	}
	head := []byte("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n")
	l, c := rewriteFixture(0, false)
	var f parser.RequestFramer
	out := make([]byte, 0, 1024)
	for range 2 { // the first call sizes the loop's scratch
		f.Reset()
		_, _, _ = f.Next(head, 0)
		out = l.rewriteHead(c, out[:0], head, &f.Head)
	}
	if n := testing.AllocsPerRun(200, func() {
		f.Reset()
		_, _, _ = f.Next(head, 0)
		out = l.rewriteHead(c, out[:0], head, &f.Head)
	}); n != 0 {
		t.Fatalf("rewriting a head that says close allocates %.1f times", n)
	}
}

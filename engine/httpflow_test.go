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

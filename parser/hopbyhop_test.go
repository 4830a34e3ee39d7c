package parser

import (
	"strings"
	"testing"
)

func TestAppendHopLines(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX: 1\r\n\r\n",
			"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\r\n"},
		{"named and keep-alive", "GET / HTTP/1.1\r\nconnection: close, X-Secret\r\nHost: a\r\nx-secret: s\r\nKeep-Alive: 5\r\nProxy-Connection: close\r\nY: 2\r\n\r\n",
			"GET / HTTP/1.1\r\nHost: a\r\nY: 2\r\n\r\n"},
		{"framing fields stay", "POST / HTTP/1.1\r\nHost: a\r\nConnection: close, Content-Length, Host, Transfer-Encoding\r\nContent-Length: 2\r\n\r\n",
			"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n"},
		{"upgrade keeps connection", "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, Keep-Alive\r\nUpgrade: websocket\r\nKeep-Alive: 1\r\n\r\n",
			"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, Keep-Alive\r\nUpgrade: websocket\r\n\r\n"},
	}
	for _, tt := range tests {
		var f RequestFramer
		step, n, err := f.Next([]byte(tt.in), 0)
		if err != nil || step != StepHead || n != len(tt.in) {
			t.Fatalf("%s: %v %v %d", tt.name, step, err, n)
		}
		drops := AppendHopLines(nil, []byte(tt.in), &f.Head)
		var sb strings.Builder
		at := 0
		for _, d := range drops {
			sb.WriteString(tt.in[at:d[0]])
			at = d[1]
		}
		sb.WriteString(tt.in[at:])
		if sb.String() != tt.want {
			t.Errorf("%s:\n%q\nwant\n%q", tt.name, sb.String(), tt.want)
		}
	}
	in := []byte("GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-A\r\nX-A: 1\r\n\r\n")
	var f RequestFramer
	if _, _, err := f.Next(in, 0); err != nil {
		t.Fatal(err)
	}
	dst := make([][2]int, 0, 8)
	if a := testing.AllocsPerRun(100, func() { dst = AppendHopLines(dst[:0], in, &f.Head) }); a != 0 {
		t.Errorf("%v allocations", a)
	}
}

// FuzzAppendHopLines: the ranges are whole header lines, in order, inside
// the head; the head without them still frames as one request with the
// same host and body.
func FuzzAppendHopLines(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var fr RequestFramer
		step, n, err := fr.Next(data, 0)
		if err != nil || step != StepHead {
			return
		}
		head := data[:n]
		h := fr.Head
		drops := AppendHopLines(nil, head, &h)
		var out []byte
		at := h.Start
		for _, d := range drops {
			if d[0] < at || d[1] > h.HeadersEnd || d[0] >= d[1] || head[d[1]-1] != '\n' || head[d[0]-1] != '\n' {
				t.Fatalf("range %v (previous end %d, headers end %d) in %q", d, at, h.HeadersEnd, head)
			}
			out = append(out, head[at:d[0]]...)
			at = d[1]
		}
		out = append(out, head[at:]...)
		var fr2 RequestFramer
		step2, n2, err := fr2.Next(out, 0)
		if err != nil || step2 != StepHead || n2 != len(out) {
			t.Fatalf("rewritten head %q: %v %v %d", out, step2, err, n2)
		}
		h2 := fr2.Head
		if string(h2.Host) != string(h.Host) || h2.BodyKind != h.BodyKind || h2.ContentLength != h.ContentLength {
			t.Fatalf("rewritten head %q frames differently: %+v vs %+v", out, h2, h)
		}
	})
}

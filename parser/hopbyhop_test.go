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

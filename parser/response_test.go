package parser

import (
	"errors"
	"strings"
	"testing"
)

func TestParseResponseHead(t *testing.T) {
	tests := []struct {
		name, in string
		status   int
		kind     uint8
		length   int64
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, BodyLength, 5},
		{"zero length", "HTTP/1.1 200 OK\r\ncontent-length:0\r\n\r\n", 200, BodyLength, 0},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 9\r\n\r\n", 200, BodyChunked, 9},
		{"te not chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 200, BodyUntilClose, 0},
		{"te xchunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n", 200, BodyUntilClose, 0},
		{"until close", "HTTP/1.0 200 OK\r\nServer: x\r\n\r\n", 200, BodyUntilClose, 0},
		{"no content", "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", 204, BodyNone, 10},
		{"not modified", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", 304, BodyNone, 0},
		{"continue", "HTTP/1.1 100 Continue\r\n\r\n", 100, BodyNone, 0},
		{"repeated length", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", 200, BodyLength, 3},
	}
	for _, tt := range tests {
		var h ResponseHead
		if err := ParseResponseHead([]byte(tt.in), 1<<14, &h); err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if h.Status != tt.status || h.BodyKind != tt.kind || h.ContentLength != tt.length || tt.in[h.HeadLen-4:h.HeadLen] != "\r\n\r\n" {
			t.Errorf("%s: got %+v", tt.name, h)
		}
	}
	bad := []string{
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/1.1 099 Low\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789\r\n\r\n",
		"HTTP/1.0 1000 OK\r\n\r\n",                   // a four-digit code is not 100
		"HTTP/1.1 200 OK\r\nConnection: x\n\r\n\r\n", // a bare LF: the head's end depends on the reader
		"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
	}
	for _, in := range bad {
		var h ResponseHead
		if err := ParseResponseHead([]byte(in), 1<<14, &h); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: err %v, want ErrMalformed", in, err)
		}
	}
	var h ResponseHead
	if err := ParseResponseHead([]byte("HTTP/1.1 200 OK\r\nContent-Len"), 1<<14, &h); err != ErrNeedMore {
		t.Errorf("partial head: %v", err)
	}
	if err := ParseResponseHead(make([]byte, 100), 64, &h); !errors.Is(err, ErrMalformed) {
		t.Errorf("head over the limit: %v", err)
	}
}

// TestBeginBody: a response body followed with the request side's framer
// ends exactly where the message does, however it is split.
func TestBeginBody(t *testing.T) {
	body := "5\r\nhello\r\n0\r\nTrailer: x\r\n\r\n"
	for split := 1; split < len(body); split++ {
		var f RequestFramer
		f.BeginBody(BodyChunked, 0)
		var carry []byte
		consumed := 0
		for _, part := range []string{body[:split], body[split:]} {
			data := append(carry, part...)
			for len(data) > 0 && !f.AtBoundary() {
				_, n, err := f.Next(data, 0)
				if err == ErrNeedMore {
					break
				}
				if err != nil {
					t.Fatalf("split %d: %v", split, err)
				}
				consumed += n
				data = data[n:]
			}
			carry = append([]byte(nil), data...)
		}
		if !f.AtBoundary() || consumed != len(body) {
			t.Fatalf("split %d: boundary %v after %d of %d bytes", split, f.AtBoundary(), consumed, len(body))
		}
	}
	var f RequestFramer
	f.BeginBody(BodyLength, 3)
	if _, n, err := f.Next([]byte("abcdef"), 0); err != nil || n != 3 || !f.AtBoundary() {
		t.Fatalf("length body: n %d, err %v, boundary %v", n, err, f.AtBoundary())
	}
	f.BeginBody(BodyLength, 0)
	if !f.AtBoundary() {
		t.Fatal("empty body not at a boundary")
	}
}

func TestParseResponseHeadAllocs(t *testing.T) {
	in := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
	var h ResponseHead
	if n := testing.AllocsPerRun(100, func() { _ = ParseResponseHead(in, 1<<14, &h) }); n != 0 {
		t.Fatalf("%.1f allocations", n)
	}
}

func BenchmarkParseResponseHead(b *testing.B) {
	in := []byte("HTTP/1.1 200 OK\r\nDate: Sun, 29 Nov 2026 07:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
	var h ResponseHead
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		_ = ParseResponseHead(in, 1<<14, &h)
	}
}

// TestResponseConnection: the connection semantics of an answer and the
// rewrite that makes it say close, body untouched.
func TestResponseConnection(t *testing.T) {
	tests := []struct {
		name, in, out string
		close         bool
	}{
		{"1.1 default", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi", false},
		{"1.1 close", "HTTP/1.1 200 OK\r\nconnection: Keep-Alive, close\r\nContent-Length: 2\r\n\r\nhi",
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi", true},
		{"1.0 default", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
			"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi", true},
		{"1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nhi",
			"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi", false},
		{"proxy-connection", "HTTP/1.1 204 No Content\r\nProxy-Connection: keep-alive\r\nX: y\r\n\r\n",
			"HTTP/1.1 204 No Content\r\nX: y\r\nConnection: close\r\n\r\n", false},
	}
	for _, tt := range tests {
		var h ResponseHead
		if err := ParseResponseHead([]byte(tt.in), 1<<14, &h); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if h.Close != tt.close {
			t.Errorf("%s: Close %v, want %v", tt.name, h.Close, tt.close)
		}
		got := string(AppendCloseHead(nil, []byte(tt.in), &h)) + tt.in[h.HeadLen:]
		if got != tt.out {
			t.Errorf("%s: rewritten\n%q\nwant\n%q", tt.name, got, tt.out)
		}
	}
	var h ResponseHead
	five := "HTTP/1.1 200 OK\r\n" + strings.Repeat("Connection: keep-alive\r\n", 5) + "\r\n"
	if err := ParseResponseHead([]byte(five), 1<<14, &h); !errors.Is(err, ErrMalformed) {
		t.Errorf("five Connection lines: %v, want ErrMalformed", err)
	}
	in := []byte("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
	out := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() {
		_ = ParseResponseHead(in, 1<<14, &h)
		out = AppendCloseHead(out[:0], in, &h)
	}); n != 0 {
		t.Errorf("%v allocations per parse and rewrite", n)
	}
}

func FuzzParseResponseHead(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h ResponseHead
		err := ParseResponseHead(b, 4096, &h)
		if err != nil {
			if err != ErrNeedMore && !errors.Is(err, ErrMalformed) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if h.HeadLen < 14 || h.HeadLen > len(b) || string(b[h.HeadLen-4:h.HeadLen]) != "\r\n\r\n" {
			t.Fatalf("head length %d of %d bytes", h.HeadLen, len(b))
		}
		if h.Status < 100 || h.Status > 999 || h.BodyKind > BodyUntilClose || h.ContentLength < 0 {
			t.Fatalf("head %+v", h)
		}
		// The rewrite keeps every line but the hop-by-hop ones and says close once.
		rw := AppendCloseHead(nil, b, &h)
		var h2 ResponseHead
		if err := ParseResponseHead(rw, 1<<20, &h2); err != nil || !h2.Close || h2.NHop != 1 ||
			h2.Status != h.Status || h2.BodyKind != h.BodyKind || h2.HeadLen != len(rw) {
			t.Fatalf("rewritten head %q: %v %+v", rw, err, h2)
		}
		if h.BodyKind == BodyChunked || h.BodyKind == BodyLength {
			// The body must be followable by the framer without panicking.
			var fr RequestFramer
			fr.BeginBody(h.BodyKind, h.ContentLength)
			rest := b[h.HeadLen:]
			for len(rest) > 0 && !fr.AtBoundary() {
				_, n, err := fr.Next(rest, 0)
				if err != nil {
					break
				}
				rest = rest[n:]
			}
		}
	})
}

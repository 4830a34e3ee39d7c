package parser

import (
	"errors"
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

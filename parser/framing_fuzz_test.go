package parser

import (
	"bufio"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httputil"
	"reflect"
	"strings"
	"testing"
)

// FuzzRequestFramer: Next never panics, n stays within buf, every call makes
// progress or reports ErrNeedMore/an error (checked in frameFeed), the steps
// cover exactly the stream in order, head offsets lie inside the head, and a
// random segmentation of the same bytes gives the same merged steps, with or
// without the Unseen body bytes skipped instead of examined.
func FuzzRequestFramer(f *testing.F) {
	f.Add(frameBenchStream, uint64(0))
	f.Add([]byte(frameGet+framePostCL+"hello world"+frameChunked+frameChunks), uint64(12345))
	f.Add([]byte("GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x00"), uint64(7))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nForwarded: for=x\r\nContent-Length: 1, 1\r\n\r\nx"), uint64(99))
	f.Add([]byte("GET http://b.test:81/x HTTP/1.2\r\nHost: a.test\r\n\r\nGET / HTTP/1.0\r\n\r\n"), uint64(3))
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), uint64(0))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		maxHead := 0
		if seed&1 == 1 {
			maxHead = 16 + int(seed>>1%1024)
		}
		var fr RequestFramer
		whole := frameFeed(t, &fr, [][]byte{data}, maxHead)

		// The events cover the stream in order.
		var sb strings.Builder
		for i, e := range whole {
			if e.err != nil && i != len(whole)-1 {
				t.Fatalf("error event %v before the end", e)
			}
			sb.WriteString(e.data)
			if e.step == StepHead {
				frameCheckHeadOffsets(t, e)
			}
		}
		covered := sb.String()
		if last := whole; len(last) == 0 || last[len(last)-1].err == nil || last[len(last)-1].err == ErrNeedMore {
			if covered != string(data) {
				t.Fatalf("events cover %q, stream is %q", covered, data)
			}
		} else if !strings.HasPrefix(string(data), covered) {
			t.Fatalf("events cover %q, not a prefix of %q", covered, data)
		}

		frameCompareNetHTTP(t, whole)
		// Routing: where net/http's server accepts the first head the
		// framer accepted, both pick the same host.
		if len(whole) > 0 && whole[0].step == StepHead && whole[0].err == nil {
			if want, ok := netHTTPRoute(whole[0].data); ok && want != whole[0].head.Host {
				t.Fatalf("head %q: framer routes by %q, net/http serves %q", whole[0].data, whole[0].head.Host, want)
			}
		}

		// Random segmentation.
		rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		var segs [][]byte
		maxSeg := 1 + rng.IntN(64)
		for rest := data; len(rest) > 0; {
			k := min(len(rest), 1+rng.IntN(maxSeg))
			segs = append(segs, rest[:k])
			rest = rest[k:]
		}
		fr.Reset()
		if split := frameFeed(t, &fr, segs, maxHead); !reflect.DeepEqual(split, whole) {
			t.Fatalf("segmented into %d:\n got %v\nwant %v", len(segs), split, whole)
		}
		// The same segments, with body bytes that need not be seen skipped
		// (spliced) in random amounts where the framer says so.
		fr.Reset()
		skip := func(max int) int { return rng.IntN(max + 1) }
		if skipped := frameFeedSkipping(t, &fr, segs, maxHead, skip); !reflect.DeepEqual(skipped, whole) {
			t.Fatalf("segmented into %d, body bytes skipped:\n got %v\nwant %v", len(segs), skipped, whole)
		}
	})
}

// frameCheckHeadOffsets checks that a head's offsets are ordered and inside it.
func frameCheckHeadOffsets(t *testing.T, e frameEvent) {
	t.Helper()
	h, n := e.head, len(e.data)
	if h.Method == "" || h.Target == "" || h.Start < 0 || h.Start >= h.HeadersEnd || h.HeadersEnd != n-2 {
		t.Fatalf("head %+v of %d bytes", h, n)
	}
	if h.NDrop < 0 || h.NDrop > len(h.Drop) {
		t.Fatalf("NDrop %d", h.NDrop)
	}
	prev := h.Start
	for _, d := range h.Drop[:h.NDrop] {
		if d[0] < prev || d[1] <= d[0] || d[1] > h.HeadersEnd || e.data[d[1]-2:d[1]] != "\r\n" {
			t.Fatalf("drop range %v in head %q", d, e.data)
		}
		prev = d[1]
	}
	for _, r := range [][2]int{h.XFF, h.Forwarded} {
		if r != [2]int{} && (r[0] <= h.Start || r[1] < r[0] || r[1] > h.HeadersEnd) {
			t.Fatalf("value range %v in head %q", r, e.data)
		}
	}
	if h.BodyKind > BodyChunked || h.ContentLength < 0 || h.BodyKind != BodyLength && h.ContentLength != 0 {
		t.Fatalf("body %d/%d", h.BodyKind, h.ContentLength)
	}
}

// frameCompareNetHTTP: when the framer completed the first request (another
// step follows it) and net/http also accepts it, both must agree on its body.
// Acceptance itself may differ (the framer is stricter in places, net/http in
// others); a disagreement on length where both accept is a smuggling hazard.
func frameCompareNetHTTP(t *testing.T, evs []frameEvent) {
	if len(evs) < 2 || evs[0].step != StepHead || evs[0].err != nil {
		return
	}
	var body string
	next := 1
	if evs[1].step == StepBody && evs[1].err == nil {
		body, next = evs[1].data, 2
	}
	if next >= len(evs) || evs[next].err != nil || evs[next].step == StepBody {
		return // the first message may be incomplete
	}
	msg := evs[0].data + body
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(msg + "\r\n")))
	if err != nil {
		return
	}
	got, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	want := []byte(body)
	if evs[0].head.BodyKind == BodyChunked {
		if want, err = io.ReadAll(httputil.NewChunkedReader(strings.NewReader(body))); err != nil {
			t.Fatalf("framer accepted chunked body %q that net/http's chunked reader rejects: %v", body, err)
		}
	}
	if string(got) != string(want) {
		t.Fatalf("body of %q: net/http %q, framer %q", msg, got, want)
	}
}

package parser

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"reflect"
	"strings"
	"testing"
)

// frameHeadSnap is a comparable copy of a FramedHead (slices as strings).
type frameHeadSnap struct {
	Method, Target, Host string
	HostNil              bool
	FramedHead           // with the slices cleared
}

func frameSnap(h *FramedHead) frameHeadSnap {
	s := frameHeadSnap{Method: string(h.Method), Target: string(h.Target), Host: string(h.Host), HostNil: h.Host == nil, FramedHead: *h}
	s.FramedHead.Method, s.FramedHead.Target, s.FramedHead.Host = nil, nil, nil
	return s
}

// frameEvent is one step of a framed stream; consecutive body (and tunnel)
// steps are merged, so feeding the same bytes in different segments must
// give identical event lists.
type frameEvent struct {
	step Step
	data string
	head frameHeadSnap // for StepHead
	err  error         // final event only: the sticky error, or ErrNeedMore with data = unconsumed bytes
}

func (e frameEvent) String() string {
	if e.err != nil {
		return fmt.Sprintf("err(%v, left %q)", e.err, e.data)
	}
	return fmt.Sprintf("step%d(%q)", e.step, e.data)
}

// frameFeed drives f like the engine does: bytes arrive in the given
// segments, Next is called until it wants more, consumed bytes are dropped.
// It checks the per-call contract and returns the merged events.
func frameFeed(tb testing.TB, f *RequestFramer, segs [][]byte, maxHead int) []frameEvent {
	tb.Helper()
	return frameFeedSkipping(tb, f, segs, maxHead, nil)
}

// frameFeedSkipping is frameFeed, except that while the framer reports
// Unseen body bytes, skip (if not nil) picks how many of them it is handed
// with Skip instead of Next, as the engine does when it splices a body.
func frameFeedSkipping(tb testing.TB, f *RequestFramer, segs [][]byte, maxHead int, skip func(max int) int) []frameEvent {
	tb.Helper()
	var evs []frameEvent
	var pending []byte
	add := func(e frameEvent) {
		if k := len(evs) - 1; k >= 0 && e.err == nil && e.step != StepHead && evs[k].step == e.step && evs[k].err == nil {
			evs[k].data += e.data
			return
		}
		evs = append(evs, e)
	}
	for _, seg := range segs {
		pending = append(pending, seg...)
		for {
			if u := f.Unseen(); skip != nil && u > 0 && len(pending) > 0 {
				if k := skip(int(min(u, int64(len(pending))))); k > 0 {
					f.Skip(k)
					add(frameEvent{step: StepBody, data: string(pending[:k])})
					pending = pending[k:]
					continue
				}
			}
			step, n, err := f.Next(pending, maxHead)
			if err == ErrNeedMore {
				if n != 0 || step != 0 {
					tb.Fatalf("ErrNeedMore with step %d, n %d", step, n)
				}
				break
			}
			if err != nil {
				if n != 0 {
					tb.Fatalf("error %v with n %d", err, n)
				}
				if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrNotThisProtocol) {
					tb.Fatalf("error %v is neither ErrMalformed, ErrTooLarge nor ErrNotThisProtocol", err)
				}
				if s2, n2, err2 := f.Next(pending, maxHead); err2 != err || n2 != 0 || s2 != 0 {
					tb.Fatalf("error not sticky: %v then %d, %d, %v", err, s2, n2, err2)
				}
				return append(evs, frameEvent{err: err})
			}
			if n <= 0 || n > len(pending) || step < StepHead || step > StepTunnel {
				tb.Fatalf("Next = %d, %d for %d buffered bytes", step, n, len(pending))
			}
			e := frameEvent{step: step, data: string(pending[:n])}
			if step == StepHead {
				h := &f.Head
				if h.HeadersEnd != n-2 || string(pending[h.HeadersEnd:n]) != "\r\n" {
					tb.Fatalf("HeadersEnd %d for head of %d bytes", h.HeadersEnd, n)
				}
				e.head = frameSnap(h)
			}
			if step == StepTunnel && n != len(pending) {
				tb.Fatalf("StepTunnel covers %d of %d bytes", n, len(pending))
			}
			add(e)
			pending = pending[n:]
		}
	}
	if len(pending) > 0 {
		evs = append(evs, frameEvent{err: ErrNeedMore, data: string(pending)})
	}
	return evs
}

// frameSplits returns the input whole, in two pieces at every position, and
// one byte at a time.
func frameSplits(in string) [][][]byte {
	b := []byte(in)
	out := [][][]byte{{b}}
	for i := 1; i < len(b); i++ {
		out = append(out, [][]byte{b[:i], b[i:]})
	}
	var bytewise [][]byte
	for i := range b {
		bytewise = append(bytewise, b[i:i+1])
	}
	return append(out, bytewise)
}

func frameEventsEqual(a, b []frameEvent) bool {
	return reflect.DeepEqual(a, b)
}

// frameCheckSplits runs in through every segmentation and requires the same
// events as the whole input gives, which it returns.
func frameCheckSplits(t *testing.T, in string, maxHead int) []frameEvent {
	t.Helper()
	var f RequestFramer
	whole := frameFeed(t, &f, [][]byte{[]byte(in)}, maxHead)
	for _, segs := range frameSplits(in)[1:] {
		f.Reset()
		got := frameFeed(t, &f, segs, maxHead)
		if !frameEventsEqual(got, whole) {
			t.Fatalf("segments %d (first %d bytes):\n got %v\nwant %v", len(segs), len(segs[0]), got, whole)
		}
	}
	return whole
}

// frameRewrite rebuilds a head the way the engine does: forwarding lines
// dropped, one X-Forwarded-For appended to a trusted incoming list.
func frameRewrite(head []byte, h *FramedHead, client string) string {
	var sb strings.Builder
	at := h.Start
	for _, d := range h.Drop[:h.NDrop] {
		sb.Write(head[at:d[0]])
		at = d[1]
	}
	sb.Write(head[at:h.HeadersEnd])
	sb.WriteString("X-Forwarded-For: ")
	if h.XFF != [2]int{} && h.XFF[1] > h.XFF[0] {
		sb.Write(head[h.XFF[0]:h.XFF[1]])
		sb.WriteString(", ")
	}
	sb.WriteString(client + "\r\n")
	sb.Write(head[h.HeadersEnd:])
	return sb.String()
}

const (
	frameGet     = "GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n"
	framePostCL  = "POST /form HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n\r\n"
	frameChunked = "POST /up HTTP/1.1\r\nHost: example.com:8080\r\nTransfer-Encoding: chunked\r\n\r\n"
	frameChunks  = "5;name=val;q=\"a \\\"b\\\"\"\r\nhello\r\n" + "A ; ext\r\n0123456789\r\n" + "0\r\nX-Trailer: yes\r\nX-Other:\t1 \r\n\r\n"
)

func TestRequestFramerSequences(t *testing.T) {
	type want struct {
		step  Step
		data  string
		check func(t *testing.T, h frameHeadSnap)
	}
	tests := []struct {
		name string
		in   string
		want []want
		err  error // final error, nil if the stream ends cleanly
	}{
		{
			name: "keep-alive GET, POST, chunked POST, HEAD",
			in:   frameGet + framePostCL + "hello world" + frameChunked + frameChunks + "HEAD /h HTTP/1.1\r\nHost: example.com\r\n\r\n",
			want: []want{
				{StepHead, frameGet, func(t *testing.T, h frameHeadSnap) {
					if h.Method != "GET" || h.Target != "/a" || h.Host != "example.com" || h.Minor != 1 || !h.KeepAlive || h.BodyKind != BodyNone {
						t.Errorf("GET head %+v", h)
					}
				}},
				{StepHead, framePostCL, func(t *testing.T, h frameHeadSnap) {
					if h.BodyKind != BodyLength || h.ContentLength != 11 {
						t.Errorf("POST head %+v", h)
					}
				}},
				{StepBody, "hello world", nil},
				{StepHead, frameChunked, func(t *testing.T, h frameHeadSnap) {
					if h.BodyKind != BodyChunked || h.Host != "example.com:8080" {
						t.Errorf("chunked head %+v", h)
					}
				}},
				{StepBody, frameChunks, nil},
				{StepHead, "HEAD /h HTTP/1.1\r\nHost: example.com\r\n\r\n", nil},
			},
		},
		{
			name: "leading CRLF, HTTP/1.0 keep-alive and close",
			in: "\r\nGET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n" + "GET / HTTP/1.0\r\n\r\n" +
				"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n",
			want: []want{
				{StepHead, "\r\nGET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", func(t *testing.T, h frameHeadSnap) {
					if h.Start != 2 || h.Minor != 0 || !h.KeepAlive || !h.HostNil {
						t.Errorf("1.0 keep-alive head %+v", h)
					}
				}},
				{StepHead, "GET / HTTP/1.0\r\n\r\n", func(t *testing.T, h frameHeadSnap) {
					if h.KeepAlive {
						t.Errorf("1.0 default keep-alive")
					}
				}},
				{StepHead, "GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n", func(t *testing.T, h frameHeadSnap) {
					if h.KeepAlive {
						t.Errorf("1.1 close kept alive")
					}
				}},
			},
		},
		{
			name: "Expect 100-continue then pipelined GET",
			in:   "PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\nabc" + frameGet,
			want: []want{
				{StepHead, "PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n", func(t *testing.T, h frameHeadSnap) {
					if !h.ExpectContinue || h.ContentLength != 3 {
						t.Errorf("expect head %+v", h)
					}
				}},
				{StepBody, "abc", nil},
				{StepHead, frameGet, func(t *testing.T, h frameHeadSnap) {
					if h.ExpectContinue {
						t.Errorf("ExpectContinue leaked into the next head")
					}
				}},
			},
		},
		{
			name: "websocket upgrade then tunnel",
			in: "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n" +
				"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58" + "GET / HTTP/1.1\r\n\x00",
			want: []want{
				{StepHead, "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
					func(t *testing.T, h frameHeadSnap) {
						if !h.Upgrade || !h.KeepAlive {
							t.Errorf("upgrade head %+v", h)
						}
					}},
				{StepTunnel, "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58" + "GET / HTTP/1.1\r\n\x00", nil},
			},
		},
		{
			name: "upgrade request with a body tunnels after the body",
			in:   "POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\nhiPRI * HTTP/2.0\r\n",
			want: []want{
				{StepHead, "POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\n", nil},
				{StepBody, "hi", nil},
				{StepTunnel, "PRI * HTTP/2.0\r\n", nil},
			},
		},
		{
			name: "upgrade ignored in HTTP/1.0 and without Upgrade header",
			in:   "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n" + frameGet,
			want: []want{
				{StepHead, "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", func(t *testing.T, h frameHeadSnap) {
					if h.Upgrade {
						t.Errorf("HTTP/1.0 upgrade")
					}
				}},
				{StepHead, "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n", nil},
				{StepHead, frameGet, nil},
			},
		},
		{
			name: "Content-Length 0, identical duplicates, list form, chunked after gzip",
			in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n" +
				"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\ncontent-length:2\r\n\r\nab" +
				"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2 , 2\r\n\r\ncd" +
				"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: CHUNKED\r\n\r\n0000000000000001\r\nx\r\n0\r\n\r\n",
			want: []want{
				{StepHead, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", func(t *testing.T, h frameHeadSnap) {
					if h.BodyKind != BodyLength || h.ContentLength != 0 {
						t.Errorf("CL 0 head %+v", h)
					}
				}},
				{StepHead, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\ncontent-length:2\r\n\r\n", nil},
				{StepBody, "ab", nil},
				{StepHead, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2 , 2\r\n\r\n", nil},
				{StepBody, "cd", nil},
				{StepHead, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: CHUNKED\r\n\r\n", func(t *testing.T, h frameHeadSnap) {
					if h.BodyKind != BodyChunked {
						t.Errorf("gzip, chunked head %+v", h)
					}
				}},
				{StepBody, "0000000000000001\r\nx\r\n0\r\n\r\n", nil},
			},
		},
		{
			name: "absolute-form target and OPTIONS *",
			in:   "GET http://Origin.example:81/p?q HTTP/1.1\r\nHost: other\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
			want: []want{
				{StepHead, "GET http://Origin.example:81/p?q HTTP/1.1\r\nHost: other\r\n\r\n", func(t *testing.T, h frameHeadSnap) {
					if h.Host != "Origin.example:81" {
						t.Errorf("absolute-form Host %q", h.Host)
					}
				}},
				{StepHead, "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", nil},
			},
		},
		{
			name: "incomplete head at end of input",
			in:   frameGet + "GET / HTTP/1.1\r\nHo",
			want: []want{{StepHead, frameGet, nil}},
			err:  ErrNeedMore,
		},
		{
			name: "body split by end of input",
			in:   framePostCL + "hello",
			want: []want{{StepHead, framePostCL, nil}, {StepBody, "hello", nil}},
		},
		{
			name: "chunked body ends mid size line",
			in:   frameChunked + "5\r\nhello\r\n1",
			want: []want{{StepHead, frameChunked, nil}, {StepBody, "5\r\nhello\r\n", nil}},
			err:  ErrNeedMore,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs := frameCheckSplits(t, tt.in, 0)
			if tt.err != nil {
				if len(evs) == 0 || evs[len(evs)-1].err != tt.err {
					t.Fatalf("events %v, want final %v", evs, tt.err)
				}
				evs = evs[:len(evs)-1]
			}
			if len(evs) != len(tt.want) {
				t.Fatalf("events %v, want %d", evs, len(tt.want))
			}
			for i, w := range tt.want {
				if evs[i].err != nil || evs[i].step != w.step || evs[i].data != w.data {
					t.Fatalf("event %d = %v, want step%d(%q)", i, evs[i], w.step, w.data)
				}
				if w.check != nil {
					w.check(t, evs[i].head)
				}
			}
		})
	}
}

func TestRequestFramerRewrite(t *testing.T) {
	in := "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.1 , 10.0.0.2 \r\nx-real-ip: 1.1.1.1\r\nAccept: */*\r\n" +
		"X-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\nForwarded: for=10.0.0.1\r\nUser-Agent: t\r\n\r\n"
	var f RequestFramer
	step, n, err := f.Next([]byte(in), 0)
	if step != StepHead || n != len(in) || err != nil {
		t.Fatalf("Next = %d, %d, %v", step, n, err)
	}
	h := &f.Head
	if h.NDrop != 5 {
		t.Fatalf("NDrop = %d", h.NDrop)
	}
	if got := in[h.XFF[0]:h.XFF[1]]; got != "10.0.0.1 , 10.0.0.2" {
		t.Fatalf("XFF value %q", got)
	}
	if got := in[h.Forwarded[0]:h.Forwarded[1]]; got != "for=10.0.0.1" {
		t.Fatalf("Forwarded value %q", got)
	}
	want := "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nUser-Agent: t\r\nX-Forwarded-For: 10.0.0.1 , 10.0.0.2, 192.0.2.1\r\n\r\n"
	if got := frameRewrite([]byte(in), h, "192.0.2.1"); got != want {
		t.Fatalf("rewritten head\n%q\nwant\n%q", got, want)
	}
	// Absent and empty values.
	for _, c := range []struct {
		in       string
		xff, fwd bool
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", false, false},
		{"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For:\r\nForwarded: \r\n\r\n", true, true},
	} {
		f.Reset()
		if _, _, err := f.Next([]byte(c.in), 0); err != nil {
			t.Fatal(err)
		}
		if xff := f.Head.XFF != [2]int{}; xff != c.xff || f.Head.XFF[0] != f.Head.XFF[1] {
			t.Errorf("%q: XFF %v", c.in, f.Head.XFF)
		}
		if fwd := f.Head.Forwarded != [2]int{}; fwd != c.fwd || f.Head.Forwarded[0] != f.Head.Forwarded[1] {
			t.Errorf("%q: Forwarded %v", c.in, f.Head.Forwarded)
		}
		if got, want := frameRewrite([]byte(c.in), &f.Head, "c"), "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: c\r\n\r\n"; got != want {
			t.Errorf("%q rewritten to %q", c.in, got)
		}
	}
}

func TestRequestFramerErrors(t *testing.T) {
	h11 := "POST / HTTP/1.1\r\nHost: a\r\n"
	chunked := h11 + "Transfer-Encoding: chunked\r\n\r\n"
	nine := strings.Repeat("X-Real-IP: 1\r\n", 9)
	tests := []struct {
		name    string
		in      string
		maxHead int
		want    error
	}{
		// Smuggling: body length ambiguity.
		{"CL and TE", h11 + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 0, frameErrCLAndTE},
		{"TE and CL", h11 + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 0, frameErrCLAndTE},
		{"differing CL lines", h11 + "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 0, frameErrCLDiffer},
		{"differing CL list", h11 + "Content-Length: 5, 6\r\n\r\n", 0, frameErrCLDiffer},
		{"CL empty element", h11 + "Content-Length: 5,\r\n\r\n", 0, frameErrCLValue},
		{"CL empty", h11 + "Content-Length:\r\n\r\n", 0, frameErrCLValue},
		{"CL sign", h11 + "Content-Length: +5\r\n\r\n", 0, frameErrCLValue},
		{"CL negative", h11 + "Content-Length: -1\r\n\r\n", 0, frameErrCLValue},
		{"CL hex", h11 + "Content-Length: 0x5\r\n\r\n", 0, frameErrCLValue},
		{"CL inner space", h11 + "Content-Length: 1 2\r\n\r\n", 0, frameErrCLValue},
		{"CL overflow", h11 + "Content-Length: 9223372036854775808\r\n\r\n", 0, frameErrCLOverflow},
		{"TE chunked not last", h11 + "Transfer-Encoding: chunked, gzip\r\n\r\n", 0, frameErrTENotChunked},
		{"TE chunked not last across lines", h11 + "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 0, frameErrTENotChunked},
		{"TE chunked twice", h11 + "Transfer-Encoding: chunked, chunked\r\n\r\n", 0, frameErrTENotChunked},
		{"TE without chunked", h11 + "Transfer-Encoding: gzip\r\n\r\n", 0, frameErrTENotChunked},
		{"TE identity", h11 + "Transfer-Encoding: identity\r\n\r\n", 0, frameErrTENotChunked},
		{"TE look-alike", h11 + "Transfer-Encoding: xchunked\r\n\r\n", 0, frameErrTENotChunked},
		{"TE parameter", h11 + "Transfer-Encoding: chunked;q=1\r\n\r\n", 0, frameErrTEValue},
		{"TE empty", h11 + "Transfer-Encoding: \r\n\r\n", 0, frameErrTEValue},
		{"TE empty element", h11 + "Transfer-Encoding: ,chunked\r\n\r\n", 0, frameErrTEValue},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 0, frameErrTE10},
		{"TE space before colon", h11 + "Transfer-Encoding : chunked\r\n\r\n", 0, frameErrSpaceColon},
		{"TE obs-fold", h11 + "Transfer-Encoding: chunked\r\n identity\r\n\r\n", 0, frameErrObsFold},
		// Chunk framing.
		{"chunk size not hex", chunked + "g\r\n", 0, frameErrChunkSize},
		{"chunk size 0x", chunked + "0x5\r\n", 0, frameErrChunkSize},
		{"chunk size empty", chunked + "\r\n", 0, frameErrChunkSize},
		{"chunk size negative", chunked + "-1\r\n", 0, frameErrChunkSize},
		{"chunk size 17 digits", chunked + "00000000000000001\r\n", 0, frameErrChunkSizeLong},
		{"chunk size above int64", chunked + "8000000000000000\r\n", 0, frameErrChunkSizeLong},
		{"chunk size bare LF", chunked + "5\nhello\r\n", 0, frameErrChunkBareLF},
		{"chunk size CR without LF", chunked + "5\rhello", 0, frameErrChunkCRNoLF},
		{"chunk size trailing space", chunked + "5 \r\nhello\r\n", 0, frameErrChunkExt},
		{"chunk ext empty", chunked + "5;\r\nhello\r\n", 0, frameErrChunkExt},
		{"chunk ext no value", chunked + "5;a=\r\nhello\r\n", 0, frameErrChunkExt},
		{"chunk ext bare LF", chunked + "5;a\nhello\r\n", 0, frameErrChunkBareLF},
		{"chunk ext LF in quotes", chunked + "5;a=\"x\ny\"\r\nhello\r\n", 0, frameErrChunkExt},
		{"chunk ext CR in quotes", chunked + "5;a=\"x\r\n\"\r\nhello\r\n", 0, frameErrChunkExt},
		{"chunk ext junk", chunked + "5;a=b c\r\nhello\r\n", 0, frameErrChunkExt},
		{"chunk line too long", chunked + "5;" + strings.Repeat("a=b;", 1100), 0, frameErrChunkLineLong},
		{"chunk data without CRLF", chunked + "5\r\nhelloX\r\n0\r\n\r\n", 0, frameErrChunkDataCRLF},
		{"chunk data LF only", chunked + "5\r\nhello\n0\r\n\r\n", 0, frameErrChunkDataCRLF},
		{"chunk data CR then junk", chunked + "5\r\nhello\rX0\r\n\r\n", 0, frameErrChunkDataCRLF},
		{"chunk data too long", chunked + "2\r\nhello\r\n0\r\n\r\n", 0, frameErrChunkDataCRLF},
		{"trailer name with space", chunked + "0\r\nBad Name: x\r\n\r\n", 0, frameErrTrailerLine},
		{"trailer space before colon", chunked + "0\r\nName : x\r\n\r\n", 0, frameErrTrailerLine},
		{"trailer without colon", chunked + "0\r\nName\r\n\r\n", 0, frameErrTrailerLine},
		{"trailer obs-fold", chunked + "0\r\nA: b\r\n c\r\n\r\n", 0, frameErrTrailerObsFold},
		{"trailer NUL", chunked + "0\r\nA: b\x00\r\n\r\n", 0, frameErrNUL},
		{"trailer bare LF", chunked + "0\r\nA: b\n\r\n", 0, frameErrBareLF},
		{"trailer end bare LF", chunked + "0\r\nA: b\r\n\n", 0, frameErrChunkBareLF},
		{"trailer end CR junk", chunked + "0\r\n\rX", 0, frameErrChunkCRNoLF},
		{"trailers too large", chunked + "0\r\n" + strings.Repeat("A: 0123456789abcdef\r\n", 200), 0, frameErrTrailersTooLarge},
		// Head checks shared with the Host parser.
		{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 0, frameErrNUL},
		{"NUL in target", "GET /\x00 HTTP/1.1\r\n", 0, frameErrNUL},
		{"NUL in method", "GE\x00T / HTTP/1.1\r\n", 0, ErrNotHTTP},
		{"CTL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 0, frameErrHeaderValue},
		{"DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 0, frameErrHeaderValue},
		{"bare LF in header", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 0, frameErrBareLF},
		{"bare LF request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", 0, frameErrBareLF},
		{"bare LF end of head", "GET / HTTP/1.1\r\nHost: a\r\n\n", 0, frameErrBareLF},
		{"bare CR in header", "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 0, frameErrCRNoLF},
		{"bare CR end of head", "GET / HTTP/1.1\r\nHost: a\r\n\rX", 0, frameErrCRNoLF},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n", 0, frameErrObsFold},
		{"space before first header", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 0, frameErrObsFold},
		{"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 0, frameErrSpaceColon},
		{"empty header name", "GET / HTTP/1.1\r\n: a\r\n\r\n", 0, frameErrHeaderName},
		{"bad header name", "GET / HTTP/1.1\r\nX(y): a\r\n\r\n", 0, frameErrHeaderName},
		{"multiple Host", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 0, frameErrDupHost},
		{"no Host in 1.1", "GET / HTTP/1.1\r\nX: a\r\n\r\n", 0, frameErrNoHost},
		{"bad Host", "GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", 0, frameErrHostChar},
		{"Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 0, frameErrHostChar},
		{"CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 0, frameErrConnect},
		{"empty method", " / HTTP/1.1\r\n", 0, ErrNotHTTP},
		{"double space", "GET  / HTTP/1.1\r\n", 0, frameErrRequestLine},
		{"HTTP/0.9", "GET /\r\n", 0, frameErrRequestLine},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0, ErrHTTP2Preface},
		{"HTTP/2.0", "GET / HTTP/2.0\r\n", 0, frameErrVersion},
		{"lowercase version", "GET / http/1.1\r\n", 0, frameErrVersion},
		{"version 1.10", "GET / HTTP/1.10\r\n", 0, frameErrVersion},
		{"version trailing space", "GET / HTTP/1.1 \r\n", 0, frameErrVersion},
		{"target control", "GET /\x01 HTTP/1.1\r\n", 0, frameErrTargetChar},
		{"target asterisk GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 0, frameErrTarget},
		{"target relative", "GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", 0, frameErrTarget},
		{"target other scheme", "GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 0, frameErrTarget},
		{"target userinfo", "GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 0, frameErrAbsHost},
		{"target empty authority", "GET http:/// HTTP/1.1\r\nHost: a\r\n\r\n", 0, frameErrAbsHost},
		{"too many leading CRLF", strings.Repeat("\r\n", 5) + frameGet, 0, frameErrLeadingLines},
		{"leading bare LF", "\nGET / HTTP/1.1\r\n", 0, frameErrBareLF},
		{"too many forwarding headers", "GET / HTTP/1.1\r\nHost: a\r\n" + nine + "\r\n", 0, frameErrTooManyDrop},
		{"two X-Forwarded-For", "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1\r\nx-forwarded-for: 2\r\n\r\n", 0, frameErrDupXFF},
		{"two Forwarded", "GET / HTTP/1.1\r\nHost: a\r\nForwarded: for=1\r\nForwarded: for=2\r\n\r\n", 0, frameErrDupForwarded},
		{"head too large", frameGet[:len(frameGet)-2] + "X: " + strings.Repeat("a", 100) + "\r\n\r\n", 100, ErrHeadTooLarge},
		{"head exactly at limit+1", frameGet, len(frameGet) - 1, ErrHeadTooLarge},
		// The second request of a keep-alive connection.
		{"second request smuggled", frameGet + framePostCL + "hello world" + h11 + "Content-Length: 1\r\nContent-Length: 2\r\n\r\n", 0, frameErrCLDiffer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs := frameCheckSplits(t, tt.in, tt.maxHead)
			last := evs[len(evs)-1]
			if last.err != tt.want {
				t.Fatalf("events %v, want final error %v", evs, tt.want)
			}
		})
	}
	// A head exactly maxHead long is accepted.
	var f RequestFramer
	if step, n, err := f.Next([]byte(frameGet), len(frameGet)); step != StepHead || n != len(frameGet) || err != nil {
		t.Fatalf("head at the limit: %d, %d, %v", step, n, err)
	}
}

func TestRequestFramerErrorClasses(t *testing.T) {
	if !errors.Is(ErrHeadTooLarge, ErrTooLarge) || errors.Is(ErrHeadTooLarge, ErrMalformed) {
		t.Error("ErrHeadTooLarge must be ErrTooLarge only")
	}
	if !errors.Is(frameErrTrailersTooLarge, ErrTooLarge) {
		t.Error("trailer limit must be ErrTooLarge")
	}
	if !errors.Is(frameErrCLAndTE, ErrMalformed) || errors.Is(frameErrCLAndTE, ErrTooLarge) {
		t.Error("CL+TE must be ErrMalformed")
	}
}

func TestRequestFramerLargeBodies(t *testing.T) {
	// A body far beyond any buffer streams through with O(1) state.
	var f RequestFramer
	in := []byte(framePostCL[:len(framePostCL)-len("11\r\n\r\n")] + "1000000000000\r\n\r\n")
	step, n, err := f.Next(in, 0)
	if step != StepHead || err != nil || f.Head.ContentLength != 1e12 {
		t.Fatalf("head: %d, %d, %v, %+v", step, n, err, f.Head)
	}
	chunk := make([]byte, 1<<16)
	for i := 0; i < 100; i++ {
		if step, n, err := f.Next(chunk, 0); step != StepBody || n != len(chunk) || err != nil {
			t.Fatalf("body: %d, %d, %v", step, n, err)
		}
	}
	if f.AtBoundary() {
		t.Fatal("AtBoundary inside a body")
	}
	// A huge chunk declared in hex, streamed in pieces.
	f.Reset()
	in = []byte(frameChunked + "7fffffffffffffff\r\n")
	if _, n, _ := f.Next(in, 0); n != len(frameChunked) {
		t.Fatal("chunked head")
	}
	if step, n, err := f.Next(in[len(frameChunked):], 0); step != StepBody || n != 18 || err != nil {
		t.Fatalf("max chunk size line: %d, %d, %v", step, n, err)
	}
	if step, n, err := f.Next(chunk, 0); step != StepBody || n != len(chunk) || err != nil {
		t.Fatalf("chunk data: %d, %d, %v", step, n, err)
	}
}

func TestRequestFramerAtBoundary(t *testing.T) {
	var f RequestFramer
	if !f.AtBoundary() {
		t.Fatal("zero framer not at boundary")
	}
	in := []byte(framePostCL + "hello world")
	_, n, _ := f.Next(in, 0)
	if f.AtBoundary() {
		t.Fatal("at boundary before the body")
	}
	if _, _, err := f.Next(in[n:], 0); err != nil || !f.AtBoundary() {
		t.Fatalf("not at boundary after the body: %v", err)
	}
	if _, _, err := f.Next([]byte("GET / HTTP/1.1\r\nHost: a\rX"), 0); err == nil || f.AtBoundary() {
		t.Fatal("at boundary after an error")
	}
	f.Reset()
	if !f.AtBoundary() {
		t.Fatal("Reset did not clear the error")
	}
}

// TestRequestFramerMatchesNetHTTP frames keep-alive streams and reads them
// with net/http's server-side parser: both must see the same requests with the
// same bodies, i.e. agree on where every message ends.
func TestRequestFramerMatchesNetHTTP(t *testing.T) {
	streams := []string{
		string(frameBenchStream),
		// (net/http rejects the BWS before ';' that RFC 9112 7.1.1 allows, so
		// frameChunks itself is not used here.)
		frameGet + framePostCL + "hello world" + frameChunked + "5;name=val;q=\"a \\\"b\\\"\"\r\nhello\r\n0\r\nX-T: 1\r\n\r\n" +
			"HEAD /h HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\nPOST / HTTP/1.0\r\nContent-Length: 2\r\n\r\nab",
		"PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc" + frameGet,
		"GET http://Origin.example:81/p?q HTTP/1.1\r\nHost: other\r\n\r\nDELETE /d HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
		frameChunked + "000A\r\n0123456789\r\n1;a=\"\\\"\"\r\nx\r\n0\r\n\r\n" + frameGet,
	}
	for i, stream := range streams {
		var f RequestFramer
		evs := frameFeed(t, &f, [][]byte{[]byte(stream)}, 0)
		br := bufio.NewReader(strings.NewReader(stream))
		for k := 0; k < len(evs); k++ {
			e := evs[k]
			if e.err != nil || e.step != StepHead {
				t.Fatalf("stream %d event %d: %v", i, k, e)
			}
			req, err := http.ReadRequest(br)
			if err != nil {
				t.Fatalf("stream %d: net/http: %v", i, err)
			}
			got, err := io.ReadAll(req.Body)
			if err != nil {
				t.Fatalf("stream %d: net/http body: %v", i, err)
			}
			var body []byte
			if k+1 < len(evs) && evs[k+1].step == StepBody {
				k++
				body = []byte(evs[k].data)
				if e.head.BodyKind == BodyChunked {
					if body, err = io.ReadAll(httputil.NewChunkedReader(strings.NewReader(evs[k].data))); err != nil {
						t.Fatalf("stream %d: decode chunked: %v", i, err)
					}
				}
			}
			h := e.head
			wantCL := h.ContentLength
			if h.BodyKind == BodyChunked {
				wantCL = -1
			}
			if req.Method != h.Method || req.RequestURI != h.Target || req.Host != h.Host || req.ContentLength != wantCL ||
				req.Close == h.KeepAlive || req.ProtoMinor != h.Minor || string(got) != string(body) {
				t.Fatalf("stream %d request %d: net/http %s %s host %q CL %d close %v 1.%d body %q; framer %+v body %q",
					i, k, req.Method, req.RequestURI, req.Host, req.ContentLength, req.Close, req.ProtoMinor, got, h, body)
			}
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("stream %d: net/http left bytes the framer consumed", i)
		}
	}
}

// frameBenchStream is three keep-alive requests: a browser-like GET, a POST
// with Content-Length and a chunked POST with trailers.
var frameBenchStream = []byte("GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/120.0\r\n" +
	"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: keep-alive\r\nCookie: session=0123456789abcdef\r\n\r\n" +
	"POST /api/v1/items HTTP/1.1\r\nHost: www.example.com\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n" +
	`{"name":"widget","qty":100}` +
	"POST /upload HTTP/1.1\r\nHost: www.example.com\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n" +
	"1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n10\r\n0123456789abcdef\r\n0\r\nChecksum: 12345\r\n\r\n")

// frameConsumeAll frames a whole stream and returns the number of steps.
func frameConsumeAll(f *RequestFramer, buf []byte) (steps int, err error) {
	f.Reset()
	for len(buf) > 0 {
		_, n, err := f.Next(buf, 0)
		if err != nil {
			return steps, err
		}
		buf = buf[n:]
		steps++
	}
	return steps, nil
}

func TestRequestFramerZeroAlloc(t *testing.T) {
	var f RequestFramer
	if steps, err := frameConsumeAll(&f, frameBenchStream); err != nil || steps != 5 {
		t.Fatalf("bench stream: %d steps, %v", steps, err)
	}
	bad := []byte(frameChunked + "5\r\nhelloX")
	if a := testing.AllocsPerRun(200, func() { _, _ = frameConsumeAll(&f, frameBenchStream) }); a != 0 {
		t.Errorf("%v allocs per stream", a)
	}
	if a := testing.AllocsPerRun(200, func() { _, _ = frameConsumeAll(&f, bad) }); a != 0 {
		t.Errorf("%v allocs per rejected stream", a)
	}
	partial := frameBenchStream[:len(frameBenchStream)-5]
	if a := testing.AllocsPerRun(200, func() {
		f.Reset()
		for i := 1; i <= 40; i++ { // NeedMore on growing prefixes
			_, _, _ = f.Next(partial[:i], 0)
		}
	}); a != 0 {
		t.Errorf("%v allocs for ErrNeedMore calls", a)
	}
}

func BenchmarkRequestFramer(b *testing.B) {
	var f RequestFramer
	b.ReportAllocs()
	b.SetBytes(int64(len(frameBenchStream)))
	for b.Loop() {
		if _, err := frameConsumeAll(&f, frameBenchStream); err != nil {
			b.Fatal(err)
		}
	}
}

package engine

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
)

// echoHeaders answers with the forwarding headers the backend received, one
// per line, plus the request's body length.
func echoHeaders(t testing.TB, seen *atomic.Int64) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if seen != nil {
			seen.Add(1)
		}
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "path=%s\nxff=%s\nxfp=%s\nxfport=%s\nforwarded=%s\nrealip=%s\nbody=%d\n",
			r.URL.Path, strings.Join(r.Header.Values("X-Forwarded-For"), "|"),
			r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Port"),
			strings.Join(r.Header.Values("Forwarded"), "|"), r.Header.Get("X-Real-Ip"), len(body))
	}))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// clientFrom returns an http.Client whose connections come from the loopback
// address src and that keeps one connection alive.
func clientFrom(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: d.DialContext, MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, DisableCompression: true,
	}}
}

// TestForwardingHeadersOnEveryRequest sends three requests and a chunked POST
// on one keep-alive connection from 127.0.0.7 with spoofed forwarding
// headers: each one reaches the backend with portier's values only.
func TestForwardingHeadersOnEveryRequest(t *testing.T) {
	be := echoHeaders(t, nil)
	p := startProxy(t, []balancer.RouteSpec{{Name: "fw.test", Backends: []string{"http://" + be}}}, "", nil)
	client := clientFrom("127.0.0.7")
	var conns, reused atomic.Int64
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		conns.Add(1)
		if i.Reused {
			reused.Add(1)
		}
	}}
	want := func(path string, body int) string {
		return fmt.Sprintf("path=%s\nxff=127.0.0.7\nxfp=http\nxfport=%s\nforwarded=for=127.0.0.7;host=\"fw.test\";proto=http\nrealip=\nbody=%d\n",
			path, p.httpPort, body)
	}
	steps := []struct {
		method, path string
		body         io.Reader
		bodyLen      int
	}{
		{"GET", "/1", nil, 0},
		{"POST", "/chunked", &onlyReader{strings.NewReader(strings.Repeat("x", 100000))}, 100000}, // unknown length: chunked
		{"GET", "/2", nil, 0},
		{"GET", "/3", nil, 0},
	}
	for _, s := range steps {
		req, _ := http.NewRequest(s.method, "http://"+p.httpAddr+s.path, s.body)
		req.Host = "fw.test"
		req.Header.Set("X-Forwarded-For", "6.6.6.6")
		req.Header.Set("X-Forwarded-Proto", "https")
		req.Header.Set("X-Forwarded-Port", "1")
		req.Header.Set("Forwarded", "for=6.6.6.6")
		req.Header.Set("X-Real-IP", "6.6.6.6")
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", s.method, s.path, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if w := want(s.path, s.bodyLen); string(got) != w {
			t.Fatalf("%s %s: backend saw\n%s\nwant\n%s", s.method, s.path, got, w)
		}
		if s.body != nil && len(resp.TransferEncoding) > 0 {
			t.Logf("%v", resp.TransferEncoding)
		}
	}
	if conns.Load() != int64(len(steps)) || reused.Load() != int64(len(steps)-1) {
		t.Fatalf("requests used %d connections (%d reused): want one keep-alive connection", conns.Load()-reused.Load(), reused.Load())
	}
}

// onlyReader hides a reader's length so that net/http sends it chunked.
type onlyReader struct{ r io.Reader }

func (o *onlyReader) Read(b []byte) (int, error) { return o.r.Read(b) }

// TestForwardingHeadersTrustedProxy: behind trusted_proxies the incoming list
// is appended to and the proxy's protocol and port are kept.
func TestForwardingHeadersTrustedProxy(t *testing.T) {
	be := echoHeaders(t, nil)
	p := startProxy(t, []balancer.RouteSpec{{Name: "fw.test", Backends: []string{"http://" + be}}}, "", func(o *Options) {
		o.Listeners[0].TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.8/32")}
	})
	get := func(src string) string {
		req, _ := http.NewRequest("GET", "http://"+p.httpAddr+"/t", nil)
		req.Host = "fw.test"
		req.Header.Set("X-Forwarded-For", "203.0.113.9")
		req.Header.Set("X-Forwarded-Proto", "https")
		req.Header.Set("Forwarded", "for=203.0.113.9;proto=https")
		resp, err := clientFrom(src).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	trusted := fmt.Sprintf("path=/t\nxff=203.0.113.9, 127.0.0.8\nxfp=https\nxfport=%s\nforwarded=for=203.0.113.9;proto=https, for=127.0.0.8;host=\"fw.test\";proto=http\nrealip=\nbody=0\n", p.httpPort)
	if got := get("127.0.0.8"); got != trusted {
		t.Errorf("trusted proxy: backend saw\n%s\nwant\n%s", got, trusted)
	}
	untrusted := fmt.Sprintf("path=/t\nxff=127.0.0.9\nxfp=http\nxfport=%s\nforwarded=for=127.0.0.9;host=\"fw.test\";proto=http\nrealip=\nbody=0\n", p.httpPort)
	if got := get("127.0.0.9"); got != untrusted {
		t.Errorf("untrusted client: backend saw\n%s\nwant\n%s", got, untrusted)
	}
}

// TestForwardingHeadersTurnedOff: a listener with every header off passes
// the client's own headers through untouched.
func TestForwardingHeadersTurnedOff(t *testing.T) {
	be := echoHeaders(t, nil)
	p := startProxy(t, []balancer.RouteSpec{{Name: "fw.test", Backends: []string{"http://" + be}}}, "", func(o *Options) {
		o.Listeners[0].NoForward = FwdXFF | FwdProto | FwdPort | FwdForwarded
	})
	req := "GET /off HTTP/1.1\r\nHost: fw.test\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n"
	got := string(rawExchange(t, p.httpAddr, []byte(req)))
	if !strings.Contains(got, "\nxff=6.6.6.6\nxfp=\nxfport=\nforwarded=\n") {
		t.Fatalf("backend saw: %s", got)
	}
}

// TestRequestForAnotherHostIsNotForwarded: the second request on a
// connection names another route; the first route's backend never sees it,
// the client gets the first answer and then the connection closes.
func TestRequestForAnotherHostIsNotForwarded(t *testing.T) {
	var seenA, seenB atomic.Int64
	a := echoHeaders(t, &seenA)
	b := echoHeaders(t, &seenB)
	p := startProxy(t, []balancer.RouteSpec{
		{Name: "a.test", Backends: []string{"http://" + a}},
		{Name: "b.test", Backends: []string{"http://" + b}},
	}, "", nil)
	for _, pipelined := range []bool{false, true} {
		seenA.Store(0)
		seenB.Store(0)
		c, err := net.Dial("tcp", p.httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		first := "GET /a1 HTTP/1.1\r\nHost: a.test\r\n\r\n"
		second := "GET /b1 HTTP/1.1\r\nHost: b.test\r\n\r\n"
		if pipelined {
			io.WriteString(c, first+second)
		} else {
			io.WriteString(c, first)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("pipelined=%v: first response: %v", pipelined, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "path=/a1") {
			t.Fatalf("first response: %s", body)
		}
		if !pipelined {
			io.WriteString(c, second)
		}
		rest, err := io.ReadAll(br)
		c.Close()
		if err != nil || len(rest) != 0 {
			t.Fatalf("pipelined=%v: after the first response got %q (%v), want a clean close", pipelined, rest, err)
		}
		if seenA.Load() != 1 || seenB.Load() != 0 {
			t.Fatalf("pipelined=%v: backend a saw %d requests, b %d; want 1 and 0", pipelined, seenA.Load(), seenB.Load())
		}
	}
	// A new connection for b.test is routed to b.
	got := string(rawExchange(t, p.httpAddr, []byte("GET /b2 HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n")))
	if !strings.Contains(got, "path=/b2") || seenB.Load() != 1 {
		t.Fatalf("retry on a new connection: %q", got)
	}
}

// TestSmugglingRejected: ambiguous framing gets 400 and a close, before any
// backend connection on a first request, after the previous answer on a
// later one; the backend never sees the bad request.
func TestSmugglingRejected(t *testing.T) {
	var seen atomic.Int64
	be := echoHeaders(t, &seen)
	p := startProxy(t, []balancer.RouteSpec{{Name: "sm.test", Backends: []string{"http://" + be}}}, "", nil)
	bad := []struct{ name, req string }{
		{"CL and TE", "POST / HTTP/1.1\r\nHost: sm.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"differing CL", "POST / HTTP/1.1\r\nHost: sm.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"},
		{"bad chunk size", "POST / HTTP/1.1\r\nHost: sm.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"},
		{"TE not chunked", "POST / HTTP/1.1\r\nHost: sm.test\r\nTransfer-Encoding: gzip\r\n\r\n"},
	}
	for _, tt := range bad {
		t.Run("first "+tt.name, func(t *testing.T) {
			seen.Store(0)
			got := string(rawExchange(t, p.httpAddr, []byte(tt.req)))
			if !strings.HasPrefix(got, "HTTP/1.1 400 ") || !strings.Contains(got, "request framing rejected") {
				t.Fatalf("got %q, want 400", got)
			}
			if seen.Load() != 0 {
				t.Fatal("the backend saw the request")
			}
		})
		t.Run("later "+tt.name, func(t *testing.T) {
			seen.Store(0)
			c, err := net.Dial("tcp", p.httpAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, "GET /ok HTTP/1.1\r\nHost: sm.test\r\n\r\n")
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || !strings.Contains(string(body), "path=/ok") {
				t.Fatalf("first answer: %d %s", resp.StatusCode, body)
			}
			io.WriteString(c, tt.req)
			got, _ := io.ReadAll(br)
			if !strings.HasPrefix(string(got), "HTTP/1.1 400 ") {
				t.Fatalf("got %q, want 400 and a close", got)
			}
			if tt.name != "bad chunk size" && seen.Load() != 1 {
				t.Fatalf("the backend saw %d requests, want 1", seen.Load())
			}
		})
		t.Run("pipelined "+tt.name, func(t *testing.T) {
			// In the same read as a valid request, as in a later read: the
			// valid one is forwarded and answered, then the 400; the bad
			// one (head or body) never reaches the backend.
			seen.Store(0)
			got := string(rawExchange(t, p.httpAddr, []byte("GET /ok HTTP/1.1\r\nHost: sm.test\r\n\r\n"+tt.req)))
			ok, rest, _ := strings.Cut(got, "body=0\n")
			if !strings.HasPrefix(ok, "HTTP/1.1 200 ") || !strings.Contains(ok, "path=/ok") ||
				!strings.HasPrefix(rest, "HTTP/1.1 400 ") || !strings.Contains(rest, "request framing rejected") || seen.Load() != 1 {
				t.Fatalf("got %q (backend saw %d), want 200 for /ok, then 400", got, seen.Load())
			}
		})
	}
	if !p.log.has("frame request: both Content-Length and Transfer-Encoding") {
		t.Error("no log line names the framing problem")
	}
}

// wsBackend accepts WebSocket upgrades and echoes every frame it gets back
// unmasked; other requests get 400.
func wsBackend(t testing.TB) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "not a websocket request", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			wsAccept(r.Header.Get("Sec-WebSocket-Key")))
		brw.Flush()
		for {
			op, payload, err := wsReadFrame(brw.Reader)
			if err != nil || op == 8 {
				return
			}
			brw.Write(wsFrame(op, payload, false))
			brw.Flush()
		}
	}))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// wsFrame builds a final RFC 6455 frame; clients must mask theirs.
func wsFrame(op byte, payload []byte, mask bool) []byte {
	f := []byte{0x80 | op}
	mbit := byte(0)
	if mask {
		mbit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		f = append(f, mbit|byte(n))
	case n < 1<<16:
		f = append(f, mbit|126, byte(n>>8), byte(n))
	default:
		f = append(f, mbit|127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	if !mask {
		return append(f, payload...)
	}
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	f = append(f, key[:]...)
	for i, b := range payload {
		f = append(f, b^key[i%4])
	}
	return f
}

func wsReadFrame(r *bufio.Reader) (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return
	}
	op = h[0] & 0x0f
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err = io.ReadFull(r, b[:]); err != nil {
			return
		}
		n = int(b[0])<<8 | int(b[1])
	case 127:
		var b [8]byte
		if _, err = io.ReadFull(r, b[:]); err != nil {
			return
		}
		n = int(b[4])<<24 | int(b[5])<<16 | int(b[6])<<8 | int(b[7])
	}
	var key [4]byte
	if h[1]&0x80 != 0 {
		if _, err = io.ReadFull(r, key[:]); err != nil {
			return
		}
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(r, payload); err != nil {
		return
	}
	if h[1]&0x80 != 0 {
		for i := range payload {
			payload[i] ^= key[i%4]
		}
	}
	return
}

// TestWebSocketThroughHTTPListener: an Upgrade request becomes a tunnel after
// the backend's 101; frames of any size flow both ways, and a frame sent
// right behind the Upgrade request is held until the backend accepted.
func TestWebSocketThroughHTTPListener(t *testing.T) {
	be := wsBackend(t)
	p := startProxy(t, []balancer.RouteSpec{{Name: "ws.test", Backends: []string{"http://" + be}}}, "", nil)
	c, err := net.Dial("tcp", p.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	key := "dGhlIHNhbXBsZSBub25jZQ=="
	early := wsFrame(1, []byte("sent with the upgrade"), true)
	io.WriteString(c, "GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: "+key+"\r\nSec-WebSocket-Version: 13\r\n\r\n"+string(early))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != wsAccept(key) {
		t.Fatalf("upgrade answer: %d %v", resp.StatusCode, resp.Header)
	}
	msgs := []string{"sent with the upgrade", "hello", strings.Repeat("big frame ", 30000), "GET /x HTTP/1.1\r\nHost: other.test\r\n\r\n"}
	for i, m := range msgs {
		if i > 0 {
			c.Write(wsFrame(1, []byte(m), true))
		}
		op, got, err := wsReadFrame(br)
		if err != nil || op != 1 || string(got) != m {
			t.Fatalf("echo %d: op %d, %d bytes (%v), want %d bytes", i, op, len(got), err, len(m))
		}
	}
}

// TestUpgradeRefusedClosesAfterAnswer: when the backend does not switch
// protocols, the answer is passed on and the connection closes (the bytes
// after an Upgrade request cannot be framed).
func TestUpgradeRefusedClosesAfterAnswer(t *testing.T) {
	var seen atomic.Int64
	be := echoHeaders(t, &seen)
	p := startProxy(t, []balancer.RouteSpec{{Name: "ws.test", Backends: []string{"http://" + be}}}, "", nil)
	got := string(rawExchange(t, p.httpAddr, []byte("GET /up HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"+
		"GET /smuggled HTTP/1.1\r\nHost: ws.test\r\n\r\n")))
	if !strings.HasPrefix(got, "HTTP/1.1 200 ") || !strings.Contains(got, "path=/up") || strings.Contains(got, "smuggled") {
		t.Fatalf("got %q", got)
	}
	if seen.Load() != 1 {
		t.Fatalf("backend saw %d requests, want 1", seen.Load())
	}
}

// TestForwardingHeadersBehindAcceptProxy: behind a trusted L4 balancer that
// sends PROXY headers, the announced client is who X-Forwarded-For names,
// and that client's own forwarding headers are not trusted.
func TestForwardingHeadersBehindAcceptProxy(t *testing.T) {
	be := echoHeaders(t, nil)
	p := startProxy(t, []balancer.RouteSpec{{Name: "fw.test", Backends: []string{"http://" + be}}}, "", func(o *Options) {
		o.Listeners[0].AcceptProxy = true
		o.Listeners[0].TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	hdr := "PROXY TCP4 203.0.113.7 198.51.100.1 5555 8081\r\n"
	got := string(rawExchange(t, p.httpAddr, []byte(hdr+"GET /pp HTTP/1.1\r\nHost: fw.test\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n")))
	want := "path=/pp\nxff=203.0.113.7\nxfp=http\nxfport=8081\nforwarded=for=203.0.113.7;host=\"fw.test\";proto=http\n"
	if !strings.Contains(got, want) {
		t.Fatalf("backend saw %q, want %q", got, want)
	}
}

// TestValidThenMalformedOneRead: a valid request followed in the same read by
// a malformed one behaves as when the two come in separate reads: the valid
// one is forwarded and answered, then the 400 comes and the connection closes.
func TestValidThenMalformedOneRead(t *testing.T) {
	var seen atomic.Int64
	be := echoHeaders(t, &seen)
	p := startProxy(t, []balancer.RouteSpec{{Name: "mf.test", Backends: []string{"http://" + be}}}, "", nil)
	for _, tt := range []struct{ name, bad, reason string }{
		{"bad header line", "GET /bad HTTP/1.1\r\nHost: mf.test\r\nBad Header\r\n\r\n", "malformed request"},
		{"not HTTP", "\x16\x03\x01\x00\x05hello", "not the listener's protocol"},
		{"userinfo in the target", "GET http://u@mf.test/ HTTP/1.1\r\nHost: mf.test\r\n\r\n", "malformed request"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			seen.Store(0)
			got := string(rawExchange(t, p.httpAddr, []byte("GET /ok HTTP/1.2\r\nHost: mf.test\r\n\r\n"+tt.bad)))
			ok, rest, _ := strings.Cut(got, "body=0\n")
			if !strings.HasPrefix(ok, "HTTP/1.1 200 ") || !strings.Contains(ok, "path=/ok") ||
				!strings.HasPrefix(rest, "HTTP/1.1 400 ") || !strings.Contains(rest, tt.reason) || seen.Load() != 1 {
				t.Fatalf("got %q (backend saw %d), want 200 for /ok, then 400 %s", got, seen.Load(), tt.reason)
			}
		})
	}
}

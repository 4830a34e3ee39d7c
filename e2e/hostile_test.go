package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Timeouts of the suite's portier (see hostileConfig); the expectations below
// are derived from them.
const (
	hsTimeout      = time.Second
	idleTimeout    = 3 * time.Second
	maxHeaderBytes = 8192
	// A timeout fires on a 100 ms tick against a clock refreshed on that
	// tick: a close may come up to a tick early. Clients time from before
	// their dial, so a slow dial can only make the close look later.
	timeoutEarly = 200 * time.Millisecond
	// Generous upper slack for a timeout on 2 loaded cores: the checks are
	// about "closed at the timeout, not never", not about speed.
	timeoutLate = 5 * time.Second
)

type hostileScale struct {
	loris     int // slowloris connections, half HTTP, half TLS
	rawRepeat int // runs of each malformed-input case
	stalls    int // pauses of the stalled reader
}

var (
	hostileShort = hostileScale{loris: 200, rawRepeat: 1, stalls: 1}
	hostileFull  = hostileScale{loris: 1000, rawRepeat: 5, stalls: 4}
)

func hostileConfig(be *hostileBackends) string {
	return fmt.Sprintf(`listeners:
  - {name: web, address: "127.0.0.1:0", protocol: http}
  - {name: secure, address: "127.0.0.2:0", protocol: tls} # config refuses two 127.0.0.1:0
routes:
  app.test:
    - http://%s
  big.test:
    - http://%s
  reset.test:
    - http://%s
  silent.test:
    - http://%s
  smuggle.test:
    - http://%s
  secure.test:
    - tls://%s
timeouts: {handshake: 1s, connect: 1s, idle: 3s}
limits: {max_header_bytes: %d}
loops: 2
`, be.http, be.big, be.reset, be.silent, be.smuggle, be.tls, maxHeaderBytes)
}

// TestHostile runs one portier against hostile and broken peers while a
// normal client keeps using it, then checks that it is alive, answered every
// normal request and is back to the descriptors and memory it started with.
// PORTIER_HOSTILE=full runs the larger form.
func TestHostile(t *testing.T) {
	scale := hostileShort
	if os.Getenv("PORTIER_HOSTILE") == "full" {
		scale = hostileFull
	}
	raiseNofile(t, scale.loris+1024)
	be := startHostileBackends(t)
	p := startPortier(t, hostileConfig(be))
	pid := p.cmd.Process.Pid
	web, sec := p.addr("web"), p.addr("secure")

	// Warm up so lazily made descriptors and buffers are part of the baseline.
	nc := newNormalClient(web, sec, be.roots)
	for range 3 {
		if err := nc.round(); err != nil {
			t.Fatalf("warm-up request: %v\n%s", err, p.logText())
		}
	}
	time.Sleep(300 * time.Millisecond)
	baseFDs, baseRSS := fdCount(t, pid), p.rssKiB(t)
	peakRSS := baseRSS
	nc.start()
	defer nc.finish()

	phase := func(t *testing.T) {
		nc.phase.Store(t.Name())
		t.Cleanup(func() { peakRSS = max(peakRSS, p.rssKiB(t)) })
	}
	t.Run("slowloris", func(t *testing.T) { phase(t); testSlowloris(t, nc, web, sec, scale.loris) })
	t.Run("malformed", func(t *testing.T) { phase(t); testMalformed(t, web, sec, scale.rawRepeat) })
	t.Run("realclients", func(t *testing.T) { phase(t); testRealClients(t, web, sec) })
	t.Run("framing", func(t *testing.T) { phase(t); testFraming(t, web, be) })
	t.Run("resets", func(t *testing.T) { phase(t); testResets(t, web, be) })
	t.Run("emfile", func(t *testing.T) { phase(t); testEMFILE(t, be) })
	t.Run("stalledreader", func(t *testing.T) {
		phase(t)
		peakRSS = max(peakRSS, testStalledReader(t, p, web, be, scale.stalls))
	})

	nc.phase.Store("end")
	failures := nc.finish()
	t.Logf("normal requests answered: %d HTTP, %d TLS; failed: %d",
		nc.okHTTP.Load(), nc.okTLS.Load(), len(failures))
	for i, f := range failures {
		if i == 10 {
			t.Errorf("... and %d more", len(failures)-10)
			break
		}
		t.Errorf("normal request failed: %s", f)
	}

	// Lingering rejections end within 2 s, idle pairs within the idle timeout;
	// the slack allows for one pair still closing at the deadline.
	const fdSlack = 2
	fds := fdCount(t, pid)
	for end := time.Now().Add(10 * time.Second); fds > baseFDs && time.Now().Before(end); fds = fdCount(t, pid) {
		time.Sleep(200 * time.Millisecond)
	}
	endRSS := p.rssKiB(t)
	t.Logf("portier descriptors: baseline %d, after the suite %d", baseFDs, fds)
	t.Logf("portier RSS: baseline %.1f MiB, peak seen %.1f MiB, after the suite %.1f MiB",
		float64(baseRSS)/1024, float64(peakRSS)/1024, float64(endRSS)/1024)
	if fds > baseFDs+fdSlack {
		t.Errorf("portier holds %d descriptors after the suite, baseline %d", fds, baseFDs)
	}
	// Pools keep some buffers and the Go heap returns memory lazily: "near"
	// means within the flow-control bound, not byte-exact.
	if endRSS > baseRSS+16<<10 {
		t.Errorf("portier RSS %d KiB after the suite, baseline %d KiB", endRSS, baseRSS)
	}
	if !p.alive() {
		t.Fatalf("portier exited during the suite\n%s", tail(p.logText(), 4000))
	}
	if log := p.logText(); strings.Contains(log, "panic") || strings.Contains(log, "fatal error") {
		t.Errorf("portier log mentions a panic:\n%s", tail(log, 4000))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// dribble writes payload one byte per period and returns what portier
// answered and when it closed, counted from before the dial.
func dribble(addr string, payload []byte, period, wait time.Duration) answer {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return answer{err: err}
	}
	defer c.Close()
	done := make(chan answer, 1)
	go func() { done <- readAnswer(c, start, wait) }()
	tick := time.NewTicker(period)
	defer tick.Stop()
	for i := 0; i < len(payload); i++ {
		if _, err := c.Write(payload[i : i+1]); err != nil {
			break // closed by portier: the reader reports how
		}
		select {
		case a := <-done:
			return a
		case <-tick.C:
		}
	}
	return <-done
}

func testSlowloris(t *testing.T, nc *normalClient, web, sec string, n int) {
	// Both payloads take far longer than the handshake timeout at 5 bytes/s.
	httpHead := []byte("GET /slow HTTP/1.1\r\nHost: app.test\r\nX-Slow: " + strings.Repeat("a", 100))
	hello := clientHello(sniExt([]byte("secure.test"), 0), supportedGroups)
	cases := []struct {
		name    string
		addr    string
		payload []byte
		want    expect
	}{
		{"http", web, httpHead, expect{status: 408, minTook: hsTimeout - timeoutEarly}},
		{"tls", sec, hello, expect{minTook: hsTimeout - timeoutEarly}},
	}
	h0, s0 := nc.okHTTP.Load(), nc.okTLS.Load()
	results := make([][]answer, len(cases))
	var wg sync.WaitGroup
	for ci, tc := range cases {
		results[ci] = make([]answer, n/len(cases))
		for i := range results[ci] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Spread the connects over one dribble period.
				time.Sleep(time.Duration(i) * 200 * time.Millisecond / time.Duration(len(results[ci])))
				results[ci][i] = dribble(tc.addr, tc.payload, 200*time.Millisecond, hsTimeout+timeoutLate)
			}()
		}
	}
	wg.Wait()
	h1, s1 := nc.okHTTP.Load(), nc.okTLS.Load()
	for ci, tc := range cases {
		bad := 0
		var slowest, fastest time.Duration
		for i, a := range results[ci] {
			if i == 0 || a.took < fastest {
				fastest = a.took
			}
			slowest = max(slowest, a.took)
			if err := tc.want.check(a); err != nil {
				if bad < 5 {
					t.Errorf("%s slowloris conn %d: %v", tc.name, i, err)
				}
				bad++
			}
		}
		t.Logf("%s slowloris: %d connections, %d closed as expected, closed after %.2f..%.2f s",
			tc.name, len(results[ci]), len(results[ci])-bad, fastest.Seconds(), slowest.Seconds())
	}
	t.Logf("normal requests answered meanwhile: %d HTTP, %d TLS", h1-h0, s1-s0)
	if h1 == h0 || s1 == s0 {
		t.Errorf("normal clients got no answer while the slowloris connections were open (HTTP +%d, TLS +%d)", h1-h0, s1-s0)
	}
}

// expect is the documented answer to a hostile input (README "What clients
// see when something is wrong").
type expect struct {
	status  int           // an HTTP status line
	alert   byte          // a fatal TLS alert record
	body    string        // text the HTTP answer contains
	lenient bool          // undocumented: any 4xx, alert or plain close will do
	minTook time.Duration // a timeout: not closed before this
}

func (w expect) check(a answer) error {
	if a.err != nil || !a.closed {
		return fmt.Errorf("not closed within the wait: %v (got %q)", a.err, a.data)
	}
	if a.took < w.minTook {
		return fmt.Errorf("closed after %v, before the timeout (%v), with %q", a.took, w.minTook, a.data)
	}
	isAlert := len(a.data) == 7 && bytes.Equal(a.data[:6], []byte{21, 3, 3, 0, 2, 2})
	switch {
	case w.lenient:
		if len(a.data) != 0 && !isAlert && !bytes.HasPrefix(a.data, []byte("HTTP/1.1 4")) {
			return fmt.Errorf("unclear answer %q", a.data)
		}
	case w.status != 0:
		if !bytes.HasPrefix(a.data, fmt.Appendf(nil, "HTTP/1.1 %d ", w.status)) {
			return fmt.Errorf("want status %d, got %q", w.status, a.data)
		}
		if !bytes.Contains(a.data, []byte(w.body)) {
			return fmt.Errorf("answer lacks %q: %q", w.body, a.data)
		}
	case w.alert != 0:
		if !isAlert || a.data[6] != w.alert {
			return fmt.Errorf("want fatal alert %d, got %q", w.alert, a.data)
		}
	default:
		if len(a.data) != 0 {
			return fmt.Errorf("want a plain close, got %q", a.data)
		}
	}
	return nil
}

func testMalformed(t *testing.T, web, sec string, repeat int) {
	const (
		decodeError      = 50
		illegalParameter = 47
		unrecognizedName = 112
	)
	endless := []byte("GET / HTTP/1.1\r\nHost: app.test\r\n")
	for len(endless) < 8*maxHeaderBytes {
		endless = append(endless, "X-Pad: "+strings.Repeat("p", 57)+"\r\n"...)
	}
	hello := clientHello(sniExt([]byte("secure.test"), 0), supportedGroups)
	hsLen := len(hello) - 9
	// A record of 2^14 bytes whose handshake header promises 60000: the
	// ClientHello would go on past max_header_bytes.
	endlessHello := append([]byte{22, 3, 1, 0x40, 0x00, 1, 0, 0xea, 0x60}, bytes.Repeat([]byte{0x5a}, 1<<14-4)...)
	// SSLv2 CLIENT-HELLO: 2-byte header with the high bit set, msg_type 1,
	// version 3.1, cipher specs, empty session id, 16-byte challenge.
	sslv2 := append([]byte{0x80, 0x1f, 1, 3, 1, 0, 6, 0, 0, 0, 16, 0, 0, 0x2f, 0, 0, 0x35}, bytes.Repeat([]byte{7}, 16)...)

	cases := []struct {
		name      string
		addr      string
		send      []byte
		halfClose bool
		want      expect
	}{
		{"http/endless headers", web, endless, false, expect{status: 431}},
		{"http/NUL in header value", web, []byte("GET / HTTP/1.1\r\nHost: app.test\r\nX-A: a\x00b\r\n\r\n"), false, expect{status: 400}},
		{"http/NUL in header name", web, []byte("GET / HTTP/1.1\r\nHost: app.test\r\nX-\x00A: b\r\n\r\n"), false, expect{status: 400}},
		{"http/NUL in target", web, []byte("GET /a\x00b HTTP/1.1\r\nHost: app.test\r\n\r\n"), false, expect{status: 400}},
		{"http/bare LF line ends", web, []byte("GET / HTTP/1.1\nHost: app.test\n\n"), false, expect{status: 400}},
		{"http/bare LF after Host", web, []byte("GET / HTTP/1.1\r\nHost: app.test\nX-A: b\r\n\r\n"), false, expect{status: 400}},
		{"http/obsolete line folding", web, []byte("GET / HTTP/1.1\r\nHost: app.test\r\nX-A: b\r\n c\r\n\r\n"), false, expect{status: 400}},
		{"http/two Host headers", web, []byte("GET / HTTP/1.1\r\nHost: app.test\r\nHost: big.test\r\n\r\n"), false, expect{status: 400}},
		{"http/non-ASCII Host", web, []byte("GET / HTTP/1.1\r\nHost: b\xc3\xbccher.test\r\n\r\n"), false, expect{status: 400}},
		{"http/no Host", web, []byte("GET / HTTP/1.1\r\n\r\n"), false, expect{status: 400}},
		{"http/unknown Host", web, []byte("GET / HTTP/1.1\r\nHost: nope.test\r\n\r\n"), false, expect{status: 404}},
		{"http/300-byte Host", web, []byte("GET / HTTP/1.1\r\nHost: " + strings.Repeat("h", 300) + "\r\n\r\n"), false, expect{status: 404}},
		{"http/CONNECT", web, []byte("CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n\r\n"), false, expect{status: 400}},
		{"http/TLS ClientHello", web, hello, false, expect{lenient: true}},
		{"http/HTTP2 preface", web, []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), false, expect{lenient: true}},
		{"http/truncated head, half-closed", web, []byte("GET / HTTP/1.1\r\nHost: app"), true, expect{lenient: true}},
		{"http/connect and close", web, nil, true, expect{lenient: true}},
		{"http/partial head, client waits", web, []byte("GET / HTTP/1.1\r\nHost: app.test\r\n"), false, expect{status: 408, minTook: hsTimeout - timeoutEarly}},

		{"tls/plain HTTP", sec, []byte("GET / HTTP/1.1\r\nHost: secure.test\r\n\r\n"), false, expect{status: 400, body: "plain HTTP request sent to a TLS port"}},
		{"tls/SSLv2 hello", sec, sslv2, false, expect{alert: unrecognizedName}}, // SSLv2-format: no SNI, no default route
		{"tls/garbage", sec, []byte("\x01\x02\x03 not a protocol\r\n"), false, expect{}},
		{"tls/alert record first", sec, []byte{21, 3, 3, 0, 2, 2, 40}, false, expect{}},
		{"tls/record length over 2^14", sec, withU16(hello, helloRecLenOff, 1<<14+1), false, expect{alert: decodeError}},
		{"tls/handshake length over 64 KiB", sec, withU24(hello, helloHsLenOff, 1<<16+1), false, expect{alert: illegalParameter}}, // over max_header_bytes
		{"tls/handshake length short of record", sec, withU24(hello, helloHsLenOff, hsLen-10), false, expect{alert: decodeError}},
		{"tls/extensions length lies", sec, withU16(hello, helloExtLenOff, uint16(len(hello)-helloExtLenOff-2+3)), false, expect{alert: decodeError}},
		{"tls/SNI list length lies", sec, clientHello(sniExt([]byte("secure.test"), 5)), false, expect{alert: decodeError}},
		{"tls/ServerHello instead", sec, append(hello[:5:5], append([]byte{2}, hello[6:]...)...), false, expect{alert: decodeError}},
		{"tls/endless ClientHello", sec, endlessHello, false, expect{alert: illegalParameter}},
		{"tls/truncated record, half-closed", sec, hello[:len(hello)-10], true, expect{}},
		{"tls/truncated record, client waits", sec, hello[:len(hello)-10], false, expect{minTook: hsTimeout - timeoutEarly}},
		{"tls/empty SNI", sec, clientHello(sniExt(nil, 0)), false, expect{alert: unrecognizedName}}, // as no SNI (OpenSSL accepts it)
		{"tls/IP-literal SNI", sec, clientHello(sniExt([]byte("127.0.0.1"), 0)), false, expect{alert: unrecognizedName}},
		{"tls/300-byte SNI", sec, clientHello(sniExt(bytes.Repeat([]byte("s"), 300), 0)), false, expect{alert: decodeError}},
		{"tls/non-ASCII SNI", sec, clientHello(sniExt([]byte("b\xc3\xbccher.test"), 0)), false, expect{alert: unrecognizedName}}, // OpenSSL accepts it; no such route
		{"tls/NUL in SNI", sec, clientHello(sniExt([]byte("secure.test\x00.evil"), 0)), false, expect{alert: decodeError}},
		{"tls/no SNI", sec, clientHello(supportedGroups), false, expect{alert: unrecognizedName}},
		{"tls/unknown SNI", sec, clientHello(sniExt([]byte("nope.test"), 0)), false, expect{alert: unrecognizedName}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for range repeat {
				if err := tc.want.check(rawExchange(tc.addr, tc.send, tc.halfClose, hsTimeout+timeoutLate)); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func testRealClients(t *testing.T, web, sec string) {
	_, webPort, _ := net.SplitHostPort(web)
	cmd := func(name string, args ...string) func(context.Context) (string, error) {
		return func(ctx context.Context) (string, error) {
			c := exec.CommandContext(ctx, name, args...)
			c.Stdin = strings.NewReader("") // s_client quits at EOF on stdin
			out, err := c.CombinedOutput()
			return string(out), err
		}
	}
	goTLS := func(serverName string) func(context.Context) (string, error) {
		return func(ctx context.Context) (string, error) {
			d := tls.Dialer{Config: &tls.Config{ServerName: serverName, InsecureSkipVerify: true}}
			c, err := d.DialContext(ctx, "tcp", sec)
			if err == nil {
				c.Close()
				return "", errors.New("handshake succeeded")
			}
			return err.Error(), err
		}
	}
	cases := []struct {
		name     string
		tool     string
		run      func(context.Context) (string, error)
		want     string // in the output
		wantExit int    // exit status; -1: any failure (Go clients)
	}{
		{"curl plain HTTP to the TLS port", "curl", cmd("curl", "-sS", "-i", "-H", "Host: secure.test", "http://"+sec+"/"),
			"plain HTTP request sent to a TLS port", 0},
		{"curl unknown Host", "curl", cmd("curl", "-sS", "-i", "-H", "Host: nope.test", "http://"+web+"/"), "HTTP/1.1 404", 0},
		// curl reports a failed TLS handshake as exit 35 whatever its TLS library.
		{"curl TLS to the HTTP port", "curl", cmd("curl", "-sS", "-k", "--resolve", "app.test:"+webPort+":127.0.0.1",
			"https://app.test:"+webPort+"/"), "", 35},
		{"openssl unknown SNI", "openssl", cmd("openssl", "s_client", "-connect", sec, "-servername", "nope.test"),
			"alert number 112", 1},
		{"Go TLS unknown name", "", goTLS("nope.test"), "unrecognized name", -1},
		// crypto/tls sends no SNI for an IP address.
		{"Go TLS IP-literal name", "", goTLS("127.0.0.1"), "unrecognized name", -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.tool != "" {
				if _, err := exec.LookPath(tc.tool); err != nil {
					t.Skipf("%s not installed (.ci/run installs it)", tc.tool)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			out, err := tc.run(ctx)
			code := 0
			var ee *exec.ExitError
			switch {
			case errors.As(err, &ee):
				code = ee.ExitCode()
			case err != nil:
				code = -1
			}
			if code != tc.wantExit || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d (want %d), output lacks %q or is it:\n%s", code, tc.wantExit, tc.want, out)
			}
		})
	}
}

// testFraming sends request-smuggling shapes. Each must be refused with 400
// and a close before anything reaches the backend: the recording backend
// answers 200 to whatever it is given.
func testFraming(t *testing.T, web string, be *hostileBackends) {
	cases := []struct {
		name   string
		send   string
		status int
		marker string // a request line the backend must (200) or must not (400) see
	}{
		{"valid chunked body is forwarded",
			"POST /frame-ok HTTP/1.1\r\nHost: smuggle.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			200, "/frame-ok"},
		{"Content-Length with Transfer-Encoding",
			"POST /cl-te HTTP/1.1\r\nHost: smuggle.test\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled-clte HTTP/1.1\r\nHost: smuggle.test\r\n\r\n",
			400, "/smuggled-clte"},
		{"Transfer-Encoding with Content-Length",
			"POST /te-cl HTTP/1.1\r\nHost: smuggle.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGET /smuggled-tecl HTTP/1.1\r\nHost: smuggle.test\r\n\r\n0\r\n\r\n",
			400, "/smuggled-tecl"},
		{"duplicate differing Content-Length",
			"POST /dup-cl HTTP/1.1\r\nHost: smuggle.test\r\nContent-Length: 0\r\nContent-Length: 48\r\n\r\nGET /smuggled-dupcl HTTP/1.1\r\nHost: smuggle.test\r\n\r\n",
			400, "/smuggled-dupcl"},
		{"invalid chunk size",
			"POST /bad-chunk HTTP/1.1\r\nHost: smuggle.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\nGET /smuggled-chunk HTTP/1.1\r\nHost: smuggle.test\r\n\r\n",
			400, "/smuggled-chunk"},
		{"obfuscated Transfer-Encoding",
			"POST /te-x HTTP/1.1\r\nHost: smuggle.test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\nGET /smuggled-tex HTTP/1.1\r\nHost: smuggle.test\r\n\r\n",
			400, "/smuggled-tex"},
		{"absurd Content-Length",
			"POST /huge-cl HTTP/1.1\r\nHost: smuggle.test\r\nContent-Length: 99999999999999999999\r\n\r\nGET /smuggled-hugecl HTTP/1.1\r\nHost: smuggle.test\r\n\r\n",
			400, "/smuggled-hugecl"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := rawExchange(web, []byte(tc.send), false, 5*time.Second)
			if err := (expect{status: tc.status}).check(a); err != nil {
				t.Error(err)
			}
			if seen := be.smuggleSeen.contains(tc.marker); seen != (tc.status == 200) {
				t.Errorf("backend saw %s: %v", tc.marker, seen)
			}
		})
	}
}

func testResets(t *testing.T, web string, be *hostileBackends) {
	dial := func(t *testing.T, head string) *net.TCPConn {
		c, err := net.DialTimeout("tcp", web, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
		return c.(*net.TCPConn)
	}
	// resetClose ends c with a RST instead of a FIN.
	resetClose := func(c *net.TCPConn) {
		_ = c.SetLinger(0)
		_ = c.Close()
	}
	awaitResult := func(t *testing.T, ch chan ioResult, what string, total int64) {
		select {
		case r := <-ch:
			if r.err == nil || r.n >= total {
				t.Errorf("%s ended with %d bytes, err %v: the client's reset did not reach it", what, r.n, r.err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s still running 10 s after the client reset", what)
		}
	}
	cases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"client resets mid-upload", func(t *testing.T) {
			const declared = 64 << 20
			c := dial(t, fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: %d\r\n\r\n", declared))
			if _, err := c.Write(make([]byte, 2<<20)); err != nil {
				t.Fatal(err)
			}
			resetClose(c)
			awaitResult(t, be.uploads, "backend upload handler", declared)
		}},
		{"client resets mid-download", func(t *testing.T) {
			ch := be.streamResult("/dl-reset")
			c := dial(t, "GET /dl-reset HTTP/1.1\r\nHost: big.test\r\n\r\n")
			if _, err := io.ReadFull(c, make([]byte, 1<<20)); err != nil {
				t.Fatal(err)
			}
			resetClose(c)
			awaitResult(t, ch, "backend stream", bigBody)
		}},
		{"backend resets mid-transfer", func(t *testing.T) {
			client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			req, _ := http.NewRequest("GET", "http://"+web+"/", nil)
			req.Host = "reset.test"
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil || n > resetPartial {
				t.Errorf("read %d bytes, err %v: want the transfer cut short", n, err)
			}
		}},
		{"backend never answers", func(t *testing.T) {
			if _, err := exec.LookPath("curl"); err != nil {
				t.Skip("curl not installed")
			}
			start := time.Now()
			out, err := exec.Command("curl", "-sS", "-m", "15", "-H", "Host: silent.test", "http://"+web+"/").CombinedOutput()
			took := time.Since(start)
			// curl exit 52: the server closed without a reply.
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 52 {
				t.Errorf("curl: %v, want exit 52 (empty reply): %s", err, out)
			}
			if took < idleTimeout-timeoutEarly || took > idleTimeout+timeoutLate {
				t.Errorf("closed after %v, want about the idle timeout %v", took, idleTimeout)
			}
			end := time.Now().Add(5 * time.Second)
			for be.silentOpen.Load() != 0 && time.Now().Before(end) {
				time.Sleep(50 * time.Millisecond)
			}
			if n := be.silentOpen.Load(); n != 0 {
				t.Errorf("silent backend still holds %d connections from portier", n)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, tc.run)
	}
}

// testEMFILE runs a second portier that may hold only 64 descriptors, fills
// them with idle clients, and checks it neither dies nor spins, and serves
// again once they leave.
func testEMFILE(t *testing.T, be *hostileBackends) {
	const limit = 64
	p := startPortier(t, fmt.Sprintf(`listeners:
  - {name: web, address: "127.0.0.1:0", protocol: http}
routes:
  app.test:
    - http://%s
timeouts: {handshake: 30s, connect: 1s, idle: 30s}
loops: 1
`, be.http))
	pid := p.cmd.Process.Pid
	addr := p.addr("web")
	limitNofile(t, pid, limit)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func() error {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		req.Host = "app.test"
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	if err := get(); err != nil {
		t.Fatalf("request before exhaustion: %v", err)
	}

	// Idle clients sit in the 30 s handshake phase; the rest wait in the backlog.
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range limit + 40 {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial idle client %d: %v", len(idle), err)
		}
		idle = append(idle, c)
	}
	fds := fdCount(t, pid)
	for end := time.Now().Add(5 * time.Second); fds < limit && time.Now().Before(end); fds = fdCount(t, pid) {
		time.Sleep(50 * time.Millisecond)
	}
	if fds < limit {
		t.Fatalf("portier holds %d descriptors, never reached its limit %d", fds, limit)
	}
	cpu0 := cpuTime(t, pid)
	time.Sleep(2 * time.Second)
	cpu := cpuTime(t, pid) - cpu0
	t.Logf("EMFILE: %d descriptors open (limit %d), CPU %.2f s over 2 s of exhaustion, accept paused logged: %v",
		fds, limit, cpu.Seconds(), strings.Contains(p.logText(), "accept paused"))
	if !p.alive() {
		t.Fatalf("portier died when out of descriptors\n%s", tail(p.logText(), 4000))
	}
	if cpu > 500*time.Millisecond {
		t.Errorf("portier used %v CPU in 2 s with no descriptors left: it spins", cpu)
	}

	for _, c := range idle {
		c.Close()
	}
	idle = nil
	var err error
	tries := 0
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		tries++
		if err = get(); err == nil {
			break
		}
	}
	if err != nil {
		t.Errorf("no request succeeded after the idle clients left: %v", err)
	} else {
		t.Logf("EMFILE: serving again after %d tries", tries)
	}
	if log := p.logText(); strings.Contains(log, "panic") || strings.Contains(log, "fatal error") {
		t.Errorf("second portier log mentions a panic:\n%s", tail(log, 4000))
	}
	if err := p.stop(t); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}

// testStalledReader downloads from the fast backend, stops reading a few
// times and returns portier's RSS peak, which flow control must bound. Each
// pause stays under the idle timeout, which would otherwise rightly end it.
func testStalledReader(t *testing.T, p *process, web string, be *hostileBackends, stalls int) int64 {
	const (
		pause   = 2 * time.Second
		between = 16 << 20 // read at full speed after each pause
	)
	ch := be.streamResult("/stall")
	c, err := net.DialTimeout("tcp", web, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Duration(stalls) * (pause + 30*time.Second)))
	io.WriteString(c, "GET /stall HTTP/1.1\r\nHost: big.test\r\n\r\n")
	if _, err := io.ReadFull(c, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	var peak int64
	for i := range stalls {
		for end := time.Now().Add(pause); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			peak = max(peak, p.rssKiB(t))
		}
		if n, err := io.CopyN(io.Discard, c, between); err != nil {
			t.Fatalf("reading on after stall %d: %d bytes, %v", i+1, n, err)
		}
		peak = max(peak, p.rssKiB(t))
	}
	c.Close()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Errorf("backend still streaming 10 s after the client left")
	}
	t.Logf("stalled reader: portier RSS peaked at %.1f MiB over %d stalls of %v", float64(peak)/1024, stalls, pause)
	if peak > rssLimitKiB {
		t.Errorf("RSS %d KiB exceeds %d KiB", peak, rssLimitKiB)
	}
	return peak
}

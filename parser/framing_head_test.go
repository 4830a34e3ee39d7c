package parser

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Request heads as the router sees them: the Host chosen, what is refused as
// another protocol, and the same decisions as net/http where both accept.

func readHTTP(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "http", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// frameFirstHead frames the first request head of data.
func frameFirstHead(data []byte, maxHead int) (*FramedHead, int, error) {
	var f RequestFramer
	step, n, err := f.Next(data, maxHead)
	if err == nil && step != StepHead {
		panic("first step is not a head")
	}
	return &f.Head, n, err
}

func TestFramerHeadSamples(t *testing.T) {
	for _, s := range []struct {
		file, method, target, host string
		hostNil                    bool
		minor                      int
		err                        error
	}{
		{file: "curl-get.http", method: "GET", target: "/index.html?q=1", minor: 1}, // host: the capture's port
		{file: "chrome-get.http", method: "GET", target: "/dashboard/projects?sort=updated&page=2", host: "app1.test", minor: 1},
		{file: "firefox-get.http", method: "GET", target: "/", host: "app2.test:8080", minor: 1},
		{file: "http10-nohost.http", method: "GET", target: "/status", hostNil: true},
		{file: "absolute-form.http", err: frameErrAbsHost}, // userinfo in the target
	} {
		t.Run(s.file, func(t *testing.T) {
			data := readHTTP(t, s.file)
			want := s.host
			if s.file == "curl-get.http" {
				i := bytes.Index(data, []byte("Host: "))
				want = string(data[i+6 : i+6+bytes.IndexByte(data[i+6:], '\r')])
				if !strings.HasPrefix(want, "app1.test:") {
					t.Fatalf("unexpected curl Host %q", want)
				}
			}
			h, n, err := frameFirstHead(data, 0)
			if err != s.err {
				t.Fatalf("err %v, want %v", err, s.err)
			}
			if err != nil {
				return
			}
			if n != len(data) || string(h.Method) != s.method || string(h.Target) != s.target || h.Minor != s.minor ||
				string(h.Host) != want || (h.Host == nil) != s.hostNil {
				t.Fatalf("%d bytes: %q %q 1.%d host %q (nil %v)", n, h.Method, h.Target, h.Minor, h.Host, h.Host == nil)
			}
			// A pipelined request after the head is not part of it, and every
			// prefix only needs more.
			if _, n2, err := frameFirstHead(append(append([]byte(nil), data...), "GET /next HTTP/1.1\r\n"...), 0); err != nil || n2 != n {
				t.Fatalf("with a pipelined request: %d, %v", n2, err)
			}
			for k := 0; k < len(data); k++ {
				if _, _, err := frameFirstHead(data[:k], 0); err != ErrNeedMore {
					t.Fatalf("prefix %d of %d: %v", k, len(data), err)
				}
			}
		})
	}
}

func TestFramerHeadHost(t *testing.T) {
	cases := []struct {
		name, in, host string
		hostNil        bool
		minor          int
	}{
		{"1.0 without Host", "HEAD /x HTTP/1.0\r\n\r\n", "", true, 0},
		{"1.0 with Host", "HEAD /x HTTP/1.0\r\nHost: a.test\r\n\r\n", "a.test", false, 0},
		{"leading empty lines", "\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", "a", false, 1},
		{"OWS trimmed", "GET / HTTP/1.1\r\nHost: \t a.test:81 \t\r\n\r\n", "a.test:81", false, 1},
		{"no space", "GET / HTTP/1.1\r\nHost:a.test\r\n\r\n", "a.test", false, 1},
		{"name case", "GET / HTTP/1.1\r\nhOsT: a.test\r\n\r\n", "a.test", false, 1},
		{"empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", "", false, 1},
		{"IPv6", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", "[::1]:8080", false, 1},
		{"similar names", "GET / HTTP/1.1\r\nHosts: x\r\nX-Host: y\r\nHost: a\r\n\r\n", "a", false, 1},
		{"absolute-form wins", "GET HTTPS://b.test/p HTTP/1.1\r\nHost: a\r\n\r\n", "b.test", false, 1},
		{"absolute-form without path", "GET http://b.test:8080 HTTP/1.1\r\nHost: a\r\n\r\n", "b.test:8080", false, 1},
		{"absolute-form with query '@'", "GET http://b.test?x=@ HTTP/1.1\r\nHost: b.test\r\n\r\n", "b.test", false, 1},
		{"absolute-form in 1.0", "GET http://b.test/ HTTP/1.0\r\n\r\n", "b.test", false, 0},
		{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "a", false, 1},
		{"extension method", "PROPFIND /d HTTP/1.1\r\nHost: a\r\n\r\n", "a", false, 1},
		{"32-byte method", strings.Repeat("M", 32) + " / HTTP/1.1\r\nHost: a\r\n\r\n", "a", false, 1},
		{"HTTP/1.2 is taken as 1.1", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", "a", false, 2},
		{"HTTP/1.9", "GET / HTTP/1.9\r\nHost: a\r\n\r\n", "a", false, 9},
		{"obs-text and tab in a value", "GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\tx\r\n\r\n", "a", false, 1},
		{"non-ASCII target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", "a", false, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			evs := frameCheckSplits(t, c.in, 0)
			if len(evs) != 1 || evs[0].step != StepHead || evs[0].err != nil {
				t.Fatalf("events %v", evs)
			}
			h := evs[0].head
			if h.Host != c.host || h.HostNil != c.hostNil || h.Minor != c.minor {
				t.Fatalf("host %q (nil %v) 1.%d, want %q (nil %v) 1.%d", h.Host, h.HostNil, h.Minor, c.host, c.hostNil, c.minor)
			}
		})
	}
}

// TestFramerNotHTTP: bytes that cannot start a request line are another
// protocol, decided by the first bytes that show it.
func TestFramerNotHTTP(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     error
	}{
		{"TLS record", "\x16\x03\x01\x02\x00\x01", ErrNotHTTP},
		{"TLS first byte decides", "\x16", ErrNotHTTP},
		{"NUL first", "\x00", ErrNotHTTP},
		{"binary in method", "GE\xff", ErrNotHTTP},
		{"space first", " GET / HTTP/1.1\r\n", ErrNotHTTP},
		{"tab after method", "GET\t/ HTTP/1.1\r\n", ErrNotHTTP},
		{"line without space", "HELLO\r\n", ErrNotHTTP},
		{"method too long", strings.Repeat("M", 33), ErrNotHTTP},
		{"method at the limit", strings.Repeat("M", 32), ErrNeedMore},
		{"SSH banner", "SSH-2.0-OpenSSH_9.6\r\n", ErrNotHTTP},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", ErrHTTP2Preface},
		{"HTTP/2 preface early", "PRI * HTTP/2", ErrHTTP2Preface},
		{"later request", frameGet + "\x16\x03\x01", ErrNotHTTP},
	} {
		t.Run(c.name, func(t *testing.T) {
			evs := frameCheckSplits(t, c.in, 0)
			if last := evs[len(evs)-1]; last.err != c.want {
				t.Fatalf("events %v, want %v", evs, c.want)
			}
			if c.want != ErrNeedMore && !errors.Is(c.want, ErrNotThisProtocol) {
				t.Fatal("not a protocol mismatch")
			}
		})
	}
}

// netHTTPRoute reads one request the way net/http's server does and returns
// the host it would serve it for, or ok=false where the server refuses it
// (http.ReadRequest plus the server's Host count checks, net/http/server.go;
// not its ValidHostHeader character check).
func netHTTPRoute(head string) (host string, ok bool) {
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head)))
	if err != nil {
		return "", false
	}
	// ReadRequest drops the Host lines the server checks: read them again.
	tp := textproto.NewReader(bufio.NewReader(strings.NewReader(head)))
	_, _ = tp.ReadLine()
	hdr, err := tp.ReadMIMEHeader()
	if err != nil {
		return "", false
	}
	if req.ProtoMajor != 1 {
		return "", false // 505
	}
	hosts, haveHost := hdr["Host"]
	if req.ProtoAtLeast(1, 1) && (!haveHost || len(hosts) == 0) || len(hosts) > 1 {
		return "", false
	}
	return req.Host, true
}

// TestFramerRoutesLikeNetHTTP: the host the framer routes a request by is
// the one net/http serves it for, and both refuse the same requests, except
// where the framer is deliberately stricter (listed with the reason).
func TestFramerRoutesLikeNetHTTP(t *testing.T) {
	for _, c := range []struct {
		name, in string
		stricter string // why the framer refuses what net/http accepts
	}{
		{name: "Host", in: "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"},
		{name: "Host with port", in: "GET / HTTP/1.1\r\nHost: a.test:8080\r\n\r\n"},
		{name: "Host OWS", in: "GET / HTTP/1.1\r\nHost: \ta.test \r\n\r\n"},
		{name: "Host upper case", in: "GET / HTTP/1.1\r\nHOST: A.Test\r\n\r\n"},
		{name: "IPv6 Host", in: "GET / HTTP/1.1\r\nHost: [::1]:81\r\n\r\n"},
		{name: "empty Host", in: "GET / HTTP/1.1\r\nHost:\r\n\r\n"},
		{name: "HTTP/1.0 without Host", in: "GET / HTTP/1.0\r\n\r\n"},
		{name: "HTTP/1.0 with Host", in: "GET / HTTP/1.0\r\nHost: a.test\r\n\r\n"},
		{name: "HTTP/1.2", in: "GET / HTTP/1.2\r\nHost: a.test\r\n\r\n"},
		{name: "HTTP/1.2 without Host", in: "GET / HTTP/1.2\r\n\r\n"},
		{name: "absolute-form over Host", in: "GET http://b.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n"},
		{name: "absolute-form https, port", in: "GET https://b.test:8443/x HTTP/1.1\r\nHost: a.test\r\n\r\n"},
		{name: "absolute-form, query with @", in: "GET http://b.test/?u=x@c.test HTTP/1.1\r\nHost: a\r\n\r\n"},
		{name: "absolute-form HTTP/1.0", in: "GET http://b.test/x HTTP/1.0\r\n\r\n"},
		{name: "two Hosts", in: "GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n"},
		{name: "no Host", in: "GET / HTTP/1.1\r\n\r\n"},
		{name: "OPTIONS *", in: "OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n"},
		{name: "userinfo", in: "GET http://u@b.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",
			stricter: "RFC 9110 4.2.4: userinfo in a target is an error"},
		{name: "userinfo with two @", in: "GET http://u@c.test@b.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",
			stricter: "RFC 9110 4.2.4: userinfo in a target is an error"},
		{name: "Host with userinfo", in: "GET / HTTP/1.1\r\nHost: u@a.test\r\n\r\n",
			stricter: "'@' is no host character; net/http's ReadRequest leaves it to ValidHostHeader"},
		{name: "Host with space", in: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
			stricter: "RFC 3986 host characters only"},
		{name: "Host with slash", in: "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
			stricter: "RFC 3986 host characters only"},
		{name: "percent-encoded absolute-form host", in: "GET http://caf%c3%a9.test/ HTTP/1.1\r\nHost: a\r\n\r\n",
			stricter: "net/http decodes it, a Host header is verbatim: refused rather than routed two ways"},
		{name: "ftp scheme", in: "GET ftp://b.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",
			stricter: "only http and https targets are routed"},
		{name: "relative target", in: "GET b.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n"},
		{name: "space before colon", in: "GET / HTTP/1.1\r\nHost : b.test\r\n\r\n"},
		{name: "obs-fold Host", in: "GET / HTTP/1.1\r\nHost: a.test\r\n b.test\r\n\r\n",
			stricter: "RFC 9112 5.2: obs-fold may be refused with 400 (net/http joins the lines)"},
		{name: "HTTP/2.0 version", in: "GET / HTTP/2.0\r\nHost: a.test\r\n\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, _, err := frameFirstHead([]byte(c.in), 0)
			want, ok := netHTTPRoute(c.in)
			switch {
			case err == nil && ok:
				if string(h.Host) != want {
					t.Fatalf("framer routes by %q, net/http serves %q", h.Host, want)
				}
			case err == nil:
				t.Fatalf("framer routes by %q what net/http refuses", h.Host)
			case ok && c.stricter == "":
				t.Fatalf("framer refuses (%v) what net/http serves for %q", err, want)
			case !ok && c.stricter != "":
				t.Fatalf("both refuse; drop the stricter note")
			}
		})
	}
}

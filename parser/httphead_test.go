package parser

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readHTTP(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "http", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

type wantHead struct {
	method, target string
	host           *string // nil: Host must be nil
	minor          int
}

func strPtr(s string) *string { return &s }

func checkHead(t *testing.T, r *RequestHead, w wantHead, headLen int) {
	t.Helper()
	if string(r.Method) != w.method || string(r.Target) != w.target || r.Minor != w.minor {
		t.Errorf("got %q %q HTTP/1.%d, want %q %q HTTP/1.%d", r.Method, r.Target, r.Minor, w.method, w.target, w.minor)
	}
	switch {
	case w.host == nil && r.Host != nil:
		t.Errorf("Host = %q, want nil", r.Host)
	case w.host != nil && (r.Host == nil || string(r.Host) != *w.host):
		t.Errorf("Host = %q (nil %v), want %q", r.Host, r.Host == nil, *w.host)
	}
	if r.HeadLen != headLen {
		t.Errorf("HeadLen = %d, want %d", r.HeadLen, headLen)
	}
}

var httpSamples = []struct {
	file string
	want wantHead
}{
	{"curl-get.http", wantHead{"GET", "/index.html?q=1", nil, 1}}, // host checked by prefix below
	{"chrome-get.http", wantHead{"GET", "/dashboard/projects?sort=updated&page=2", strPtr("app1.test"), 1}},
	{"firefox-get.http", wantHead{"GET", "/", strPtr("app2.test:8080"), 1}},
	{"http10-nohost.http", wantHead{"GET", "/status", nil, 0}},
	{"absolute-form.http", wantHead{"GET", "http://user@Example.com:8080/x?y=1", strPtr("Example.com:8080"), 1}},
}

func TestParseRequestHeadSamples(t *testing.T) {
	for _, s := range httpSamples {
		t.Run(s.file, func(t *testing.T) {
			data := readHTTP(t, s.file)
			want := s.want
			if s.file == "curl-get.http" {
				// The capture's Host carries the ephemeral port it ran on.
				i := bytes.Index(data, []byte("Host: "))
				want.host = strPtr(string(data[i+6 : i+6+bytes.IndexByte(data[i+6:], '\r')]))
				if !strings.HasPrefix(*want.host, "app1.test:") {
					t.Fatalf("unexpected curl Host %q", *want.host)
				}
			}
			var r RequestHead
			if err := ParseRequestHead(data, &r); err != nil {
				t.Fatal(err)
			}
			checkHead(t, &r, want, len(data))

			// A body or pipelined request after the head is not part of it.
			more := append(append([]byte(nil), data...), "GET /next HTTP/1.1\r\n"...)
			if err := ParseRequestHead(more, &r); err != nil {
				t.Fatal(err)
			}
			checkHead(t, &r, want, len(data))

			for k := 0; k < len(data); k++ {
				if err := ParseRequestHead(data[:k], &r); err != ErrNeedMore {
					t.Fatalf("prefix %d of %d: %v, want ErrNeedMore", k, len(data), err)
				}
			}
		})
	}
}

// TestRequestHeadMatchesNetHTTP cross-checks the samples with net/http's
// request reader.
func TestRequestHeadMatchesNetHTTP(t *testing.T) {
	for _, s := range httpSamples {
		data := readHTTP(t, s.file)
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			t.Fatalf("%s: net/http: %v", s.file, err)
		}
		var r RequestHead
		if err := ParseRequestHead(data, &r); err != nil {
			t.Fatal(err)
		}
		if string(r.Method) != req.Method || string(r.Target) != req.RequestURI || r.Minor != req.ProtoMinor {
			t.Errorf("%s: %q %q %d, net/http %q %q %d", s.file, r.Method, r.Target, r.Minor, req.Method, req.RequestURI, req.ProtoMinor)
		}
		// net/http strips userinfo from absolute-form hosts the same way.
		if string(r.Host) != req.Host {
			t.Errorf("%s: Host %q, net/http %q", s.file, r.Host, req.Host)
		}
	}
}

func TestParseRequestHeadValid(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want wantHead
	}{
		{"minimal 1.1 no host", "GET / HTTP/1.1\r\n\r\n", wantHead{"GET", "/", nil, 1}},
		{"1.0 with host", "HEAD /x HTTP/1.0\r\nHost: a.test\r\n\r\n", wantHead{"HEAD", "/x", strPtr("a.test"), 0}},
		{"leading empty lines", "\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", wantHead{"GET", "/", strPtr("a"), 1}},
		{"host OWS trimmed", "GET / HTTP/1.1\r\nHost: \t a.test:81 \t\r\n\r\n", wantHead{"GET", "/", strPtr("a.test:81"), 1}},
		{"host no space", "GET / HTTP/1.1\r\nHost:a.test\r\n\r\n", wantHead{"GET", "/", strPtr("a.test"), 1}},
		{"host name case", "GET / HTTP/1.1\r\nhOsT: a.test\r\n\r\n", wantHead{"GET", "/", strPtr("a.test"), 1}},
		{"empty host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", wantHead{"GET", "/", strPtr(""), 1}},
		{"ipv6 host", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", wantHead{"GET", "/", strPtr("[::1]:8080"), 1}},
		{"similar names", "GET / HTTP/1.1\r\nHosts: x\r\nX-Host: y\r\nHost: a\r\n\r\n", wantHead{"GET", "/", strPtr("a"), 1}},
		{"absolute https", "GET HTTPS://b.test/p HTTP/1.1\r\nHost: a\r\n\r\n", wantHead{"GET", "HTTPS://b.test/p", strPtr("b.test"), 1}},
		{"absolute no path", "GET http://b.test:8080 HTTP/1.1\r\n\r\n", wantHead{"GET", "http://b.test:8080", strPtr("b.test:8080"), 1}},
		{"absolute query", "GET http://b.test?x=@ HTTP/1.1\r\n\r\n", wantHead{"GET", "http://b.test?x=@", strPtr("b.test"), 1}},
		{"absolute userinfo", "GET http://u:p@q@b.test/ HTTP/1.1\r\n\r\n", wantHead{"GET", "http://u:p@q@b.test/", strPtr("b.test"), 1}},
		{"options asterisk", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", wantHead{"OPTIONS", "*", strPtr("a"), 1}},
		{"extension method", "PROPFIND /d HTTP/1.1\r\nHost: a\r\n\r\n", wantHead{"PROPFIND", "/d", strPtr("a"), 1}},
		{"32-byte method", strings.Repeat("M", 32) + " / HTTP/1.1\r\n\r\n", wantHead{strings.Repeat("M", 32), "/", nil, 1}},
		{"obs-text and tab in value", "GET / HTTP/1.1\r\nX: caf\xc3\xa9\tx\r\n\r\n", wantHead{"GET", "/", nil, 1}},
		{"non-ascii target", "GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n", wantHead{"GET", "/caf\xc3\xa9", nil, 1}},
		{"empty value", "GET / HTTP/1.1\r\nX:\r\n\r\n", wantHead{"GET", "/", nil, 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var r RequestHead
			if err := ParseRequestHead([]byte(c.in), &r); err != nil {
				t.Fatal(err)
			}
			checkHead(t, &r, c.want, len(c.in))
		})
	}
}

func TestParseRequestHeadErrors(t *testing.T) {
	const rl = "GET / HTTP/1.1\r\n"
	cases := []struct {
		name, in string
		want     error
	}{
		{"empty", "", ErrNeedMore},
		{"tls record", "\x16\x03\x01\x02\x00\x01", ErrNotHTTP},
		{"tls first byte decides", "\x16", ErrNotHTTP},
		{"NUL first", "\x00", ErrNotHTTP},
		{"binary in method", "GE\xff", ErrNotHTTP},
		{"space first", " GET / HTTP/1.1\r\n", ErrNotHTTP},
		{"tab after method", "GET\t/ HTTP/1.1\r\n", ErrNotHTTP},
		{"line without space", "HELLO\r\n", ErrNotHTTP},
		{"method too long", strings.Repeat("M", 33), ErrNotHTTP},
		{"method at limit", strings.Repeat("M", 32), ErrNeedMore},
		{"ssh banner", "SSH-2.0-OpenSSH_9.6\r\n", ErrNotHTTP},
		{"h2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", ErrHTTP2Preface},
		{"h2 preface early", "PRI * HTTP/2.0", ErrHTTP2Preface},
		{"pri other version", "PRI * HTTP/2.1\r\n", errVersion},
		{"http2 version", "GET / HTTP/2.0\r\n", errVersion},
		{"http/1.2", "GET / HTTP/1.2\r\n", errVersion},
		{"http/0.9 version", "GET / HTTP/0.9\r\n", errVersion},
		{"http/1.x", "GET / HTTP/1.x\r\n", errBadVersion},
		{"http/1,1", "GET / HTTP/1,1\r\n", errBadVersion},
		{"http/x", "GET / HTTP/x.1\r\n", errBadVersion},
		{"lower-case http", "GET / http/1.1\r\n", errBadVersion},
		{"https version", "GET / HTTPS/1.1\r\n", errBadVersion},
		{"version trailing", "GET / HTTP/1.10\r\n", errBadVersion},
		{"space in target", "GET /a b HTTP/1.1\r\n", errBadVersion},
		{"version bare LF", "GET / HTTP/1.1\n", errBareLF},
		{"version CR no LF", "GET / HTTP/1.1\rX", errCRNoLF},
		{"http/0.9 request", "GET /\r\n", errNoVersion},
		{"http/0.9 bare LF", "GET /\n", errNoVersion},
		{"connect", "CONNECT a.test:443 HTTP/1.1\r\n", errConnect},
		{"double space", "GET  / HTTP/1.1\r\n", errTargetEmpty},
		{"empty target CRLF", "GET \r\n", errTargetEmpty},
		{"ctl in target", "GET /\x01 HTTP/1.1\r\n", errTargetChar},
		{"tab in target", "GET /\t HTTP/1.1\r\n", errTargetChar},
		{"del in target", "GET /\x7f HTTP/1.1\r\n", errTargetChar},
		{"NUL in target", "GET /\x00 HTTP/1.1\r\n", errNUL},
		{"relative target", "GET index.html HTTP/1.1\r\n", errTarget},
		{"ftp target", "GET ftp://a.test/ HTTP/1.1\r\n", errTarget},
		{"short relative target", "GET h HTTP/1.1\r\n", errTarget},
		{"asterisk with GET", "GET * HTTP/1.1\r\n", errTarget},
		{"absolute empty host", "GET http:///x HTTP/1.1\r\n", errAbsHost},
		{"absolute userinfo only", "GET http://u@/x HTTP/1.1\r\n", errAbsHost},
		{"absolute bad host", "GET http://a\"b/ HTTP/1.1\r\n", errAbsHost},
		{"too many empty lines", strings.Repeat("\r\n", 5) + rl, errLeadingLines},
		{"leading bare LF", "\n" + rl, errBareLF},
		{"leading CR no LF", "\rG", errCRNoLF},
		{"space before colon", rl + "Host : a\r\n\r\n", errSpaceBeforeColon},
		{"tab before colon", rl + "Host\t: a\r\n\r\n", errSpaceBeforeColon},
		{"empty name", rl + ": a\r\n\r\n", errHeaderName},
		{"bad name char", rl + "Ho(st: a\r\n\r\n", errHeaderName},
		{"no colon", rl + "Host\r\n\r\n", errHeaderName},
		{"no colon bare LF", rl + "Host\n", errBareLF},
		{"NUL in name", rl + "Ho\x00st: a\r\n", errNUL},
		{"NUL in value", rl + "X: a\x00b\r\n\r\n", errNUL},
		{"ctl in value", rl + "X: a\x01b\r\n\r\n", errHeaderValue},
		{"del in value", rl + "X: a\x7fb\r\n\r\n", errHeaderValue},
		{"value bare LF", rl + "X: a\nY: b\r\n\r\n", errBareLF},
		{"value CR no LF", rl + "X: a\rY: b\r\n\r\n", errCRNoLF},
		{"obs-fold space", rl + "X: a\r\n b\r\n\r\n", errObsFold},
		{"obs-fold tab", rl + "X: a\r\n\tb\r\n\r\n", errObsFold},
		{"first header folded", rl + " X: a\r\n\r\n", errObsFold},
		{"two hosts", rl + "Host: a\r\nX: y\r\nhost: a\r\n\r\n", errDupHost},
		{"two hosts absolute", "GET http://a/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", errDupHost},
		{"host with space", rl + "Host: a b\r\n\r\n", errHostChar},
		{"host with slash", rl + "Host: a/b\r\n\r\n", errHostChar},
		{"host with userinfo", rl + "Host: u@a\r\n\r\n", errHostChar},
		{"host non-ascii", rl + "Host: b\xc3\xbccher\r\n\r\n", errHostChar},
		{"final bare LF", rl + "Host: a\r\n\n", errBareLF},
		{"final CR no LF", rl + "Host: a\r\n\rX", errCRNoLF},
		{"incomplete", rl + "Host: a\r\n", ErrNeedMore},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var r RequestHead
			err := ParseRequestHead([]byte(c.in), &r)
			if err != c.want {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if err != nil && (r.HeadLen != 0 || r.Host != nil || r.Method != nil) {
				t.Errorf("fields set on error: %+v", r)
			}
			for k := 0; k < len(c.in); k++ {
				if e := ParseRequestHead([]byte(c.in[:k]), &r); e != ErrNeedMore && e != c.want {
					t.Fatalf("prefix %d: err = %v, want ErrNeedMore or %v", k, e, c.want)
				}
			}
		})
	}
}

func TestParseRequestHeadAllocs(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
		want error
	}{
		{"chrome", readHTTP(t, "chrome-get.http"), nil},
		{"absolute", readHTTP(t, "absolute-form.http"), nil},
		{"need more", []byte("GET / HTTP/1.1\r\nHost: a"), ErrNeedMore},
		{"not http", []byte{0x16, 3, 1}, ErrNotHTTP},
		{"malformed", []byte("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), errSpaceBeforeColon},
	} {
		var r RequestHead
		allocs := testing.AllocsPerRun(100, func() {
			if err := ParseRequestHead(c.data, &r); err != c.want {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocs per run, want 0", c.name, allocs)
		}
	}
}

func FuzzParseRequestHead(f *testing.F) {
	for _, s := range httpSamples {
		f.Add(readHTTP(f, s.file))
	}
	f.Add([]byte("\r\nOPTIONS * HTTP/1.0\r\nHost: [::1]\r\n\r\n"))
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	f.Add([]byte{0x16, 3, 1, 0, 5})
	f.Fuzz(func(t *testing.T, data []byte) {
		var r RequestHead
		err := ParseRequestHead(data, &r)
		if err == nil {
			if r.HeadLen < len("A / HTTP/1.0\r\n\r\n") || r.HeadLen > len(data) {
				t.Fatalf("HeadLen %d, input %d", r.HeadLen, len(data))
			}
			head := data[:r.HeadLen]
			if !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
				t.Fatalf("head does not end in CRLF CRLF: %q", head)
			}
			for _, s := range [][]byte{r.Method, r.Target, r.Host} {
				if !liesWithin(s, head) {
					t.Fatalf("slice %q outside the head", s)
				}
			}
			if len(r.Method) == 0 || len(r.Target) == 0 || r.Minor < 0 || r.Minor > 1 {
				t.Fatalf("bad result %+v", r)
			}
			for _, c := range r.Method {
				if !tokenTable[c] {
					t.Fatalf("method %q", r.Method)
				}
			}
			if !validHost(r.Host) || bytes.IndexByte(head, 0) >= 0 {
				t.Fatalf("host %q or NUL accepted in %q", r.Host, head)
			}
			// CR and LF occur only as CRLF pairs.
			if bytes.Count(head, []byte("\r\n")) != bytes.Count(head, []byte("\n")) ||
				bytes.Count(head, []byte("\r\n")) != bytes.Count(head, []byte("\r")) {
				t.Fatalf("bare CR or LF accepted in %q", head)
			}
		} else if !errors.Is(err, ErrNeedMore) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNotThisProtocol) {
			t.Fatalf("unclassified error %v", err)
		}

		// Prefix consistency, as for ClientHellos: bytes are checked in
		// order, so a prefix yields ErrNeedMore or the identical verdict.
		want := r
		// All prefixes of short inputs, about 32 of long ones plus the
		// ones just short of the end and of the message.
		step := 1
		if len(data) > 128 {
			step = len(data)/32 + 1
		}
		var p RequestHead
		for k := 0; k < len(data); k = fuzzNextPrefix(k, step, len(data), want.HeadLen) {
			e := ParseRequestHead(data[:k], &p)
			switch {
			case err == nil && k >= want.HeadLen:
				if e != nil || p.HeadLen != want.HeadLen || string(p.Host) != string(want.Host) || (p.Host == nil) != (want.Host == nil) {
					t.Fatalf("prefix %d: %v %+v, full: %+v", k, e, p, want)
				}
			case err == nil:
				if e != ErrNeedMore {
					t.Fatalf("prefix %d of a %d-byte head: %v", k, want.HeadLen, e)
				}
			case e != ErrNeedMore && e != err:
				t.Fatalf("prefix %d: %v, full input: %v", k, e, err)
			}
		}
	})
}

func BenchmarkParseRequestHead(b *testing.B) {
	data := readHTTP(b, "chrome-get.http")
	var r RequestHead
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := ParseRequestHead(data, &r); err != nil {
			b.Fatal(err)
		}
	}
}

package balancer

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseBackend(t *testing.T) {
	good := []struct {
		raw  string
		want BackendSpec
	}{
		{"http://127.0.0.1:9001", BackendSpec{Scheme: SchemeHTTP, Host: "127.0.0.1", Port: 9001, Weight: 1}},
		{"http://127.0.0.1", BackendSpec{Scheme: SchemeHTTP, Host: "127.0.0.1", Port: 80, Weight: 1}},
		{"tls://127.0.0.1", BackendSpec{Scheme: SchemeTLS, Host: "127.0.0.1", Port: 443, Weight: 1}},
		{"http://127.0.0.1:9001/", BackendSpec{Scheme: SchemeHTTP, Host: "127.0.0.1", Port: 9001, Weight: 1}},
		{"HTTP://127.0.0.1:1", BackendSpec{Scheme: SchemeHTTP, Host: "127.0.0.1", Port: 1, Weight: 1}},
		{"tls://[::1]:9443?weight=2&proxy=v2&drain=1", BackendSpec{Scheme: SchemeTLS, Host: "::1", Port: 9443, Weight: 2, Proxy: ProxyV2, Drain: true}},
		{"tls://[::1]", BackendSpec{Scheme: SchemeTLS, Host: "::1", Port: 443, Weight: 1}},
		{"tls://[2001:DB8::1]:65535", BackendSpec{Scheme: SchemeTLS, Host: "2001:db8::1", Port: 65535, Weight: 1}},
		{"http://[::ffff:127.0.0.1]:80", BackendSpec{Scheme: SchemeHTTP, Host: "::ffff:127.0.0.1", Port: 80, Weight: 1}},
		{"http://Backend.Internal:8080", BackendSpec{Scheme: SchemeHTTP, Host: "backend.internal", Port: 8080, Weight: 1}},
		{"http://backend.internal.:8080", BackendSpec{Scheme: SchemeHTTP, Host: "backend.internal.", Port: 8080, Weight: 1}},
		{"http://my_svc-1:8080?proxy=v1", BackendSpec{Scheme: SchemeHTTP, Host: "my_svc-1", Port: 8080, Weight: 1, Proxy: ProxyV1}},
		{"http://h?weight=1000&drain=0", BackendSpec{Scheme: SchemeHTTP, Host: "h", Port: 80, Weight: 1000}},
	}
	for _, tc := range good {
		got, err := ParseBackend(tc.raw)
		if err != nil {
			t.Errorf("ParseBackend(%q): %v", tc.raw, err)
			continue
		}
		tc.want.Raw = tc.raw
		if got != tc.want {
			t.Errorf("ParseBackend(%q) = %+v, want %+v", tc.raw, got, tc.want)
		}
	}

	bad := []struct{ raw, err string }{
		{"htp://x", `parse backend "htp://x": unknown scheme "htp" (want http, tls, quic, http+unix or tls+unix)`},
		{"127.0.0.1:9001", `missing scheme (want http://, tls://, quic://, http+unix:// or tls+unix://)`},
		{"https://x", `unknown scheme "https"`},
		{"http://", `missing host`},
		{"http://:80", `missing host`},
		{"http://x:", `empty port`},
		{"http://x:0", `port "0" out of range 1..65535`},
		{"http://x:65536", `port "65536" out of range 1..65535`},
		{"http://x:+80", `invalid port "+80"`},
		{"http://x:8a", `invalid port "8a"`},
		{"http://::1:80", `IPv6 address "::1:80" must be in brackets`},
		{"http://[::1", `missing ']'`},
		{"http://[::1]80", `unexpected "80" after IPv6 address`},
		{"http://[::1]:", `empty port`},
		{"http://[127.0.0.1]:80", `invalid IPv6 address "127.0.0.1"`},
		{"http://[fe80::1%25eth0]:80", `zoned IPv6 address`},
		{"http://exa mple:80", `invalid host "exa mple"`},
		{"http://-x:80", `invalid host "-x"`},
		{"http://a..b:80", `invalid host "a..b"`},
		{"http://" + strings.Repeat("a", 64) + ":80", `invalid host`},
		{"http://user@x:80", `user info not allowed`},
		{"http://x:80/path", `path "/path" not allowed`},
		{"http://x:80#frag", `fragment not allowed`},
		{"http://x?weight=0", `weight "0": want an integer 1..1000`},
		{"http://x?weight=1001", `weight "1001"`},
		{"http://x?weight=", `weight ""`},
		{"http://x?weight=abc", `weight "abc"`},
		{"http://x?proxy=v3", `proxy "v3": want v1 or v2`},
		{"http://x?drain=yes", `drain "yes": want 0 or 1`},
		{"http://x?foo=1", `unknown option "foo" (want weight, proxy, drain or source)`},
		{"http://x?weight=1&weight=2", `duplicate option "weight"`},
		{"http://x?weight=1&", `empty option`},
		{"http://x?", `empty option`},
	}
	for _, tc := range bad {
		_, err := ParseBackend(tc.raw)
		if err == nil {
			t.Errorf("ParseBackend(%q): no error, want %q", tc.raw, tc.err)
			continue
		}
		prefix := `parse backend "` + tc.raw + `": `
		if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseBackend(%q): error %q, want %q containing %q", tc.raw, err, prefix, tc.err)
		}
	}
}

func TestNormalizeRouteName(t *testing.T) {
	for in, want := range map[string]string{
		"app1.test":      "app1.test",
		"App1.TEST.":     "app1.test",
		"*.apps.test":    "*.apps.test",
		"*.Apps.Test.":   "*.apps.test",
		"localhost":      "localhost",
		"*.test":         "*.test",
		"127.0.0.1":      "127.0.0.1",
		"_acme.x-y.test": "_acme.x-y.test",
		"*":              "*", // catch-all
	} {
		got, err := NormalizeRouteName(in)
		if err != nil || got != want {
			t.Errorf("NormalizeRouteName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", ".", "*.", "a.*.test", "**.test", "*test", "a..test", "a b", "-a.test",
		"a-.test", "[::1]", "a:80", strings.Repeat("a.", 127) + "aa", "a.test.."} {
		if got, err := NormalizeRouteName(in); err == nil {
			t.Errorf("NormalizeRouteName(%q) = %q, want an error", in, got)
		}
	}
}

func TestNewBackendAddr(t *testing.T) {
	spec := BackendSpec{Scheme: SchemeHTTP, Port: 9001, Weight: 1}
	b4 := newBackend(spec, netip.MustParseAddr("::ffff:127.0.0.2"), nil)
	if !b4.Addr.Addr().Is4() || b4.Addr.String() != "127.0.0.2:9001" || b4.AddrText != "127.0.0.2:9001" {
		t.Errorf("IPv4: Addr %v, AddrText %q", b4.Addr, b4.AddrText)
	}
	b6 := newBackend(spec, netip.MustParseAddr("::1"), nil)
	if b6.Addr.String() != "[::1]:9001" || b6.AddrText != "[::1]:9001" {
		t.Errorf("IPv6: Addr %v, AddrText %q", b6.Addr, b6.AddrText)
	}
}

func TestSchemeString(t *testing.T) {
	if SchemeHTTP.String() != "http" || SchemeTLS.String() != "tls" || Scheme(9).String() != "scheme(9)" {
		t.Errorf("Scheme.String: %q %q %q", SchemeHTTP, SchemeTLS, Scheme(9))
	}
	if ProxyNone.String() != "none" || ProxyV1.String() != "v1" || ProxyV2.String() != "v2" {
		t.Errorf("ProxyProtocol.String: %q %q %q", ProxyNone, ProxyV1, ProxyV2)
	}
}

// TestValidHostnameMatchesSplit holds validHostname (one pass over the
// bytes) to the label-by-label reading it replaced, over every string of up
// to 6 bytes from an alphabet of the cases that matter, and over labels at
// the length limits.
func TestValidHostnameMatchesSplit(t *testing.T) {
	ref := func(s string, allowTrailingDot bool) bool {
		if allowTrailingDot && strings.HasSuffix(s, ".") {
			s = s[:len(s)-1]
		}
		if s == "" || len(s) > 253 {
			return false
		}
		for label := range strings.SplitSeq(s, ".") {
			if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
				return false
			}
			for i := 0; i < len(label); i++ {
				c := label[i]
				if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
					return false
				}
			}
		}
		return true
	}
	check := func(s string) {
		for _, dot := range []bool{false, true} {
			if got, want := validHostname(s, dot), ref(s, dot); got != want {
				t.Fatalf("validHostname(%q, %v) = %v, want %v", s, dot, got, want)
			}
		}
	}
	const alphabet = "aZ9-_.:"
	var walk func(prefix string)
	walk = func(prefix string) {
		check(prefix)
		if len(prefix) < 6 {
			for i := range len(alphabet) {
				walk(prefix + alphabet[i:i+1])
			}
		}
	}
	walk("")
	for _, n := range []int{62, 63, 64} {
		label := strings.Repeat("a", n)
		check(label)
		check(label + ".test")
		check("x." + label)
		check(label + ".")
	}
	for _, n := range []int{252, 253, 254} {
		check(strings.Repeat("a.", n/2) + strings.Repeat("b", n%2+1))
	}
}

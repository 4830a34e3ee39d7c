package proxyproto

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

// FuzzParse: Parse never panics, reports n within bounds, agrees with itself
// on the header alone and on every shorter prefix, re-encodes to an equivalent
// header, and its address parsers agree with net/netip.
func FuzzParse(f *testing.F) {
	for _, tt := range validHeaders() {
		f.Add(fixLen(tt.in))
	}
	f.Add(withCRC(AppendV2(nil, v4src, v4dst, []byte("example.com"), []byte("h2"))))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Covers the text address parsers with arbitrary strings too.
		if len(data) < 64 {
			checkAddrParsers(t, data)
		}
		var h Header
		n, err := Parse(data, &h)
		if err != nil {
			if n != 0 || !(err == ErrNeedMore || err == ErrNotProxy || errors.Is(err, ErrMalformed)) {
				t.Fatalf("Parse = %d, %v", n, err)
			}
			if err == ErrNeedMore && len(data) >= MaxV1Len+1 && data[0] == 'P' {
				t.Fatalf("v1 still needs more after %d bytes", len(data))
			}
			return
		}
		if n <= 0 || n > len(data) || (h.Version != 1 && h.Version != 2) {
			t.Fatalf("Parse = %d, %+v for %d bytes", n, h, len(data))
		}
		if h.Version == 1 && n > MaxV1Len {
			t.Fatalf("v1 header of %d bytes", n)
		}
		var h2 Header
		if n2, err := Parse(data[:n], &h2); n2 != n || err != nil || !headerEqual(h, h2) {
			t.Fatalf("header alone: %d, %v, %+v; whole: %d, %+v", n2, err, h2, n, h)
		}
		if n2, err := Parse(data[:n-1], &h2); n2 != 0 || err != ErrNeedMore {
			t.Fatalf("prefix of %d bytes: %d, %v", n-1, n2, err)
		}
		if h.Local {
			return
		}
		// Re-encoding gives the same addresses (v4-mapped pairs come back as IPv4).
		unmapPair := func(a, b netip.AddrPort) (netip.AddrPort, netip.AddrPort) {
			if family(a.Addr(), b.Addr()) == 4 {
				return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()), netip.AddrPortFrom(b.Addr().Unmap(), b.Port())
			}
			return a, b
		}
		ws, wd := unmapPair(h.Src, h.Dst)
		// AppendV2 leaves out values it would not accept back.
		if len(h.Authority) > MaxTLVValue {
			h.Authority = nil
		}
		if len(h.ALPN) > MaxTLVValue {
			h.ALPN = nil
		}
		for _, enc := range [][]byte{AppendV1(nil, h.Src, h.Dst), AppendV2(nil, h.Src, h.Dst, h.Authority, h.ALPN)} {
			var r Header
			if _, err := Parse(enc, &r); err != nil || r.Src != ws || r.Dst != wd {
				t.Fatalf("re-encoded %q: %v, %+v; want %v %v", enc, err, r, ws, wd)
			}
			if r.Version == 2 && (!bytes.Equal(r.Authority, h.Authority) || !bytes.Equal(r.ALPN, h.ALPN)) {
				t.Fatalf("re-encoded TLVs: %q %q; want %q %q", r.Authority, r.ALPN, h.Authority, h.ALPN)
			}
		}
	})
}

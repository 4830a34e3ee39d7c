package proxyproto

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"net/netip"
	"strings"
	"testing"
)

var (
	v4src = netip.MustParseAddrPort("192.168.0.1:56324")
	v4dst = netip.MustParseAddrPort("192.168.0.11:443")
	v6src = netip.MustParseAddrPort("[2001:db8::1]:65535")
	v6dst = netip.MustParseAddrPort("[2001:db8:0:1:2:3:4:5]:0")
)

func TestAppendV1(t *testing.T) {
	tests := []struct {
		name     string
		src, dst netip.AddrPort
		want     string
	}{
		// The example line of the spec, section 2.1.
		{"spec example", v4src, v4dst, "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"},
		{"ipv6", v6src, v6dst, "PROXY TCP6 2001:db8::1 2001:db8:0:1:2:3:4:5 65535 0\r\n"},
		{"v4-mapped is TCP4", netip.MustParseAddrPort("[::ffff:10.0.0.1]:1"), netip.MustParseAddrPort("[::ffff:10.0.0.2]:2"),
			"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n"},
		{"mixed is TCP6", netip.MustParseAddrPort("10.0.0.1:1"), v6dst, "PROXY TCP6 ::ffff:10.0.0.1 2001:db8:0:1:2:3:4:5 1 0\r\n"},
		{"zone dropped", netip.MustParseAddrPort("[fe80::1%eth0]:80"), netip.MustParseAddrPort("[fe80::2]:81"), "PROXY TCP6 fe80::1 fe80::2 80 81\r\n"},
		{"max length v4", netip.MustParseAddrPort("255.255.255.255:65535"), netip.MustParseAddrPort("255.255.255.255:65535"),
			"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"},
		{"invalid is UNKNOWN", netip.AddrPort{}, v4dst, "PROXY UNKNOWN\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendV1([]byte("x"), tt.src, tt.dst)
			if string(got) != "x"+tt.want {
				t.Fatalf("AppendV1 = %q, want %q", got, "x"+tt.want)
			}
		})
	}
}

func TestAppendV2Golden(t *testing.T) {
	// A header written by HAProxy (send-proxy-v2) for 172.19.0.1:42578 -> 172.19.0.3:80.
	want, _ := hex.DecodeString("0d0a0d0a000d0a515549540a" + "2111000c" + "ac130001ac130003" + "a6520050")
	got := AppendV2(nil, netip.MustParseAddrPort("172.19.0.1:42578"), netip.MustParseAddrPort("172.19.0.3:80"), nil, nil)
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendV2 = %x\nwant       %x", got, want)
	}
	got = AppendV2(nil, v6src, v6dst, []byte("example.com"), []byte("h2"))
	wantHex := "0d0a0d0a000d0a515549540a" + "2121" + "0037" + // 36 + 3+11 + 3+2 = 55
		"20010db8000000000000000000000001" + "20010db8000000010002000300040005" + "ffff" + "0000" +
		"02000b" + hex.EncodeToString([]byte("example.com")) + "010002" + hex.EncodeToString([]byte("h2"))
	if hex.EncodeToString(got) != wantHex {
		t.Fatalf("AppendV2 v6 = %x\nwant          %s", got, wantHex)
	}
	if got := AppendV2(nil, netip.AddrPort{}, v4dst, []byte("a"), nil); string(got) != v2Sig+"\x21\x00\x00\x00" {
		t.Fatalf("AppendV2 invalid = %x", got)
	}
	long := bytes.Repeat([]byte("a"), MaxTLVValue+1)
	if got, want := AppendV2(nil, v4src, v4dst, long, []byte("h2")), AppendV2(nil, v4src, v4dst, nil, []byte("h2")); !bytes.Equal(got, want) {
		t.Fatalf("over-long authority not left out: %x", got)
	}
}

// validHeaders are complete headers with the Header Parse must produce.
func validHeaders() []struct {
	name string
	in   []byte
	want Header
} {
	unknown107 := "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
	tcp6max := "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
	ffff := netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")
	return []struct {
		name string
		in   []byte
		want Header
	}{
		{"v1 spec example", []byte("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"), Header{Version: 1, Src: v4src, Dst: v4dst}},
		{"v1 unknown short", []byte("PROXY UNKNOWN\r\n"), Header{Version: 1, Local: true}},
		{"v1 unknown worst case 107", []byte(unknown107), Header{Version: 1, Local: true}},
		{"v1 tcp6 max 104", []byte(tcp6max), Header{Version: 1, Src: ffff, Dst: ffff}},
		{"v1 tcp6 compressed", []byte("PROXY TCP6 2001:db8::1 ::1 65535 0\r\n"), Header{Version: 1, Src: v6src, Dst: netip.MustParseAddrPort("[::1]:0")}},
		{"v1 tcp6 embedded v4", []byte("PROXY TCP6 ::ffff:1.2.3.4 1:2:3:4:5:6:7:8 1 2\r\n"),
			Header{Version: 1, Src: netip.MustParseAddrPort("[::ffff:1.2.3.4]:1"), Dst: netip.MustParseAddrPort("[1:2:3:4:5:6:7:8]:2")}},
		{"v1 tcp4 zeros", []byte("PROXY TCP4 0.0.0.0 0.10.100.255 0 10\r\n"),
			Header{Version: 1, Src: netip.MustParseAddrPort("0.0.0.0:0"), Dst: netip.MustParseAddrPort("0.10.100.255:10")}},
		{"v2 ipv4", AppendV2(nil, v4src, v4dst, nil, nil), Header{Version: 2, Src: v4src, Dst: v4dst}},
		{"v2 ipv6 tlvs", AppendV2(nil, v6src, v6dst, []byte("example.com"), []byte("h2")),
			Header{Version: 2, Src: v6src, Dst: v6dst, Authority: []byte("example.com"), ALPN: []byte("h2")}},
		{"v2 local empty", []byte(v2Sig + "\x20\x00\x00\x00"), Header{Version: 2, Local: true}},
		{"v2 local with ignored block", []byte(v2Sig + "\x20\x11\x00\x05" + "\xff\xff\xff\xff\xff"), Header{Version: 2, Local: true}},
		{"v2 proxy unspec ignores block", []byte(v2Sig + "\x21\x00\x00\x03" + "abc"), Header{Version: 2, Local: true}},
		{"v2 udp falls back to local", append([]byte(v2Sig+"\x21\x12\x00\x13"+"\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02"), "\x02\x00\x04host"...),
			Header{Version: 2, Local: true, Authority: []byte("host")}},
		{"v2 unix falls back to local", append([]byte(v2Sig+"\x21\x31\x00\xd8"), make([]byte, 216)...), Header{Version: 2, Local: true}},
		{"v2 noop and custom tlvs skipped", append(AppendV2(nil, v4src, v4dst, nil, nil)[:16:16], // header rewritten below
			"\xc0\xa8\x00\x01\xc0\xa8\x00\x0b\xdc\x04\x01\xbb"+"\x04\x00\x00"+"\xe0\x00\x02xy"+"\x01\x00\x00"...),
			Header{Version: 2, Src: v4src, Dst: v4dst, ALPN: []byte{}}},
	}
}

func fixLen(b []byte) []byte {
	if len(b) >= 16 && string(b[:12]) == v2Sig {
		binary.BigEndian.PutUint16(b[14:16], uint16(len(b)-16))
	}
	return b
}

func headerEqual(a, b Header) bool {
	return a.Version == b.Version && a.Local == b.Local && a.Src == b.Src && a.Dst == b.Dst &&
		bytes.Equal(a.Authority, b.Authority) && (a.Authority == nil) == (b.Authority == nil) &&
		bytes.Equal(a.ALPN, b.ALPN) && (a.ALPN == nil) == (b.ALPN == nil)
}

func TestParseValid(t *testing.T) {
	for _, tt := range validHeaders() {
		t.Run(tt.name, func(t *testing.T) {
			in := fixLen(tt.in)
			payload := []byte("GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n")
			var h Header
			n, err := Parse(append(append([]byte(nil), in...), payload...), &h)
			if err != nil || n != len(in) {
				t.Fatalf("Parse = %d, %v; want %d, nil", n, err, len(in))
			}
			if !headerEqual(h, tt.want) {
				t.Fatalf("Parse header = %+v, want %+v", h, tt.want)
			}
			// Truncated at every byte: a valid prefix wants more, and leaves h zeroed.
			for i := 0; i < len(in); i++ {
				h = Header{Version: 9}
				if n, err := Parse(in[:i], &h); n != 0 || err != ErrNeedMore || h.Version != 0 {
					t.Fatalf("Parse(in[:%d]) = %d, %v, %+v; want 0, ErrNeedMore", i, n, err, h)
				}
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	addrs := [][2]netip.AddrPort{
		{v4src, v4dst},
		{v6src, v6dst},
		{netip.MustParseAddrPort("[::]:1"), netip.MustParseAddrPort("[::1]:2")},
		{netip.MustParseAddrPort("[1::]:1"), netip.MustParseAddrPort("[0:0:1::1:0:0]:2")},
		{netip.MustParseAddrPort("[::ffff:1.2.3.4]:9"), netip.MustParseAddrPort("5.6.7.8:10")},
		{netip.MustParseAddrPort("1.2.3.4:9"), netip.MustParseAddrPort("[64:ff9b::5.6.7.8]:10")},
	}
	for _, a := range addrs {
		src, dst := a[0], a[1]
		// A v4-mapped address comes back unmapped when both sides are IPv4
		// (TCP4 / AF_INET); otherwise it is kept as IPv6.
		wantSrc, wantDst := src, dst
		if family(src.Addr(), dst.Addr()) == 4 {
			wantSrc = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
			wantDst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
		} else {
			wantSrc = netip.AddrPortFrom(netip.AddrFrom16(src.Addr().As16()), src.Port())
			wantDst = netip.AddrPortFrom(netip.AddrFrom16(dst.Addr().As16()), dst.Port())
		}
		for _, v := range []int{1, 2} {
			var b []byte
			if v == 1 {
				b = AppendV1(nil, src, dst)
			} else {
				b = AppendV2(nil, src, dst, []byte("a.example:8443"), []byte("http/1.1"))
			}
			var h Header
			n, err := Parse(b, &h)
			if err != nil || n != len(b) {
				t.Fatalf("v%d %v->%v: Parse = %d, %v (header %q)", v, src, dst, n, err, b)
			}
			if h.Version != v || h.Local || h.Src != wantSrc || h.Dst != wantDst {
				t.Fatalf("v%d %v->%v: got %+v", v, src, dst, h)
			}
			if v == 2 && (string(h.Authority) != "a.example:8443" || string(h.ALPN) != "http/1.1") {
				t.Fatalf("v2 TLVs: %q %q", h.Authority, h.ALPN)
			}
		}
	}
}

func TestParseNotProxy(t *testing.T) {
	for _, in := range []string{"GET / HTTP/1.1\r\n", "\x16\x03\x01\x02\x00", "PROXZ", "PROXYTCP4", "\r\n\r\n\x00\r\nQUIX", "\r\r", "p"} {
		var h Header
		if n, err := Parse([]byte(in), &h); n != 0 || err != ErrNotProxy {
			t.Errorf("Parse(%q) = %d, %v; want ErrNotProxy", in, n, err)
		}
	}
	var h Header
	if _, err := Parse(nil, &h); err != ErrNeedMore {
		t.Errorf("Parse(nil) = %v, want ErrNeedMore", err)
	}
}

func withCRC(b []byte) []byte {
	b = append(b, typeCRC32C, 0, 4, 0, 0, 0, 0)
	b = fixLen(b)
	binary.BigEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
	return b
}

func TestParseCRC32C(t *testing.T) {
	b := withCRC(AppendV2(nil, v4src, v4dst, []byte("example.com"), nil))
	var h Header
	if n, err := Parse(b, &h); err != nil || n != len(b) || string(h.Authority) != "example.com" {
		t.Fatalf("valid CRC32C: %d, %v, %+v", n, err, h)
	}
	for _, i := range []int{13, 17, 30, len(b) - 1} {
		bad := append([]byte(nil), b...)
		bad[i] ^= 0x40
		if _, err := Parse(bad, &h); !errors.Is(err, ErrMalformed) {
			t.Errorf("flipped byte %d: err = %v, want malformed", i, err)
		}
	}
}

func TestParseMalformed(t *testing.T) {
	v4 := AppendV2(nil, v4src, v4dst, nil, nil)
	mod := func(i int, c byte) []byte { b := append([]byte(nil), v4...); b[i] = c; return b }
	tlv := func(s string) []byte { return fixLen(append(append([]byte(nil), v4...), s...)) }
	big := make([]byte, 16)
	copy(big, v2Sig+"\x21\x11")
	binary.BigEndian.PutUint16(big[14:], 12+MaxTLVBytes+1)
	localBig := append([]byte(nil), big...)
	localBig[12], localBig[13] = 0x20, 0x00
	binary.BigEndian.PutUint16(localBig[14:], MaxTLVBytes+1)
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"v1 too long", []byte("PROXY UNKNOWN " + strings.Repeat("a", 200)), errV1TooLong},
		{"v1 CRLF at 107/108", []byte("PROXY UNKNOWN " + strings.Repeat("a", 92) + "\r\n"), errV1TooLong},
		{"v1 bare LF", []byte("PROXY TCP4 1.2.3.4\n"), errV1BareLF},
		{"v1 bare CR", []byte("PROXY TCP4 1.2.3.4\rx"), errV1BareCR},
		{"v1 NUL", []byte("PROXY TCP4 1.2.3.4\x00"), errV1Char},
		{"v1 tab", []byte("PROXY TCP4\t1.2.3.4"), errV1Char},
		{"v1 high byte", []byte("PROXY \xff"), errV1Char},
		{"v1 protocol", []byte("PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n"), errV1Proto},
		{"v1 lowercase protocol", []byte("PROXY tcp4 1.2.3.4 1.2.3.4 1 2\r\n"), errV1Proto},
		{"v1 unknownx", []byte("PROXY UNKNOWNX\r\n"), errV1Proto},
		{"v1 empty", []byte("PROXY \r\n"), errV1Proto},
		{"v1 tcp4 only", []byte("PROXY TCP4\r\n"), errV1Proto},
		{"v1 double space", []byte("PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n"), errV1Syntax},
		{"v1 missing port", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n"), errV1Syntax},
		{"v1 trailing space", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 1 2 \r\n"), errV1Syntax},
		{"v1 extra field", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n"), errV1Syntax},
		{"v1 v6 in TCP4", []byte("PROXY TCP4 ::1 1.2.3.4 1 2\r\n"), errV1Addr},
		{"v1 v4 in TCP6", []byte("PROXY TCP6 1.2.3.4 ::1 1 2\r\n"), errV1Addr},
		{"v1 leading zero octet", []byte("PROXY TCP4 1.2.3.04 1.2.3.4 1 2\r\n"), errV1Addr},
		{"v1 octet > 255", []byte("PROXY TCP4 1.2.3.256 1.2.3.4 1 2\r\n"), errV1Addr},
		{"v1 three octets", []byte("PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n"), errV1Addr},
		{"v1 five octets", []byte("PROXY TCP4 1.2.3.4.5 1.2.3.4 1 2\r\n"), errV1Addr},
		{"v1 v6 zone", []byte("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), errV1Addr},
		{"v1 v6 two ellipses", []byte("PROXY TCP6 1::2::3 ::1 1 2\r\n"), errV1Addr},
		{"v1 v6 5 digit group", []byte("PROXY TCP6 12345::1 ::1 1 2\r\n"), errV1Addr},
		{"v1 v6 too short", []byte("PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n"), errV1Addr},
		{"v1 v6 too long", []byte("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n"), errV1Addr},
		{"v1 v6 ellipsis for nothing", []byte("PROXY TCP6 1:2:3:4::5:6:7:8 ::1 1 2\r\n"), errV1Addr},
		{"v1 port leading zero", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n"), errV1Port},
		{"v1 port too big", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 1 65536\r\n"), errV1Port},
		{"v1 port sign", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 +1 2\r\n"), errV1Port},
		{"v2 version 1", mod(12, 0x11), errV2Version},
		{"v2 version 3", mod(12, 0x31), errV2Version},
		{"v2 command 2", mod(12, 0x22), errV2Command},
		{"v2 family 4", mod(13, 0x41), errV2Family},
		{"v2 transport 3", mod(13, 0x13), errV2Family},
		{"v2 too long before waiting", big, errV2TooLong},
		{"v2 local too long before waiting", localBig, errV2TooLong},
		{"v2 short address block", fixLen(append([]byte(v2Sig+"\x21\x21\x00\x00"), make([]byte, 12)...)), errV2ShortAddr},
		{"v2 tlv header truncated", tlv("\x02\x00"), errV2TLV},
		{"v2 tlv value truncated", tlv("\x02\x00\x05abcd"), errV2TLV},
		{"v2 duplicate authority", tlv("\x02\x00\x01a\x02\x00\x01b"), errV2DupTLV},
		{"v2 duplicate alpn", tlv("\x01\x00\x00\x01\x00\x00"), errV2DupTLV},
		{"v2 crc length", tlv("\x03\x00\x02ab"), errV2CRCLen},
		{"v2 duplicate crc", tlv("\x03\x00\x04abcd\x03\x00\x04abcd"), errV2DupTLV},
		{"v2 crc mismatch", tlv("\x03\x00\x04abcd"), errV2CRC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Header
			n, err := Parse(tt.in, &h)
			if err != tt.want || n != 0 || !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse(%q) = %d, %v; want %v", tt.in, n, err, tt.want)
			}
		})
	}
}

// TestParseAddrMatchesNetip checks the hand-written address parsers against
// the standard library on a table; FuzzParse extends this to random input.
func TestParseAddrMatchesNetip(t *testing.T) {
	for _, s := range []string{
		"::", "::1", "1::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "1::8", "1:2::7:8",
		"::ffff:1.2.3.4", "1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:7:1.2.3.4", "::1.2.3.4", "1::1.2.3.4", "1.2.3.4",
		":", ":::", "1:::2", ":1", "1:", "1::2:", "abcd:EF01::", "g::", "::ffff:01.2.3.4", "::1.2.3", "1.2.3.4::",
		"0.0.0.0", "255.255.255.255", "256.0.0.0", "1..2.3", ".1.2.3", "1.2.3.", "00.1.2.3", "1:2:3:4:5:6:7:8:9",
		"::1:2:3:4:5:6:7", "1:2:3:4:5:6:7::8", "ffff::ffff::", "::00000", "1:2:3:4:5::1.2.3.4", "1:2:3:4:5:6::1.2.3.4",
	} {
		checkAddrParsers(t, []byte(s))
	}
}

func checkAddrParsers(t *testing.T, b []byte) {
	t.Helper()
	s := string(b)
	std, err := netip.ParseAddr(s)
	if strings.Contains(s, "%") {
		err = errors.New("zone") // zones are not part of the PROXY syntax
	}
	if a, ok := parseIPv4(b); ok != (err == nil && std.Is4()) || ok && a != std {
		t.Errorf("parseIPv4(%q) = %v, %v; netip: %v, %v", s, a, ok, std, err)
	}
	if a, ok := parseIPv6(b); ok != (err == nil && std.Is6()) || ok && a != std {
		t.Errorf("parseIPv6(%q) = %v, %v; netip: %v, %v", s, a, ok, std, err)
	}
}

func TestZeroAlloc(t *testing.T) {
	buf := make([]byte, 0, 256)
	v1 := AppendV1(nil, v6src, v6dst)
	v2 := AppendV2(nil, v6src, v6dst, []byte("example.com"), []byte("h2"))
	crc := withCRC(AppendV2(nil, v4src, v4dst, nil, nil))
	v14 := AppendV1(nil, v4src, v4dst)
	bad := []byte("PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n")
	auth, alpn := []byte("example.com"), []byte("h2")
	var h Header
	for name, f := range map[string]func(){
		"AppendV1 v4": func() { buf = AppendV1(buf[:0], v4src, v4dst) },
		"AppendV1 v6": func() { buf = AppendV1(buf[:0], v6src, v6dst) },
		"AppendV2":    func() { buf = AppendV2(buf[:0], v6src, v6dst, auth, alpn) },
		"Parse v1 v4": func() { _, _ = Parse(v14, &h) },
		"Parse v1 v6": func() { _, _ = Parse(v1, &h) },
		"Parse v2":    func() { _, _ = Parse(v2, &h) },
		"Parse crc":   func() { _, _ = Parse(crc, &h) },
		"Parse error": func() { _, _ = Parse(bad, &h) },
	} {
		if a := testing.AllocsPerRun(100, f); a != 0 {
			t.Errorf("%s: %v allocs per run, want 0", name, a)
		}
	}
}

func BenchmarkAppendV2(b *testing.B) {
	buf := make([]byte, 0, 256)
	auth, alpn := []byte("www.example.com"), []byte("h2")
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendV2(buf[:0], v6src, v6dst, auth, alpn)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkParse(b *testing.B) {
	for _, bc := range []struct {
		name string
		in   []byte
	}{
		{"v1-tcp4", AppendV1(nil, v4src, v4dst)},
		{"v1-tcp6", AppendV1(nil, v6src, v6dst)},
		{"v2-tcp6-tlvs", AppendV2(nil, v6src, v6dst, []byte("www.example.com"), []byte("h2"))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var h Header
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.in)))
			for b.Loop() {
				if _, err := Parse(bc.in, &h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

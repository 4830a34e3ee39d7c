// Package proxyproto writes and reads HAProxy's PROXY protocol header
// (versions 1 and 2, doc/proxy-protocol.txt in the HAProxy sources), which a
// proxy prepends to a backend connection so the backend learns the original
// client and destination addresses. Everything here allocates nothing: Append*
// write into the caller's buffer and Parse aliases its input.
package proxyproto

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net/netip"
	"strconv"
)

// Sentinel error classes; every error returned by Parse is one of these or Is
// one of them.
var (
	// ErrNeedMore: data is a valid prefix of a PROXY header; call again with more.
	ErrNeedMore = errors.New("proxyproto: need more bytes")
	// ErrNotProxy: data does not start with a PROXY header (v1 or v2 signature).
	ErrNotProxy = errors.New("proxyproto: not a PROXY protocol header")
	// ErrMalformed: data starts like a PROXY header but violates the spec.
	ErrMalformed = errors.New("proxyproto: malformed header")
)

// ppError is a preallocated specific error: returning it never allocates and
// errors.Is reaches its class through Unwrap.
type ppError struct {
	kind error
	msg  string
}

func (e *ppError) Error() string { return e.msg }
func (e *ppError) Unwrap() error { return e.kind }

func malformed(msg string) error { return &ppError{kind: ErrMalformed, msg: msg} }

var (
	errV1TooLong   = malformed("proxyproto: v1 line has no CRLF within 107 bytes")
	errV1Char      = malformed("proxyproto: v1 line contains a non-printable byte")
	errV1BareCR    = malformed("proxyproto: v1 line contains CR not followed by LF")
	errV1BareLF    = malformed("proxyproto: v1 line contains LF not preceded by CR")
	errV1Proto     = malformed("proxyproto: v1 protocol is not TCP4, TCP6 or UNKNOWN")
	errV1Syntax    = malformed("proxyproto: v1 line is not 'src dst sport dport' separated by single spaces")
	errV1Addr      = malformed("proxyproto: v1 address is invalid for the announced family")
	errV1Port      = malformed("proxyproto: v1 port is not a decimal in 0..65535 without leading zeros")
	errV2Version   = malformed("proxyproto: v2 version is not 2")
	errV2Command   = malformed("proxyproto: v2 command is neither LOCAL nor PROXY")
	errV2Family    = malformed("proxyproto: v2 address family or transport is unassigned")
	errV2TooLong   = malformed("proxyproto: v2 header length exceeds the address block plus 1 KiB of TLVs")
	errV2ShortAddr = malformed("proxyproto: v2 header length is shorter than the address block")
	errV2TLV       = malformed("proxyproto: v2 TLV exceeds the header")
	errV2DupTLV    = malformed("proxyproto: v2 TLV repeated (AUTHORITY, ALPN or CRC32C)")
	errV2CRCLen    = malformed("proxyproto: v2 CRC32C TLV is not 4 bytes")
	errV2CRC       = malformed("proxyproto: v2 CRC32C checksum mismatch")
)

// Protocol constants from the spec.
const (
	// MaxV1Len is the longest v1 line a receiver must accept, CRLF included.
	MaxV1Len = 107
	// MaxTLVBytes bounds the TLV area Parse accepts beyond the address block,
	// so a peer cannot make the receiver wait for (or buffer) 64 KiB.
	MaxTLVBytes = 1024
	// MaxTLVValue is the longest AUTHORITY or ALPN value AppendV2 writes
	// (a DNS name or an ALPN protocol id never exceeds 255 bytes); longer
	// values are left out so every header AppendV2 writes is one Parse accepts.
	MaxTLVValue = 255

	v2HeaderLen = 16
	v2CmdLocal  = 0x0
	v2CmdProxy  = 0x1
	famUnspec   = 0x0
	famInet     = 0x1
	famInet6    = 0x2
	famUnix     = 0x3
	trStream    = 0x1

	typeALPN      = 0x01
	typeAuthority = 0x02
	typeCRC32C    = 0x03
)

// v2Sig is the 12-byte v2 signature; v1Prefix starts every v1 line.
const (
	v2Sig    = "\r\n\r\n\x00\r\nQUIT\n"
	v1Prefix = "PROXY "
)

// castagnoli is immutable after package initialisation; zero4 is never
// written (a local array would escape through crc32.Update and allocate).
var (
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
	zero4      [4]byte
)

// Header is a parsed PROXY header.
type Header struct {
	Version int // 1 or 2
	// Local: the header carries no usable addresses and the receiver uses the
	// connection's real endpoints: v1 UNKNOWN, v2 LOCAL, and v2 PROXY with a
	// family/transport other than TCP over IPv4/IPv6 (the spec's UNSPEC fallback).
	Local    bool
	Src, Dst netip.AddrPort
	// Authority and ALPN alias the parsed input (v2 TLVs 0x02 and 0x01); nil when absent.
	Authority, ALPN []byte
}

// family returns how a pair of addresses is announced: 4 when both are IPv4
// (or v4-mapped IPv6), 6 when both are valid and one is real IPv6, 0 when
// either is invalid.
func family(src, dst netip.Addr) int {
	if !src.IsValid() || !dst.IsValid() {
		return 0
	}
	if src.Unmap().Is4() && dst.Unmap().Is4() {
		return 4
	}
	return 6
}

// AppendV1 appends "PROXY TCP4 src dst sport dport\r\n" (TCP6 for IPv6; a
// v4-mapped IPv6 address is written as TCP4). With one IPv4 and one IPv6
// address both are written as IPv6 (the IPv4 one v4-mapped); with an invalid
// address it writes "PROXY UNKNOWN\r\n". Zones are dropped.
func AppendV1(dst []byte, src, dstAddr netip.AddrPort) []byte {
	sa, da := src.Addr(), dstAddr.Addr()
	switch family(sa, da) {
	case 4:
		dst = append(dst, "PROXY TCP4 "...)
		dst = appendV4(dst, sa.Unmap().As4())
		dst = append(dst, ' ')
		dst = appendV4(dst, da.Unmap().As4())
	case 6:
		dst = append(dst, "PROXY TCP6 "...)
		dst = netip.AddrFrom16(sa.As16()).AppendTo(dst)
		dst = append(dst, ' ')
		dst = netip.AddrFrom16(da.As16()).AppendTo(dst)
	default:
		return append(dst, "PROXY UNKNOWN\r\n"...)
	}
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(src.Port()), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(dstAddr.Port()), 10)
	return append(dst, '\r', '\n')
}

func appendV4(dst []byte, a [4]byte) []byte {
	for i, b := range a {
		if i > 0 {
			dst = append(dst, '.')
		}
		dst = strconv.AppendUint(dst, uint64(b), 10)
	}
	return dst
}

// AppendV2 appends a v2 header with the PROXY command for TCP over IPv4 or
// IPv6 (family chosen as in AppendV1), followed by the TLVs PP2_TYPE_AUTHORITY
// when authority is non-empty and PP2_TYPE_ALPN when alpn is non-empty; a value
// longer than MaxTLVValue is left out. With an invalid address it writes the
// AF_UNSPEC form without addresses or TLVs, which receivers treat as "use the
// real endpoints".
func AppendV2(dst []byte, src, dstAddr netip.AddrPort, authority, alpn []byte) []byte {
	sa, da := src.Addr(), dstAddr.Addr()
	fam := family(sa, da)
	if fam == 0 {
		return append(dst, v2Sig+"\x21\x00\x00\x00"...)
	}
	tlvLen := 0
	if len(authority) > MaxTLVValue {
		authority = nil
	}
	if len(alpn) > MaxTLVValue {
		alpn = nil
	}
	if len(authority) > 0 {
		tlvLen += 3 + len(authority)
	}
	if len(alpn) > 0 {
		tlvLen += 3 + len(alpn)
	}
	dst = append(dst, v2Sig...)
	if fam == 4 {
		dst = append(dst, 0x20|v2CmdProxy, famInet<<4|trStream)
		dst = binary.BigEndian.AppendUint16(dst, uint16(12+tlvLen))
		s4, d4 := sa.Unmap().As4(), da.Unmap().As4()
		dst = append(dst, s4[:]...)
		dst = append(dst, d4[:]...)
	} else {
		dst = append(dst, 0x20|v2CmdProxy, famInet6<<4|trStream)
		dst = binary.BigEndian.AppendUint16(dst, uint16(36+tlvLen))
		s16, d16 := sa.As16(), da.As16()
		dst = append(dst, s16[:]...)
		dst = append(dst, d16[:]...)
	}
	dst = binary.BigEndian.AppendUint16(dst, src.Port())
	dst = binary.BigEndian.AppendUint16(dst, dstAddr.Port())
	if len(authority) > 0 {
		dst = append(dst, typeAuthority)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(authority)))
		dst = append(dst, authority...)
	}
	if len(alpn) > 0 {
		dst = append(dst, typeALPN)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(alpn)))
		dst = append(dst, alpn...)
	}
	return dst
}

// Parse parses a v1 or v2 header at the start of data into h and returns its
// length n; the bytes after data[:n] belong to the proxied protocol. It
// allocates nothing; h.Authority and h.ALPN alias data. Strictness follows the
// spec: v1 is a single line of printable ASCII, at most 107 bytes, with
// exactly-single spaces and no leading zeros; "PROXY UNKNOWN" followed by anything up to the CRLF is
// accepted as Local; v2 LOCAL is accepted with its block ignored; a v2 TLV
// area over MaxTLVBytes, a truncated TLV, a repeated AUTHORITY/ALPN/CRC32C or
// a wrong CRC32C is malformed.
func Parse(data []byte, h *Header) (n int, err error) {
	*h = Header{}
	if len(data) == 0 {
		return 0, ErrNeedMore
	}
	switch data[0] {
	case 'P':
		if !hasPrefix(data, v1Prefix) {
			return 0, ErrNotProxy
		}
		return parseV1(data, h)
	case '\r':
		if !hasPrefix(data, v2Sig) {
			return 0, ErrNotProxy
		}
		return parseV2(data, h)
	}
	return 0, ErrNotProxy
}

// hasPrefix reports whether data and prefix agree on their common length, so
// a truncated signature counts as a match.
func hasPrefix(data []byte, prefix string) bool {
	m := min(len(data), len(prefix))
	return string(data[:m]) == prefix[:m]
}

func parseV1(data []byte, h *Header) (int, error) {
	// Find the CRLF, rejecting bad bytes as early as they arrive so a broken
	// sender is told at once rather than after a timeout.
	end := -1
	lim := min(len(data), MaxV1Len)
	for i := len(v1Prefix); i < lim; i++ {
		c := data[i]
		if c == '\r' {
			if i+1 == MaxV1Len {
				return 0, errV1TooLong // the LF would be byte 108
			}
			if i+1 == len(data) {
				return 0, ErrNeedMore
			}
			if data[i+1] != '\n' {
				return 0, errV1BareCR
			}
			end = i
			break
		}
		if c == '\n' {
			return 0, errV1BareLF
		}
		if c < 0x20 || c > 0x7e {
			return 0, errV1Char
		}
	}
	if end < 0 {
		if len(data) < MaxV1Len {
			return 0, ErrNeedMore
		}
		return 0, errV1TooLong
	}
	n := end + 2
	line := data[len(v1Prefix):end]
	h.Version = 1
	if string(line) == "UNKNOWN" || len(line) > 7 && string(line[:8]) == "UNKNOWN " {
		h.Local = true
		return n, nil
	}
	if len(line) < 5 || line[4] != ' ' {
		return 0, errV1Proto
	}
	var v6 bool
	switch string(line[:4]) {
	case "TCP4":
	case "TCP6":
		v6 = true
	default:
		return 0, errV1Proto
	}
	var fields [4][]byte
	rest := line[5:]
	for i := range fields {
		j := 0
		for j < len(rest) && rest[j] != ' ' {
			j++
		}
		if j == 0 {
			return 0, errV1Syntax
		}
		fields[i] = rest[:j]
		if i < 3 {
			if j == len(rest) {
				return 0, errV1Syntax
			}
			rest = rest[j+1:]
		} else if j != len(rest) {
			return 0, errV1Syntax
		}
	}
	var sa, da netip.Addr
	var ok1, ok2 bool
	if v6 {
		sa, ok1 = parseIPv6(fields[0])
		da, ok2 = parseIPv6(fields[1])
	} else {
		sa, ok1 = parseIPv4(fields[0])
		da, ok2 = parseIPv4(fields[1])
	}
	if !ok1 || !ok2 {
		return 0, errV1Addr
	}
	sp, ok1 := parsePort(fields[2])
	dp, ok2 := parsePort(fields[3])
	if !ok1 || !ok2 {
		return 0, errV1Port
	}
	h.Src = netip.AddrPortFrom(sa, sp)
	h.Dst = netip.AddrPortFrom(da, dp)
	return n, nil
}

func parsePort(b []byte) (uint16, bool) {
	if len(b) == 0 || len(b) > 5 || len(b) > 1 && b[0] == '0' {
		return 0, false
	}
	v := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	if v > 65535 {
		return 0, false
	}
	return uint16(v), true
}

func parseV2(data []byte, h *Header) (int, error) {
	if len(data) < v2HeaderLen {
		return 0, ErrNeedMore
	}
	verCmd, fam := data[12], data[13]
	if verCmd>>4 != 2 {
		return 0, errV2Version
	}
	cmd := verCmd & 0x0f
	if cmd > v2CmdProxy {
		return 0, errV2Command
	}
	family, transport := fam>>4, fam&0x0f
	if family > famUnix || transport > 2 {
		return 0, errV2Family
	}
	addrLen := [4]int{0, 12, 36, 216}[family]
	blockLen := int(binary.BigEndian.Uint16(data[14:16]))
	// Bounded before waiting, so the peer cannot hold us for 64 KiB.
	if blockLen > addrLen+MaxTLVBytes {
		return 0, errV2TooLong
	}
	if cmd == v2CmdProxy && blockLen < addrLen {
		return 0, errV2ShortAddr
	}
	n := v2HeaderLen + blockLen
	if len(data) < n {
		return 0, ErrNeedMore
	}
	h.Version = 2
	if cmd == v2CmdLocal {
		// The spec: use the real endpoints and discard the block, family included.
		h.Local = true
		return n, nil
	}
	block := data[v2HeaderLen:n]
	switch {
	case family == famInet && transport == trStream:
		h.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(block[0:4])), binary.BigEndian.Uint16(block[8:10]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(block[4:8])), binary.BigEndian.Uint16(block[10:12]))
	case family == famInet6 && transport == trStream:
		h.Src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(block[0:16])), binary.BigEndian.Uint16(block[32:34]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(block[16:32])), binary.BigEndian.Uint16(block[34:36]))
	case family == famUnspec:
		// Address information, if any, has no defined layout: ignore the block.
		h.Local = true
		return n, nil
	default:
		// UDP or AF_UNIX: the spec's fallback is the UNSPEC mode (real
		// endpoints); the layout is known, so the TLVs are still read.
		h.Local = true
	}
	crcAt := -1
	tlvs := block[addrLen:]
	for off := 0; off < len(tlvs); {
		if len(tlvs)-off < 3 {
			return 0, errV2TLV
		}
		typ := tlvs[off]
		l := int(binary.BigEndian.Uint16(tlvs[off+1 : off+3]))
		v := off + 3
		if l > len(tlvs)-v {
			return 0, errV2TLV
		}
		val := tlvs[v : v+l : v+l]
		switch typ {
		case typeAuthority:
			if h.Authority != nil {
				return 0, errV2DupTLV
			}
			h.Authority = val
		case typeALPN:
			if h.ALPN != nil {
				return 0, errV2DupTLV
			}
			h.ALPN = val
		case typeCRC32C:
			if crcAt >= 0 {
				return 0, errV2DupTLV
			}
			if l != 4 {
				return 0, errV2CRCLen
			}
			crcAt = v2HeaderLen + addrLen + v
		}
		off = v + l
	}
	if crcAt >= 0 && !crcOK(data[:n], crcAt) {
		return 0, errV2CRC
	}
	return n, nil
}

// crcOK checks the CRC32C of hdr computed with the 4 checksum bytes at at
// taken as zero, without copying hdr.
func crcOK(hdr []byte, at int) bool {
	c := crc32.Update(0, castagnoli, hdr[:at])
	c = crc32.Update(c, castagnoli, zero4[:])
	c = crc32.Update(c, castagnoli, hdr[at+4:])
	return c == binary.BigEndian.Uint32(hdr[at:at+4])
}

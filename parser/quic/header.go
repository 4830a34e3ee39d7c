package quic

import "errors"

// PacketType is a long-header packet type, independent of the version's
// encoding of it (RFC 9369 3.2 swaps the bits).
type PacketType uint8

const (
	TypeInitial PacketType = iota
	Type0RTT
	TypeHandshake
	TypeRetry
)

// MaxCIDLen is the longest connection ID QUIC v1 and v2 allow (RFC 9000 17.2).
const MaxCIDLen = 20

// Header is a parsed long header, before header protection is removed. Its
// slices alias the datagram.
type Header struct {
	Version uint32
	Type    PacketType
	DCID    []byte
	SCID    []byte
	Token   []byte // Initial packets only
	// PNOffset is where the (protected) packet number starts; End is where the
	// packet ends (Length counts from PNOffset). Retry packets end at the
	// datagram's end.
	PNOffset, End int
}

// Parse errors. They are preallocated so that a flood of junk costs nothing.
var (
	ErrShortHeader = errors.New("quic: short-header packet")
	ErrTruncated   = errors.New("quic: truncated long header")
	ErrFixedBit    = errors.New("quic: fixed bit is 0")
	ErrCIDLen      = errors.New("quic: connection ID longer than 20 bytes")
	ErrVersionNeg  = errors.New("quic: version negotiation packet")
	ErrLength      = errors.New("quic: packet length beyond the datagram")
)

// IsLongHeader reports whether b starts with a long-header packet.
func IsLongHeader(b []byte) bool { return len(b) > 0 && b[0]&0x80 != 0 }

// ParseLongHeader parses the long header at the start of b (RFC 9000 17.2).
// For an unknown version only the version-independent fields (Version, DCID,
// SCID; RFC 8999) are set and End is len(b).
func ParseLongHeader(b []byte, h *Header) error {
	*h = Header{}
	if len(b) == 0 || b[0]&0x80 == 0 {
		return ErrShortHeader
	}
	if len(b) < 7 {
		return ErrTruncated
	}
	h.Version = uint32(b[1])<<24 | uint32(b[2])<<16 | uint32(b[3])<<8 | uint32(b[4])
	pos := 5
	dl := int(b[pos])
	pos++
	if dl > MaxCIDLen && Supported(h.Version) {
		return ErrCIDLen
	}
	if len(b) < pos+dl+1 {
		return ErrTruncated
	}
	h.DCID = b[pos : pos+dl : pos+dl]
	pos += dl
	sl := int(b[pos])
	pos++
	if sl > MaxCIDLen && Supported(h.Version) {
		return ErrCIDLen
	}
	if len(b) < pos+sl {
		return ErrTruncated
	}
	h.SCID = b[pos : pos+sl : pos+sl]
	pos += sl
	if h.Version == 0 {
		return ErrVersionNeg
	}
	if !Supported(h.Version) {
		h.End = len(b)
		return nil
	}
	if b[0]&0x40 == 0 {
		return ErrFixedBit
	}
	bits := (b[0] >> 4) & 3
	if h.Version == Version2 {
		// v2: Initial 0b01, 0-RTT 0b10, Handshake 0b11, Retry 0b00.
		h.Type = PacketType((bits + 3) & 3)
	} else {
		h.Type = PacketType(bits)
	}
	if h.Type == TypeRetry {
		h.PNOffset, h.End = len(b), len(b)
		return nil
	}
	if h.Type == TypeInitial {
		tl, n := readVarint(b[pos:])
		if n == 0 {
			return ErrTruncated
		}
		pos += n
		if tl > uint64(len(b)-pos) {
			return ErrTruncated
		}
		h.Token = b[pos : pos+int(tl) : pos+int(tl)]
		pos += int(tl)
	}
	length, n := readVarint(b[pos:])
	if n == 0 {
		return ErrTruncated
	}
	pos += n
	if length > uint64(len(b)-pos) {
		return ErrLength
	}
	h.PNOffset = pos
	h.End = pos + int(length)
	return nil
}

// typeBits encodes t in the first byte's type bits for version v.
func typeBits(v uint32, t PacketType) byte {
	if v == Version2 {
		return byte((t+1)&3) << 4
	}
	return byte(t) << 4
}

// readVarint decodes a QUIC variable-length integer (RFC 9000 16); n is 0
// when b is too short.
func readVarint(b []byte) (v uint64, n int) {
	if len(b) == 0 {
		return 0, 0
	}
	n = 1 << (b[0] >> 6)
	if len(b) < n {
		return 0, 0
	}
	v = uint64(b[0] & 0x3f)
	for i := 1; i < n; i++ {
		v = v<<8 | uint64(b[i])
	}
	return v, n
}

// appendVarint encodes v (< 2^62) in the shortest form.
func appendVarint(b []byte, v uint64) []byte {
	switch {
	case v < 1<<6:
		return append(b, byte(v))
	case v < 1<<14:
		return append(b, 0x40|byte(v>>8), byte(v))
	case v < 1<<30:
		return append(b, 0x80|byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return append(b, 0xc0|byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32),
		byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

package quic

import (
	"bytes"
	"errors"
)

// Assembler errors.
var (
	// ErrNeedMore: the ClientHello is not complete yet; feed the flow's next datagram.
	ErrNeedMore = errors.New("quic: need more Initial packets")
	// ErrNotInitial: the datagram holds no Initial packet of a supported version.
	ErrNotInitial = errors.New("quic: no Initial packet in datagram")
	// ErrUnsupportedVersion: a long header of a version this package cannot decrypt.
	ErrUnsupportedVersion = errors.New("quic: unsupported version")
	// ErrShortInitial: a client Initial datagram below 1,200 bytes (RFC 9000 14.1).
	ErrShortInitial = errors.New("quic: client Initial datagram shorter than 1200 bytes")
	ErrDecrypt      = errors.New("quic: Initial packet does not decrypt")
	ErrDCIDChanged  = errors.New("quic: Initial packet with another destination connection ID")
	ErrFrame        = errors.New("quic: malformed frame in Initial packet")
	ErrFrameType    = errors.New("quic: frame type not allowed in an Initial packet")
	ErrTooLong      = errors.New("quic: CRYPTO data beyond the ClientHello size limit")
	ErrFragmented   = errors.New("quic: CRYPTO data in too many pieces")
	ErrNotHello     = errors.New("quic: CRYPTO stream does not start with a ClientHello")
)

// MinInitialDatagram is the smallest UDP payload allowed to carry a client
// Initial (RFC 9000 14.1).
const MinInitialDatagram = 1200

const maxRanges = 32 // disjoint CRYPTO pieces held while reassembling

type span struct{ start, end int }

// Assembler reassembles the ClientHello of one client flow from the CRYPTO
// frames of its Initial packets, in any order and across datagrams. Its
// buffer and keys are kept across Reset so that a pooled Assembler does not
// allocate; see Reset.
type Assembler struct {
	version uint32
	dcid    [MaxCIDLen]byte
	dcidLen int
	scid    [MaxCIDLen]byte
	scidLen int
	keys    Keys
	// The client keys in keys were derived for kVersion and kDCID (kVersion
	// 0: none yet).
	kVersion uint32
	kDCID    [MaxCIDLen]byte
	kDCIDLen int

	buf     []byte // CRYPTO stream bytes at their offsets; len is the size limit
	ranges  [maxRanges]span
	nr      int
	total   int   // ClientHello length with its header, 0 until known
	largest int64 // largest packet number decrypted, -1 before the first
	hdr     Header
}

// Reset prepares a for a new flow whose ClientHello may take up to limit
// bytes. The buffer is reused when large enough, and the derived keys are
// kept: they are derived again only when the next flow's first Initial
// names another version or Destination Connection ID.
func (a *Assembler) Reset(limit int) {
	if cap(a.buf) < limit {
		a.buf = make([]byte, limit)
	}
	a.buf = a.buf[:limit]
	a.version, a.dcidLen, a.scidLen = 0, 0, 0
	a.nr, a.total, a.largest = 0, 0, -1
}

// Version, DCID and SCID describe the flow's first Initial packet; they are
// set once Feed has decrypted one (Version is 0 before). DCID is the client's original Destination
// Connection ID, which keys the Initial packets of both sides.
func (a *Assembler) Version() uint32 { return a.version }
func (a *Assembler) DCID() []byte    { return a.dcid[:a.dcidLen] }
func (a *Assembler) SCID() []byte    { return a.scid[:a.scidLen] }

// ClientHello returns the reassembled handshake message once Feed returned nil.
func (a *Assembler) ClientHello() []byte { return a.buf[:a.total] }

// Feed takes one datagram of the flow. It decrypts every Initial packet in it
// (skipping coalesced 0-RTT and Handshake packets) into scratch, which must be
// at least len(datagram) long, and adds their CRYPTO frames. It returns nil
// once the whole ClientHello is in, ErrNeedMore while it is not, and another
// error for a datagram that cannot be part of a client's first flight. The
// datagram itself is not modified.
func (a *Assembler) Feed(datagram, scratch []byte) error {
	if len(datagram) < MinInitialDatagram {
		if IsLongHeader(datagram) {
			return ErrShortInitial
		}
		return ErrNotInitial
	}
	seen := false
	for b := datagram; len(b) > 0; {
		if !IsLongHeader(b) {
			break // a short-header packet takes the rest of the datagram
		}
		h := &a.hdr
		if err := ParseLongHeader(b, h); err != nil {
			if seen {
				break // junk after a good packet is padding as far as routing goes
			}
			return err
		}
		if !Supported(h.Version) {
			if seen {
				break
			}
			return ErrUnsupportedVersion
		}
		pkt := b[:h.End]
		b = b[h.End:]
		if h.Type != TypeInitial {
			continue
		}
		if err := a.key(h); err != nil {
			return err
		}
		if err := a.open(pkt, h, scratch); err != nil {
			return err
		}
		if a.version == 0 {
			a.setFlow(h) // the flow's identity comes from an Initial that decrypted
		}
		seen = true
	}
	if !seen {
		return ErrNotInitial
	}
	if a.total > 0 && a.nr > 0 && a.ranges[0].start == 0 && a.ranges[0].end >= a.total {
		return nil
	}
	return ErrNeedMore
}

// key checks h against the flow's first Initial and derives the client keys
// when they are not cached.
func (a *Assembler) key(h *Header) error {
	if a.version != 0 {
		if h.Version != a.version || !bytes.Equal(h.DCID, a.dcid[:a.dcidLen]) {
			return ErrDCIDChanged
		}
		return nil
	}
	if a.kVersion != h.Version || !bytes.Equal(h.DCID, a.kDCID[:a.kDCIDLen]) {
		a.kVersion = 0
		if err := a.keys.Derive(h.Version, h.DCID, false); err != nil {
			return err
		}
		a.kVersion = h.Version
		a.kDCIDLen = copy(a.kDCID[:], h.DCID)
	}
	return nil
}

func (a *Assembler) setFlow(h *Header) {
	a.version = h.Version
	a.dcidLen = copy(a.dcid[:], h.DCID)
	a.scidLen = copy(a.scid[:], h.SCID)
}

// open decrypts pkt into scratch and walks its frames.
func (a *Assembler) open(pkt []byte, h *Header, scratch []byte) error {
	plain, pn, err := unprotect(&a.keys, pkt, h.PNOffset, a.largest, scratch)
	if err != nil {
		return err
	}
	if int64(pn) > a.largest {
		a.largest = int64(pn)
	}
	return a.frames(plain)
}

// unprotect removes header protection from pkt's copy in scratch and
// decrypts its payload there (RFC 9001 5.3, 5.4); largest is the largest
// packet number seen so far in this space (-1 for none).
func unprotect(k *Keys, pkt []byte, pnOffset int, largest int64, scratch []byte) (plain []byte, pn uint64, err error) {
	if pnOffset+4+16 > len(pkt) || len(scratch) < len(pkt) {
		return nil, 0, ErrDecrypt // too short to sample (RFC 9001 5.4.2)
	}
	p := scratch[:len(pkt)]
	copy(p, pkt)
	mask := k.mask(p[pnOffset+4:])
	p[0] ^= mask[0] & 0x0f
	pnLen := int(p[0]&3) + 1
	var truncated uint64
	for i := 0; i < pnLen; i++ {
		p[pnOffset+i] ^= mask[1+i]
		truncated = truncated<<8 | uint64(p[pnOffset+i])
	}
	pn = decodePacketNumber(largest, truncated, pnLen)
	hdrEnd := pnOffset + pnLen
	nonce := k.nonce(pn)
	ct := p[hdrEnd:]
	plain, err = k.aead.Open(ct[:0], nonce, ct, p[:hdrEnd])
	if err != nil {
		return nil, 0, ErrDecrypt
	}
	return plain, pn, nil
}

// decodePacketNumber recovers a full packet number (RFC 9000 A.3).
func decodePacketNumber(largest int64, truncated uint64, pnLen int) uint64 {
	expected := uint64(largest + 1)
	win := uint64(1) << (8 * pnLen)
	half := win / 2
	candidate := (expected &^ (win - 1)) | truncated
	if candidate+half <= expected && candidate < (1<<62)-win {
		return candidate + win
	}
	if candidate > expected+half && candidate >= win {
		return candidate - win
	}
	return candidate
}

// frames walks an Initial packet's plaintext (RFC 9000 12.4: only PADDING,
// PING, ACK, CRYPTO and CONNECTION_CLOSE may appear in it).
func (a *Assembler) frames(p []byte) error {
	if len(p) == 0 {
		return ErrFrame // RFC 9000 12.4: a packet carries at least one frame
	}
	for len(p) > 0 {
		switch p[0] {
		case 0x00: // PADDING
			p = p[1:]
		case 0x01: // PING
			p = p[1:]
		case 0x02, 0x03: // ACK
			rest := p[1:]
			var count uint64
			for i := 0; i < 3; i++ { // largest, delay, range count
				v, k := readVarint(rest)
				if k == 0 {
					return ErrFrame
				}
				count = v
				rest = rest[k:]
			}
			fields := 1 + 2*count // first range, then gap and length per range
			if p[0] == 0x03 {
				fields += 3
			}
			if count > uint64(len(rest)) {
				return ErrFrame
			}
			for i := uint64(0); i < fields; i++ {
				_, k := readVarint(rest)
				if k == 0 {
					return ErrFrame
				}
				rest = rest[k:]
			}
			p = rest
		case 0x06: // CRYPTO
			rest := p[1:]
			off, k1 := readVarint(rest)
			if k1 == 0 {
				return ErrFrame
			}
			rest = rest[k1:]
			n, k2 := readVarint(rest)
			if k2 == 0 || n > uint64(len(rest)-k2) {
				return ErrFrame
			}
			rest = rest[k2:]
			if err := a.add(off, rest[:n]); err != nil {
				return err
			}
			p = rest[n:]
		case 0x1c: // CONNECTION_CLOSE (transport)
			rest := p[1:]
			for i := 0; i < 2; i++ {
				_, k := readVarint(rest)
				if k == 0 {
					return ErrFrame
				}
				rest = rest[k:]
			}
			n, k := readVarint(rest)
			if k == 0 || n > uint64(len(rest)-k) {
				return ErrFrame
			}
			p = rest[k+int(n):]
		default:
			return ErrFrameType
		}
	}
	return nil
}

// add copies a CRYPTO frame's data to its offset and records the range.
func (a *Assembler) add(off uint64, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	if off > uint64(len(a.buf)) || uint64(len(data)) > uint64(len(a.buf))-off {
		return ErrTooLong
	}
	start := int(off)
	end := start + len(data)
	copy(a.buf[start:end], data)
	if err := a.insert(start, end); err != nil {
		return err
	}
	if a.total == 0 && a.ranges[0].start == 0 && a.ranges[0].end >= 4 {
		if a.buf[0] != 1 {
			return ErrNotHello
		}
		a.total = 4 + (int(a.buf[1])<<16 | int(a.buf[2])<<8 | int(a.buf[3]))
		if a.total > len(a.buf) {
			return ErrTooLong
		}
	}
	return nil
}

// insert merges [start, end) into the sorted, disjoint ranges.
func (a *Assembler) insert(start, end int) error {
	i := 0
	for i < a.nr && a.ranges[i].end < start {
		i++
	}
	j := i
	for j < a.nr && a.ranges[j].start <= end {
		start = min(start, a.ranges[j].start)
		end = max(end, a.ranges[j].end)
		j++
	}
	// ranges[i:j] merge into one.
	if i == j {
		if a.nr == maxRanges {
			return ErrFragmented
		}
		copy(a.ranges[i+1:a.nr+1], a.ranges[i:a.nr])
		a.nr++
	} else if j-i > 1 {
		copy(a.ranges[i+1:], a.ranges[j:a.nr])
		a.nr -= j - i - 1
	}
	a.ranges[i] = span{start, end}
	return nil
}

package parser

// TLS constants (RFC 8446 5.1, 4; RFC 6066 3; RFC 7301 3.1).
const (
	recordHeaderLen    = 5
	handshakeHeaderLen = 4
	maxPlaintext       = 1 << 14 // TLSPlaintext.length limit
	recordHandshake    = 22
	typeClientHello    = 1

	extServerName    = 0
	extALPN          = 16
	extPreSharedKey  = 41
	maxHighExtension = 64 // distinct extension types >= 256 tracked for duplicate detection
)

// MaxClientHelloLen bounds the ClientHello body (as crypto/tls's maxHandshake
// does); a longer declared length is rejected before it is buffered.
const MaxClientHelloLen = 65536

// ClientHello holds what the router needs from a TLS ClientHello.
type ClientHello struct {
	// ServerName is the SNI host_name; nil when the ClientHello has no SNI extension.
	ServerName []byte
	// ALPN is the raw ALPN ProtocolNameList body (without its 2-byte length
	// prefix), iterate it with NextProtocol; nil if absent.
	ALPN []byte
	// Len is the number of input bytes taken by the TLS records that carried
	// the whole ClientHello.
	Len int

	// buf reassembles a handshake message that spans several records; it is
	// kept across calls so a reused ClientHello parses without allocating.
	buf []byte
}

// Reset clears the parsed fields and keeps the reassembly buffer's capacity.
func (h *ClientHello) Reset() {
	h.ServerName, h.ALPN, h.Len = nil, nil, 0
	h.buf = h.buf[:0]
}

// ParseClientHello parses data, every byte received so far from the start of
// the connection. It returns nil once the whole ClientHello is parsed; then
// h.ServerName and h.ALPN alias data or h's scratch and stay valid until the
// next call with h. It returns ErrNeedMore for an incomplete but so far valid
// prefix, ErrNotTLS or ErrSSLv2 when the first bytes are not a TLS handshake
// record, and an error that Is ErrMalformed otherwise.
//
// Every check is made on bytes in stream order, so a prefix of data yields
// either ErrNeedMore or exactly the verdict that data yields.
func ParseClientHello(data []byte, h *ClientHello) error {
	h.ServerName, h.ALPN, h.Len = nil, nil, 0
	if len(data) == 0 {
		return ErrNeedMore
	}
	if data[0] != recordHandshake {
		// An SSLv2 record header is 2 bytes with the high bit set, then
		// msg_type 1 (CLIENT-HELLO).
		if data[0]&0x80 != 0 {
			if len(data) < 3 {
				return ErrNeedMore
			}
			if data[2] == typeClientHello {
				return ErrSSLv2
			}
		}
		return ErrNotTLS
	}
	if len(data) < 2 {
		return ErrNeedMore
	}
	if data[1] != 3 {
		return ErrNotTLS
	}

	// Walk the records carrying the handshake message. The 4-byte handshake
	// header itself may straddle records, so it is gathered into hdr.
	var hdr [handshakeHeaderLen]byte
	seen := 0     // handshake bytes available so far
	total := -1   // handshake message length including its header, once known
	declared := 0 // sum of the record lengths walked so far
	records := 0
	pos := 0
	for {
		if len(data)-pos < recordHeaderLen {
			if pos < len(data) && data[pos] != recordHandshake {
				return errRecordType
			}
			if pos+1 < len(data) && data[pos+1] != 3 {
				return errRecordVersion
			}
			return ErrNeedMore
		}
		if data[pos] != recordHandshake {
			return errRecordType
		}
		if data[pos+1] != 3 {
			return errRecordVersion
		}
		rlen := int(data[pos+3])<<8 | int(data[pos+4])
		if rlen > maxPlaintext {
			return errRecordTooLong
		}
		if rlen == 0 {
			// RFC 8446 5.1: zero-length handshake fragments are forbidden.
			return errRecordEmpty
		}
		records++
		declared += rlen
		start := pos + recordHeaderLen
		end := start + rlen
		avail := data[start:min(end, len(data))]
		if seen < handshakeHeaderLen {
			copy(hdr[seen:], avail)
		}
		seen += len(avail)
		if seen >= 1 && hdr[0] != typeClientHello {
			return errNotClientHello
		}
		if total < 0 && seen >= handshakeHeaderLen {
			n := int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3])
			if n > MaxClientHelloLen {
				return errHelloTooLong
			}
			total = handshakeHeaderLen + n
		}
		// RFC 8446 5.1: the ClientHello must end at a record boundary; this
		// is known from the record length before its bytes arrive.
		if total >= 0 && declared > total {
			return errRecordBoundary
		}
		if end > len(data) {
			return ErrNeedMore
		}
		pos = end
		if declared == total {
			break
		}
	}
	var msg []byte
	if records == 1 {
		msg = data[recordHeaderLen+handshakeHeaderLen : pos]
	} else {
		h.buf = h.buf[:0]
		for p := 0; p < pos; {
			rlen := int(data[p+3])<<8 | int(data[p+4])
			h.buf = append(h.buf, data[p+recordHeaderLen:p+recordHeaderLen+rlen]...)
			p += recordHeaderLen + rlen
		}
		msg = h.buf[handshakeHeaderLen:]
	}
	if err := h.parseBody(msg); err != nil {
		h.ServerName, h.ALPN = nil, nil // no partial results beside an error
		return err
	}
	h.Len = pos
	return nil
}

// ParseClientHelloMessage parses a bare ClientHello handshake message (4-byte
// handshake header, then the body) without the TLS record layer, as QUIC
// carries it in CRYPTO frames (RFC 9001 4.1.3). msg must hold exactly the
// whole message. h.Len is set to len(msg); the results alias msg.
func ParseClientHelloMessage(msg []byte, h *ClientHello) error {
	h.ServerName, h.ALPN, h.Len = nil, nil, 0
	if len(msg) < handshakeHeaderLen {
		return ErrNeedMore
	}
	if msg[0] != typeClientHello {
		return errNotClientHello
	}
	n := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
	if n > MaxClientHelloLen {
		return errHelloTooLong
	}
	if len(msg) < handshakeHeaderLen+n {
		return ErrNeedMore
	}
	if len(msg) > handshakeHeaderLen+n {
		return errMessageTrailing
	}
	if err := h.parseBody(msg[handshakeHeaderLen:]); err != nil {
		h.ServerName, h.ALPN = nil, nil
		return err
	}
	h.Len = len(msg)
	return nil
}

// parseBody parses the ClientHello body (after the handshake header), bounds
// checked the way crypto/tls's clientHelloMsg.unmarshal is.
func (h *ClientHello) parseBody(msg []byte) error {
	s := byteString(msg)
	if len(s) < 2+32 {
		return errShortHello
	}
	if s[0] != 3 {
		return errLegacyVersion
	}
	s = s[2+32:] // legacy_version, random
	sid, ok := s.prefixed8()
	if !ok || len(sid) > 32 {
		return errSessionID
	}
	suites, ok := s.prefixed16()
	if !ok {
		return errCipherSuites
	}
	if len(suites) == 0 || len(suites)%2 != 0 {
		return errCipherSuitesLen
	}
	comp, ok := s.prefixed8()
	if !ok || len(comp) == 0 {
		return errCompression
	}
	if len(s) == 0 {
		return nil // no extensions: valid, and no SNI
	}
	exts, ok := s.prefixed16()
	if !ok || len(s) != 0 {
		return errExtensionsLen
	}

	// Duplicate detection without a map: a bitset for the common types below
	// 256 and a short bounded list for the rest (GREASE, renegotiation_info,
	// ECH, ALPS), which keeps the check linear.
	var low [4]uint64
	var high [maxHighExtension]uint16
	nhigh := 0
	for len(exts) > 0 {
		typ, ok1 := exts.u16()
		body, ok2 := exts.prefixed16()
		if !ok1 || !ok2 {
			return errExtension
		}
		if typ < 256 {
			bit := uint64(1) << (typ & 63)
			if low[typ>>6]&bit != 0 {
				return errDupExtension
			}
			low[typ>>6] |= bit
		} else {
			for _, t := range high[:nhigh] {
				if t == uint16(typ) {
					return errDupExtension
				}
			}
			if nhigh == len(high) {
				return errTooManyExt
			}
			high[nhigh] = uint16(typ)
			nhigh++
		}
		switch typ {
		case extServerName:
			if err := h.parseSNI(body); err != nil {
				return err
			}
		case extALPN:
			if err := h.parseALPN(body); err != nil {
				return err
			}
		case extPreSharedKey:
			// RFC 8446 4.2.11: pre_shared_key must be the last extension.
			if len(exts) != 0 {
				return errPSKNotLast
			}
		}
	}
	return nil
}

// parseSNI parses the server_name extension. Like OpenSSL, it accepts exactly
// one entry and only of type host_name (RFC 6066 3).
func (h *ClientHello) parseSNI(body byteString) error {
	list, ok := body.prefixed16()
	if !ok || len(body) != 0 {
		return errSNIList
	}
	if len(list) == 0 {
		return errSNIEmpty
	}
	nameType, _ := list.u8()
	if nameType != 0 {
		return errSNIType
	}
	name, ok := list.prefixed16()
	if !ok {
		return errSNITrunc
	}
	if len(name) == 0 || len(name) > 255 {
		return errSNILen
	}
	if len(list) != 0 {
		return errSNIMultiple
	}
	for _, c := range name {
		if c < 0x21 || c > 0x7e {
			return errSNIChar
		}
	}
	if name[len(name)-1] == '.' {
		return errSNITrailingDot // RFC 6066 3: "without a trailing dot"
	}
	h.ServerName = name[:len(name):len(name)]
	return nil
}

// parseALPN parses the application_layer_protocol_negotiation extension.
func (h *ClientHello) parseALPN(body byteString) error {
	list, ok := body.prefixed16()
	if !ok || len(body) != 0 {
		return errALPNList
	}
	if len(list) == 0 {
		return errALPNEmpty
	}
	for l := list; len(l) > 0; {
		p, ok := l.prefixed8()
		if !ok || len(p) == 0 {
			return errALPNProto
		}
	}
	h.ALPN = list[:len(list):len(list)]
	return nil
}

// NextProtocol iterates an ALPN ProtocolNameList (ClientHello.ALPN): proto is
// the first entry and rest the remainder. ok is false at the end of the list
// or on malformed input.
func NextProtocol(list []byte) (proto, rest []byte, ok bool) {
	if len(list) == 0 {
		return nil, nil, false
	}
	n := int(list[0])
	if n == 0 || 1+n > len(list) {
		return nil, nil, false
	}
	return list[1 : 1+n : 1+n], list[1+n:], true
}

// byteString is a minimal bounds-checked reader in the style of
// x/crypto/cryptobyte.String, without its allocations.
type byteString []byte

func (s *byteString) u8() (int, bool) {
	if len(*s) < 1 {
		return 0, false
	}
	v := int((*s)[0])
	*s = (*s)[1:]
	return v, true
}

func (s *byteString) u16() (int, bool) {
	if len(*s) < 2 {
		return 0, false
	}
	v := int((*s)[0])<<8 | int((*s)[1])
	*s = (*s)[2:]
	return v, true
}

func (s *byteString) take(n int) (byteString, bool) {
	if len(*s) < n {
		return nil, false
	}
	v := (*s)[:n:n]
	*s = (*s)[n:]
	return v, true
}

func (s *byteString) prefixed8() (byteString, bool) {
	n, ok := s.u8()
	if !ok {
		return nil, false
	}
	return s.take(n)
}

func (s *byteString) prefixed16() (byteString, bool) {
	n, ok := s.u16()
	if !ok {
		return nil, false
	}
	return s.take(n)
}

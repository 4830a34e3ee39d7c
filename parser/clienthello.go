package parser

import "bytes"

// TLS constants (RFC 8446 5.1, 4; RFC 6066 3; RFC 7301 3.1).
const (
	recordHeaderLen    = 5
	handshakeHeaderLen = 4
	maxPlaintext       = 1 << 14 // TLSPlaintext.length limit
	recordHandshake    = 22
	typeClientHello    = 1

	extServerName     = 0
	extALPN           = 16
	extPreSharedKey   = 41
	extRenegotiation  = 0xff01
	extNextProtoNeg   = 13172
	sslv2HeaderLen    = 2
	sslv2HelloMinBody = 9 // msg_type, version, three lengths
)

// DefaultMaxHelloLen is the limit ParseClientHello uses when maxLen <= 0.
const DefaultMaxHelloLen = 16 << 10

// openSSLKnown marks the extension types below 64 that OpenSSL recognises
// (ssl/statem/extensions.c ext_defs): like OpenSSL, a duplicate is refused
// only for those (and renegotiation_info, next_protocol_negotiation); other
// types may repeat, and their number is bounded only by the size limit.
const openSSLKnown uint64 = 1<<0 | 1<<1 | 1<<5 | 1<<10 | 1<<11 | 1<<12 | 1<<13 | 1<<14 | 1<<16 | 1<<18 |
	1<<19 | 1<<20 | 1<<21 | 1<<22 | 1<<23 | 1<<27 | 1<<35 | 1<<41 | 1<<42 | 1<<43 | 1<<44 | 1<<45 |
	1<<47 | 1<<49 | 1<<50 | 1<<51

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
	// SSLv2 is set for an SSLv2-format (compatibility) ClientHello offering
	// TLS: it has no extensions, hence no SNI and no ALPN.
	SSLv2 bool

	// buf reassembles a handshake message that spans several records; it is
	// kept across calls so a reused ClientHello parses without allocating.
	buf []byte
}

// Reset clears the parsed fields and keeps the reassembly buffer's capacity.
func (h *ClientHello) Reset() {
	h.ServerName, h.ALPN, h.Len, h.SSLv2 = nil, nil, 0, false
	h.buf = h.buf[:0]
}

// ParseClientHello parses data, every byte received so far from the start of
// the connection. It returns nil once the whole ClientHello is parsed; then
// h.ServerName and h.ALPN alias data or h's scratch and stay valid until the
// next call with h. It returns ErrNeedMore for an incomplete but so far valid
// prefix, ErrNotTLS when the first bytes are not a TLS handshake record (or
// ErrSSLv2 for an SSL 2.0 ClientHello that does not offer TLS), an error
// that Is ErrTooLarge when the records carrying the ClientHello declare more
// than maxLen bytes (DefaultMaxHelloLen when maxLen <= 0), and an error that
// Is ErrMalformed otherwise. An SSLv2-format ClientHello offering TLS is
// accepted (h.SSLv2), as OpenSSL does.
//
// Every check is made on bytes in stream order, so a prefix of data yields
// either ErrNeedMore or exactly the verdict that data yields.
func ParseClientHello(data []byte, maxLen int, h *ClientHello) error {
	h.ServerName, h.ALPN, h.Len, h.SSLv2 = nil, nil, 0, false
	if maxLen <= 0 {
		maxLen = DefaultMaxHelloLen
	}
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
				return h.parseSSLv2(data, maxLen)
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
		if end > maxLen {
			return errHelloTooLarge // decided by the record header, before its bytes
		}
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
			// Known too large before it is buffered: at least one record
			// header carries the message.
			if recordHeaderLen+handshakeHeaderLen+n > maxLen {
				return errHelloTooLarge
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
// whole message, at most maxLen bytes (DefaultMaxHelloLen when maxLen <= 0).
// h.Len is set to len(msg); the results alias msg.
func ParseClientHelloMessage(msg []byte, maxLen int, h *ClientHello) error {
	h.ServerName, h.ALPN, h.Len = nil, nil, 0
	if len(msg) < handshakeHeaderLen {
		return ErrNeedMore
	}
	if msg[0] != typeClientHello {
		return errNotClientHello
	}
	if maxLen <= 0 {
		maxLen = DefaultMaxHelloLen
	}
	n := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
	if handshakeHeaderLen+n > maxLen {
		return errHelloTooLarge
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

	// Duplicates are refused for the types OpenSSL recognises (it refuses
	// them too), which include the two routing depends on; any other type
	// may repeat, so their number needs no bound and no memory.
	var seen uint64
	var reneg, npn bool
	for len(exts) > 0 {
		typ, ok1 := exts.u16()
		body, ok2 := exts.prefixed16()
		if !ok1 || !ok2 {
			return errExtension
		}
		var dup bool
		switch {
		case typ < 64:
			bit := uint64(1) << typ
			dup = seen&bit&openSSLKnown != 0
			seen |= bit
		case typ == extRenegotiation:
			dup, reneg = reneg, true
		case typ == extNextProtoNeg:
			dup, npn = npn, true
		}
		if dup {
			return errDupExtension
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
	if len(name) > 255 {
		return errSNILen
	}
	if len(list) != 0 {
		return errSNIMultiple
	}
	// As OpenSSL: only a NUL byte is refused. Other bytes and a trailing
	// dot are left to the route lookup (which ignores one trailing dot and
	// finds no route for anything else); an empty name counts as none.
	if bytes.IndexByte(name, 0) >= 0 {
		return errSNIChar
	}
	if len(name) > 0 {
		h.ServerName = name[:len(name):len(name)]
	}
	return nil
}

// parseSSLv2 checks an SSLv2-format ClientHello (RFC 6101 E.2, RFC 5246
// E.2): a 2-byte record header with the high bit set, then msg_type,
// version, cipher_spec_length, session_id_length, challenge_length and
// those three fields, exactly filling the record (as OpenSSL checks it).
func (h *ClientHello) parseSSLv2(data []byte, maxLen int) error {
	if len(data) < 4 {
		return ErrNeedMore
	}
	if data[3] != 3 {
		return ErrSSLv2 // SSL 2.0 itself, not a TLS client being compatible
	}
	n := int(data[0]&0x7f)<<8 | int(data[1])
	if sslv2HeaderLen+n > maxLen {
		return errHelloTooLarge
	}
	if n < sslv2HelloMinBody {
		return errSSLv2Length
	}
	if len(data) < sslv2HeaderLen+n {
		return ErrNeedMore
	}
	b := data[sslv2HeaderLen : sslv2HeaderLen+n]
	suites := int(b[3])<<8 | int(b[4])
	sid := int(b[5])<<8 | int(b[6])
	challenge := int(b[7])<<8 | int(b[8])
	if sslv2HelloMinBody+suites+sid+challenge != n {
		return errSSLv2Length
	}
	if suites == 0 || suites%3 != 0 || sid > 32 || challenge == 0 {
		return errSSLv2Fields
	}
	h.SSLv2 = true
	h.Len = sslv2HeaderLen + n
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

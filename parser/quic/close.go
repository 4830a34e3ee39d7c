package quic

// CryptoError returns the QUIC transport error code that carries TLS alert
// alert (RFC 9001 4.8): 0x100 + alert, e.g. 0x170 for unrecognized_name (112).
func CryptoError(alert uint8) uint64 { return 0x100 + uint64(alert) }

// AlertUnrecognizedName is the TLS alert for an unknown SNI (RFC 6066 3).
const AlertUnrecognizedName = 112

// AppendClose appends to dst a server Initial packet that closes the
// connection with a transport CONNECTION_CLOSE (RFC 9000 19.19) carrying
// code and reason, protected with the server Initial keys the client expects
// for its original Destination Connection ID origDCID (RFC 9001 5.2). The
// packet is addressed to the client's Source Connection ID clientSCID and
// names origDCID as the server's connection ID; frameType is the frame that
// caused the error (0x06, CRYPTO, for a ClientHello refusal).
//
// It derives the server keys, so it allocates; it is for refusals, not for
// the forwarding path.
func AppendClose(dst []byte, version uint32, origDCID, clientSCID []byte, code, frameType uint64, reason string) ([]byte, error) {
	var k Keys
	if err := k.Derive(version, origDCID, true); err != nil {
		return dst, err
	}
	const pnLen = 2
	var payload [64 + 256]byte
	if len(reason) > 256 {
		reason = reason[:256]
	}
	pl := append(payload[:0], 0x1c)
	pl = appendVarint(pl, code)
	pl = appendVarint(pl, frameType)
	pl = appendVarint(pl, uint64(len(reason)))
	pl = append(pl, reason...)
	// The header protection sample starts 4 bytes after the packet number:
	// pad the payload so that the packet holds it (RFC 9001 5.4.2).
	for len(pl)+pnLen < 4 {
		pl = append(pl, 0)
	}

	start := len(dst)
	dst = append(dst, 0xc0|typeBits(version, TypeInitial)|(pnLen-1),
		byte(version>>24), byte(version>>16), byte(version>>8), byte(version))
	dst = append(dst, byte(len(clientSCID)))
	dst = append(dst, clientSCID...)
	dst = append(dst, byte(len(origDCID)))
	dst = append(dst, origDCID...)
	dst = append(dst, 0) // token length
	length := pnLen + len(pl) + 16
	dst = append(dst, 0x40|byte(length>>8), byte(length)) // 2-byte varint
	pnOffset := len(dst) - start
	dst = append(dst, 0, 0) // packet number 0
	return seal(dst, start, pnOffset, pnLen, 0, pl, &k), nil
}

// seal appends payload encrypted under k to dst, whose bytes from start hold
// the packet's header up to and including its pnLen-byte packet number at
// pnOffset (relative to start), then applies header protection.
func seal(dst []byte, start, pnOffset, pnLen int, pn uint64, payload []byte, k *Keys) []byte {
	nonce := k.nonce(pn)
	hdrEnd := len(dst)
	dst = k.aead.Seal(dst, nonce, payload, dst[start:hdrEnd])
	p := dst[start:]
	mask := k.mask(p[pnOffset+4:])
	p[0] ^= mask[0] & 0x0f
	for i := 0; i < pnLen; i++ {
		p[pnOffset+i] ^= mask[1+i]
	}
	return dst
}

// Package quic reads the client's first QUIC packets far enough to route
// them, without terminating QUIC: it removes header protection, decrypts
// Initial packets with the keys every observer can derive from the client's
// Destination Connection ID (RFC 9001 5.2, RFC 9369 3.3) and reassembles the
// CRYPTO stream, which carries the TLS ClientHello, across datagrams. It also
// builds the one packet a router sends itself: a server Initial carrying
// CONNECTION_CLOSE, to refuse a client at once.
//
// It imports nothing of portier's; the engine hands the reassembled
// ClientHello to parser.ParseClientHelloMessage.
package quic

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
)

// QUIC versions this package decrypts.
const (
	Version1 uint32 = 0x00000001 // RFC 9000
	Version2 uint32 = 0x6b3343cf // RFC 9369
)

// Initial salts (RFC 9001 5.2, RFC 9369 3.3.1).
var (
	saltV1 = []byte{0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17,
		0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a}
	saltV2 = []byte{0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93,
		0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9}
)

// Supported reports whether v is a version whose Initials this package reads.
func Supported(v uint32) bool { return v == Version1 || v == Version2 }

// Keys protect one direction's Initial packets: AES-128-GCM for the payload
// and AES-128-ECB over a sample for the header (RFC 9001 5.3, 5.4).
type Keys struct {
	key, hpKey [16]byte
	iv         [12]byte
	aead       cipher.AEAD
	hp         cipher.Block
	// Scratch for the nonce and mask: arrays passed to the cipher interfaces
	// escape, so they live here rather than on the stack (one allocation
	// per packet otherwise).
	nonceBuf [12]byte
	maskBuf  [16]byte
}

var errVersion = errors.New("quic: unsupported version")

// Derive sets k to the Initial keys of the client (server false) or the
// server (server true) for a connection whose client chose dcid as its first
// Destination Connection ID. It allocates (HKDF, the AES key schedules and the
// GCM instance, about a dozen small objects); callers derive once per flow and
// keep k for that flow's further packets.
func (k *Keys) Derive(version uint32, dcid []byte, server bool) error {
	var salt []byte
	var keyLabel, ivLabel, hpLabel string
	switch version {
	case Version1:
		salt, keyLabel, ivLabel, hpLabel = saltV1, "quic key", "quic iv", "quic hp"
	case Version2:
		salt, keyLabel, ivLabel, hpLabel = saltV2, "quicv2 key", "quicv2 iv", "quicv2 hp"
	default:
		return errVersion
	}
	initial, err := hkdf.Extract(sha256.New, dcid, salt)
	if err != nil {
		return err
	}
	label := "client in"
	if server {
		label = "server in"
	}
	secret, err := expandLabel(initial, label, 32)
	if err != nil {
		return err
	}
	key, err := expandLabel(secret, keyLabel, 16)
	if err != nil {
		return err
	}
	iv, err := expandLabel(secret, ivLabel, 12)
	if err != nil {
		return err
	}
	hpKey, err := expandLabel(secret, hpLabel, 16)
	if err != nil {
		return err
	}
	copy(k.key[:], key)
	copy(k.iv[:], iv)
	copy(k.hpKey[:], hpKey)
	block, err := aes.NewCipher(k.key[:])
	if err != nil {
		return err
	}
	if k.aead, err = cipher.NewGCM(block); err != nil {
		return err
	}
	k.hp, err = aes.NewCipher(k.hpKey[:])
	return err
}

// expandLabel is TLS 1.3's HKDF-Expand-Label with an empty context (RFC 8446 7.1).
func expandLabel(secret []byte, label string, n int) ([]byte, error) {
	var info [2 + 1 + 6 + 16 + 1]byte
	b := append(info[:0], byte(n>>8), byte(n), byte(6+len(label)))
	b = append(b, "tls13 "...)
	b = append(b, label...)
	b = append(b, 0)
	return hkdf.Expand(sha256.New, secret, string(b), n)
}

// nonce returns the AEAD nonce for packet number pn (RFC 9001 5.3), valid
// until the next call.
func (k *Keys) nonce(pn uint64) []byte {
	k.nonceBuf = k.iv
	for i := 0; i < 8; i++ {
		k.nonceBuf[11-i] ^= byte(pn >> (8 * i))
	}
	return k.nonceBuf[:]
}

// mask returns the header protection mask for a 16-byte sample, valid until
// the next call.
func (k *Keys) mask(sample []byte) []byte {
	k.hp.Encrypt(k.maskBuf[:], sample[:16])
	return k.maskBuf[:]
}

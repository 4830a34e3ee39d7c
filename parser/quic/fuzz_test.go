package quic

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzFeed feeds data twice: as a raw datagram (header parsing, junk) and as
// the plaintext frames of a well-protected client Initial (frame walking,
// reassembly). Neither may panic, read outside its input or return an
// unlisted error; a completed ClientHello lies within the size limit.
func FuzzFeed(f *testing.F) {
	f.Add(readHex(f, "rfc9001_client_initial"))
	f.Add(readHex(f, "rfc9369_client_initial"))
	f.Add(readHex(f, "rfc9001_client_payload"))
	f.Add(append(cryptoFrame(4, []byte("abcd")), cryptoFrame(0, []byte{1, 0, 0, 4})...))
	f.Add([]byte{0x02, 0x05, 0x00, 0x01, 0x00, 0x01, 0x02, 0x06, 0x00, 0x02, 0x01, 0x00})
	f.Add([]byte{0x1c, 0x41, 0x70, 0x06, 0x01, 'x', 0x01, 0x00})
	dcid := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	var k Keys
	if err := k.Derive(Version1, dcid, false); err != nil {
		f.Fatal(err)
	}
	known := []error{ErrNeedMore, ErrNotInitial, ErrUnsupportedVersion, ErrShortInitial, ErrDecrypt,
		ErrDCIDChanged, ErrFrame, ErrFrameType, ErrTooLong, ErrFragmented, ErrNotHello,
		ErrShortHeader, ErrTruncated, ErrFixedBit, ErrCIDLen, ErrVersionNeg, ErrLength}
	check := func(t *testing.T, a *Assembler, err error) {
		if err == nil {
			if len(a.ClientHello()) > 4096 || a.ClientHello()[0] != 1 {
				t.Fatalf("ClientHello of %d bytes", len(a.ClientHello()))
			}
			return
		}
		for _, e := range known {
			if errors.Is(err, e) {
				return
			}
		}
		t.Fatalf("unlisted error %v", err)
	}
	scratch := make([]byte, 64<<10)
	f.Fuzz(func(t *testing.T, data []byte) {
		var a Assembler
		a.Reset(4096)
		orig := append([]byte(nil), data...)
		check(t, &a, a.Feed(data, scratch))
		if !bytes.Equal(orig, data) {
			t.Fatal("Feed modified its input")
		}
		if len(data) > 1100 {
			data = data[:1100]
		}
		a.Reset(4096)
		check(t, &a, a.Feed(clientInitial(t, Version1, dcid, nil, 0, data), scratch))
	})
}

package quic

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
)

var rfcDCID = []byte{0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08}

func readHex(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name + ".hex")
	if err != nil {
		t.Fatal(err)
	}
	out, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// RFC 9001 A.1 and RFC 9369 A.1.
func TestDeriveKeys(t *testing.T) {
	for _, tc := range []struct {
		name        string
		version     uint32
		server      bool
		key, iv, hp string
	}{
		{"v1 client", Version1, false, "1f369613dd76d5467730efcbe3b1a22d", "fa044b2f42a3fd3b46fb255c", "9f50449e04a0e810283a1e9933adedd2"},
		{"v1 server", Version1, true, "cf3a5331653c364c88f0f379b6067e37", "0ac1493ca1905853b0bba03e", "c206b8d9b9f0f37644430b490eeaa314"},
		{"v2 client", Version2, false, "8b1a0bc121284290a29e0971b5cd045d", "91f73e2351d8fa91660e909f", "45b95e15235d6f45a6b19cbcb0294ba9"},
		{"v2 server", Version2, true, "82db637861d55e1d011f19ea71d5d2a7", "dd13c276499c0249d3310652", "edf6d05c83121201b436e16877593c3a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var k Keys
			if err := k.Derive(tc.version, rfcDCID, tc.server); err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(k.key[:]); got != tc.key {
				t.Errorf("key %s, want %s", got, tc.key)
			}
			if got := hex.EncodeToString(k.iv[:]); got != tc.iv {
				t.Errorf("iv %s, want %s", got, tc.iv)
			}
			if got := hex.EncodeToString(k.hpKey[:]); got != tc.hp {
				t.Errorf("hp %s, want %s", got, tc.hp)
			}
		})
	}
	var k Keys
	if err := k.Derive(0xff00001d, rfcDCID, false); err == nil {
		t.Error("draft-29 derived keys; want an unsupported version error")
	}
}

// RFC 9001 A.2 and RFC 9369 A.2: the client's Initial decrypts to a CRYPTO
// frame carrying a ClientHello for example.com.
func TestFeedRFCClientInitial(t *testing.T) {
	payload := readHex(t, "rfc9001_client_payload")
	// CRYPTO frame: type 06, offset 00, length 40f1, then the ClientHello.
	want := payload[4 : 4+0xf1]
	for _, tc := range []struct {
		file    string
		version uint32
	}{{"rfc9001_client_initial", Version1}, {"rfc9369_client_initial", Version2}} {
		t.Run(tc.file, func(t *testing.T) {
			dgram := readHex(t, tc.file)
			orig := append([]byte(nil), dgram...)
			var a Assembler
			a.Reset(16 << 10)
			if err := a.Feed(dgram, make([]byte, 2048)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dgram, orig) {
				t.Error("Feed modified the datagram")
			}
			if !bytes.Equal(a.ClientHello(), want) {
				t.Errorf("ClientHello\n%x\nwant\n%x", a.ClientHello(), want)
			}
			if !bytes.Contains(a.ClientHello(), []byte("example.com")) {
				t.Error("no example.com in the ClientHello")
			}
			if a.Version() != tc.version || !bytes.Equal(a.DCID(), rfcDCID) || len(a.SCID()) != 0 {
				t.Errorf("flow %x %x %x", a.Version(), a.DCID(), a.SCID())
			}
		})
	}
}

// RFC 9001 A.3 and RFC 9369 A.3: sealing the server's Initial reproduces the
// vector, which checks the code AppendClose protects its packet with.
func TestSealRFCServerInitial(t *testing.T) {
	payload := readHex(t, "rfc9001_server_payload")
	for _, tc := range []struct {
		file    string
		version uint32
		header  string
	}{
		{"rfc9001_server_initial", Version1, "c1000000010008f067a5502a4262b50040750001"},
		{"rfc9369_server_initial", Version2, "d16b3343cf0008f067a5502a4262b50040750001"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			var k Keys
			if err := k.Derive(tc.version, rfcDCID, true); err != nil {
				t.Fatal(err)
			}
			hdr := unhex(tc.header)
			got := seal(hdr, 0, len(hdr)-2, 2, 1, payload, &k)
			if want := readHex(t, tc.file); !bytes.Equal(got, want) {
				t.Errorf("sealed\n%x\nwant\n%x", got, want)
			}
		})
	}
}

// clientInitial builds a client Initial datagram (padded to 1,200 bytes)
// carrying frames, as a client would: test helper for reassembly cases.
func clientInitial(t testing.TB, version uint32, dcid, scid []byte, pn uint64, frames []byte) []byte {
	t.Helper()
	var k Keys
	if err := k.Derive(version, dcid, false); err != nil {
		t.Fatal(err)
	}
	hdr := []byte{0xc0 | typeBits(version, TypeInitial) | 3, byte(version >> 24), byte(version >> 16), byte(version >> 8), byte(version)}
	hdr = append(hdr, byte(len(dcid)))
	hdr = append(hdr, dcid...)
	hdr = append(hdr, byte(len(scid)))
	hdr = append(hdr, scid...)
	hdr = append(hdr, 0) // token
	// Pad so the datagram is exactly 1,200 bytes: header + 2-byte length + 4-byte pn + payload + 16.
	plen := MinInitialDatagram - len(hdr) - 2 - 4 - 16
	if len(frames) > plen {
		t.Fatalf("frames too long: %d", len(frames))
	}
	payload := append(append([]byte(nil), frames...), make([]byte, plen-len(frames))...)
	length := 4 + len(payload) + 16
	hdr = append(hdr, 0x40|byte(length>>8), byte(length))
	pnOffset := len(hdr)
	hdr = append(hdr, byte(pn>>24), byte(pn>>16), byte(pn>>8), byte(pn))
	return seal(hdr, 0, pnOffset, 4, pn, payload, &k)
}

func cryptoFrame(off int, data []byte) []byte {
	f := appendVarint([]byte{0x06}, uint64(off))
	f = appendVarint(f, uint64(len(data)))
	return append(f, data...)
}

// fakeHello is a handshake message of type ClientHello with n body bytes.
func fakeHello(n int) []byte {
	m := []byte{1, byte(n >> 16), byte(n >> 8), byte(n)}
	for i := 0; i < n; i++ {
		m = append(m, byte(i))
	}
	return m
}

func TestReassembly(t *testing.T) {
	dcid := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	scid := []byte{9, 9, 9}
	hello := fakeHello(1700) // too big for one datagram, like a post-quantum ClientHello
	a1, a2, a3 := hello[:600], hello[600:1100], hello[1100:]
	ack := []byte{0x02, 0x00, 0x00, 0x00, 0x00}
	for _, version := range []uint32{Version1, Version2} {
		// Chrome-style: pieces shuffled inside and across packets, PINGs
		// and PADDING between them, overlapping retransmission.
		d1 := clientInitial(t, version, dcid, scid, 0, append(append(cryptoFrame(1100, a3[:300]), 0x01, 0x00), cryptoFrame(0, a1)...))
		d2 := clientInitial(t, version, dcid, scid, 1, append(append(append(ack, cryptoFrame(1400, a3[300:])...), cryptoFrame(500, hello[500:700])...), cryptoFrame(600, a2)...))
		var a Assembler
		a.Reset(16 << 10)
		scratch := make([]byte, 2048)
		if err := a.Feed(d2, scratch); !errors.Is(err, ErrNeedMore) {
			t.Fatalf("v%x second datagram first: %v, want ErrNeedMore", version, err)
		}
		if err := a.Feed(d1, scratch); err != nil {
			t.Fatalf("v%x: %v", version, err)
		}
		if !bytes.Equal(a.ClientHello(), hello) {
			t.Fatalf("v%x: reassembled ClientHello differs", version)
		}
		if a.Version() != version || !bytes.Equal(a.SCID(), scid) {
			t.Errorf("flow %x %x", a.Version(), a.SCID())
		}
	}
}

func TestFeedErrors(t *testing.T) {
	dcid := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	hello := fakeHello(100)
	good := clientInitial(t, Version1, dcid, nil, 0, cryptoFrame(0, hello))
	corrupt := append([]byte(nil), good...)
	corrupt[len(corrupt)-1] ^= 1
	otherDCID := clientInitial(t, Version1, []byte{7, 7, 7, 7, 7, 7, 7, 7}, nil, 1, cryptoFrame(0, hello[:10]))
	half := clientInitial(t, Version1, dcid, nil, 0, cryptoFrame(0, hello[:50]))
	for _, tc := range []struct {
		name  string
		feed  [][]byte
		limit int
		want  error
	}{
		{"short datagram", [][]byte{good[:1199]}, 0, ErrShortInitial},
		{"short header", [][]byte{append([]byte{0x40}, make([]byte, 1300)...)}, 0, ErrNotInitial},
		{"version negotiation", [][]byte{append([]byte{0x80, 0, 0, 0, 0, 0, 0}, make([]byte, 1300)...)}, 0, ErrVersionNeg},
		{"unknown version", [][]byte{append([]byte{0xc0, 0xff, 0, 0, 0x1d, 0, 0}, make([]byte, 1300)...)}, 0, ErrUnsupportedVersion},
		{"bad tag", [][]byte{corrupt}, 0, ErrDecrypt},
		{"dcid changed", [][]byte{half, otherDCID}, 0, ErrDCIDChanged},
		{"over the limit", [][]byte{good}, 50, ErrTooLong},
		{"not a ClientHello", [][]byte{clientInitial(t, Version1, dcid, nil, 0, cryptoFrame(0, []byte{2, 0, 0, 1, 0}))}, 0, ErrNotHello},
		{"stream frame", [][]byte{clientInitial(t, Version1, dcid, nil, 0, []byte{0x08, 0, 0})}, 0, ErrFrameType},
		{"crypto beyond payload", [][]byte{clientInitial(t, Version1, dcid, nil, 0, []byte{0x06, 0, 0x80, 1, 0, 0})}, 0, ErrFrame},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a Assembler
			limit := tc.limit
			if limit == 0 {
				limit = 16 << 10
			}
			a.Reset(limit)
			var err error
			for _, d := range tc.feed {
				err = a.Feed(d, make([]byte, 2048))
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestTooFragmented(t *testing.T) {
	dcid := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	var frames []byte
	for i := 0; i < maxRanges+1; i++ {
		frames = append(frames, cryptoFrame(100+10*i, []byte{1})...)
	}
	var a Assembler
	a.Reset(16 << 10)
	if err := a.Feed(clientInitial(t, Version1, dcid, nil, 0, frames), make([]byte, 2048)); !errors.Is(err, ErrFragmented) {
		t.Fatalf("got %v, want ErrFragmented", err)
	}
}

// AppendClose's packet decrypts with the server keys a client derives and
// carries the CONNECTION_CLOSE.
func TestAppendClose(t *testing.T) {
	scid := []byte{0xaa, 0xbb, 0xcc, 0xdd}
	for _, version := range []uint32{Version1, Version2} {
		pkt, err := AppendClose([]byte("junk"), version, rfcDCID, scid, CryptoError(AlertUnrecognizedName), 0x06, "unknown server name")
		if err != nil {
			t.Fatal(err)
		}
		if string(pkt[:4]) != "junk" {
			t.Fatal("prefix lost")
		}
		pkt = pkt[4:]
		var h Header
		if err := ParseLongHeader(pkt, &h); err != nil {
			t.Fatal(err)
		}
		if h.Type != TypeInitial || h.Version != version || !bytes.Equal(h.DCID, scid) || !bytes.Equal(h.SCID, rfcDCID) || h.End != len(pkt) {
			t.Fatalf("header %+v", h)
		}
		var k Keys
		if err := k.Derive(version, rfcDCID, true); err != nil {
			t.Fatal(err)
		}
		plain, pn, err := unprotect(&k, pkt, h.PNOffset, -1, make([]byte, len(pkt)))
		if err != nil {
			t.Fatal(err)
		}
		want := append([]byte{0x1c, 0x41, 0x70, 0x06, 19}, "unknown server name"...)
		if pn != 0 || !bytes.Equal(plain, want) {
			t.Errorf("pn %d payload %x, want %x", pn, plain, want)
		}
	}
	if CryptoError(112) != 0x170 {
		t.Error("crypto error for alert 112 is not 0x170")
	}
}

func TestDecodePacketNumber(t *testing.T) {
	// RFC 9000 A.3's example and the start of a space.
	if got := decodePacketNumber(0xa82f30ea, 0x9b32, 2); got != 0xa82f9b32 {
		t.Errorf("got %x", got)
	}
	if got := decodePacketNumber(-1, 0, 1); got != 0 {
		t.Errorf("got %x", got)
	}
	if got := decodePacketNumber(254, 1, 1); got != 257 {
		t.Errorf("got %d", got)
	}
}

// The steady path (a flow's further Initials, keys cached, and a pooled
// Assembler for a flow with the same DCID) allocates nothing.
func TestFeedAllocs(t *testing.T) {
	dgram := readHex(t, "rfc9001_client_initial")
	scratch := make([]byte, 2048)
	var a Assembler
	a.Reset(16 << 10)
	if err := a.Feed(dgram, scratch); err != nil {
		t.Fatal(err)
	}
	n := testing.AllocsPerRun(100, func() {
		a.Reset(16 << 10)
		if err := a.Feed(dgram, scratch); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Errorf("Feed allocates %.1f times per datagram", n)
	}
}

func BenchmarkFeed(b *testing.B) {
	dgram := readHex(b, "rfc9001_client_initial")
	scratch := make([]byte, 2048)
	var a Assembler
	a.Reset(16 << 10)
	b.ReportAllocs()
	b.SetBytes(int64(len(dgram)))
	for b.Loop() {
		a.Reset(16 << 10)
		if err := a.Feed(dgram, scratch); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFeedNewFlow includes the key derivation a flow's first Initial costs.
func BenchmarkFeedNewFlow(b *testing.B) {
	dgram := readHex(b, "rfc9001_client_initial")
	scratch := make([]byte, 2048)
	var a Assembler
	b.ReportAllocs()
	for b.Loop() {
		a.kVersion = 0 // forget the cached keys
		a.Reset(16 << 10)
		if err := a.Feed(dgram, scratch); err != nil {
			b.Fatal(err)
		}
	}
}

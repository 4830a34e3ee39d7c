package parser

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// helloCaptures are real ClientHellos recorded by ./internal/capture.
var helloCaptures = []struct {
	file string
	sni  string // "" = no SNI
	alpn []string
}{
	{"go.bin", "app1.test", []string{"h2", "http/1.1"}},
	{"openssl.bin", "app1.test", []string{"h2", "http/1.1"}},
	{"openssl-nosni.bin", "", nil},
	{"curl.bin", "app1.test", []string{"h2", "http/1.1"}},
	{"gnutls.bin", "app1.test", []string{"h2", "http/1.1"}},
}

func readCapture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "clienthello", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// handshakeMessage concatenates the fragments of the handshake records in
// data (no validation: test input is known good).
func handshakeMessage(data []byte) []byte {
	var msg []byte
	for len(data) >= recordHeaderLen {
		n := int(data[3])<<8 | int(data[4])
		msg = append(msg, data[recordHeaderLen:recordHeaderLen+n]...)
		data = data[recordHeaderLen+n:]
	}
	return msg
}

// recordize re-records a handshake message into handshake records of at
// most size bytes each, as a client with a small record size would.
func recordize(msg []byte, size int) []byte {
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, recordHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// alpnList flattens an ALPN ProtocolNameList with NextProtocol.
func alpnList(t *testing.T, list []byte) []string {
	t.Helper()
	if list == nil {
		return nil
	}
	var out []string
	for len(list) > 0 {
		p, rest, ok := NextProtocol(list)
		if !ok {
			t.Fatalf("NextProtocol failed on %q", list)
		}
		out = append(out, string(p))
		list = rest
	}
	return out
}

func checkHello(t *testing.T, h *ClientHello, sni string, alpn []string, wantLen int) {
	t.Helper()
	if sni == "" {
		if h.ServerName != nil {
			t.Errorf("ServerName = %q, want nil", h.ServerName)
		}
	} else if string(h.ServerName) != sni {
		t.Errorf("ServerName = %q, want %q", h.ServerName, sni)
	}
	if got := alpnList(t, h.ALPN); strings.Join(got, ",") != strings.Join(alpn, ",") || (got == nil) != (alpn == nil) {
		t.Errorf("ALPN = %q, want %q", got, alpn)
	}
	if h.Len != wantLen {
		t.Errorf("Len = %d, want %d", h.Len, wantLen)
	}
}

func TestParseClientHelloCaptures(t *testing.T) {
	for _, c := range helloCaptures {
		t.Run(c.file, func(t *testing.T) {
			data := readCapture(t, c.file)
			var h ClientHello
			if err := ParseClientHello(data, 0, &h); err != nil {
				t.Fatal(err)
			}
			checkHello(t, &h, c.sni, c.alpn, len(data))

			// Bytes after the ClientHello (early data, the next flight) are
			// not part of it.
			more := append(append([]byte(nil), data...), 0x17, 3, 3, 0, 1, 0)
			if err := ParseClientHello(more, 0, &h); err != nil {
				t.Fatal(err)
			}
			checkHello(t, &h, c.sni, c.alpn, len(data))
		})
	}
}

func TestGoCaptureIsLarge(t *testing.T) {
	// The benchmark relies on the ML-KEM key share making this > 1.5 KB.
	if n := len(readCapture(t, "go.bin")); n < 1500 {
		t.Fatalf("go.bin is %d bytes; recapture with a Go whose default key share is X25519MLKEM768", n)
	}
}

func TestParseClientHelloByteAtATime(t *testing.T) {
	for _, c := range helloCaptures {
		for _, size := range []int{0, 64} { // 0: as captured
			data := readCapture(t, c.file)
			if size > 0 {
				data = recordize(handshakeMessage(data), size)
			}
			var h ClientHello
			for k := 0; k < len(data); k++ {
				if err := ParseClientHello(data[:k], 0, &h); err != ErrNeedMore {
					t.Fatalf("%s/%d: prefix %d of %d: err = %v, want ErrNeedMore", c.file, size, k, len(data), err)
				}
			}
			if err := ParseClientHello(data, 0, &h); err != nil {
				t.Fatalf("%s/%d: %v", c.file, size, err)
			}
			checkHello(t, &h, c.sni, c.alpn, len(data))
		}
	}
}

func TestParseClientHelloSplitRecords(t *testing.T) {
	for _, c := range helloCaptures {
		msg := handshakeMessage(readCapture(t, c.file))
		// 1..3 split the handshake header itself across records.
		for _, size := range []int{1, 2, 3, 4, 5, 64, 100, 512, 1 << 14} {
			data := recordize(msg, size)
			var h ClientHello
			if err := ParseClientHello(data, 0, &h); err != nil {
				t.Fatalf("%s/%d: %v", c.file, size, err)
			}
			checkHello(t, &h, c.sni, c.alpn, len(data))
			if size < len(msg) && h.ServerName != nil && !liesWithin(h.ServerName, h.buf) {
				t.Errorf("%s/%d: ServerName does not alias the reassembly buffer", c.file, size)
			}
		}
	}
}

func TestParseClientHelloReuse(t *testing.T) {
	var h ClientHello
	split := recordize(handshakeMessage(readCapture(t, "go.bin")), 64)
	nosni := readCapture(t, "openssl-nosni.bin")
	for i := 0; i < 3; i++ {
		if err := ParseClientHello(split, 0, &h); err != nil || string(h.ServerName) != "app1.test" {
			t.Fatalf("split: %v %q", err, h.ServerName)
		}
		if err := ParseClientHello(nosni, 0, &h); err != nil || h.ServerName != nil || h.ALPN != nil || h.Len != len(nosni) {
			t.Fatalf("nosni: %v %q %q %d", err, h.ServerName, h.ALPN, h.Len)
		}
		if err := ParseClientHello([]byte("GET"), 0, &h); err != ErrNotTLS || h.Len != 0 {
			t.Fatalf("GET: %v %d", err, h.Len)
		}
		h.Reset()
		if h.ServerName != nil || h.ALPN != nil || h.Len != 0 {
			t.Fatal("Reset left fields set")
		}
	}
}

// TestClientHelloMatchesCryptoTLS checks our SNI/ALPN against what Go's TLS
// server sees in the same bytes, also when re-recorded into small records.
func TestClientHelloMatchesCryptoTLS(t *testing.T) {
	for _, c := range helloCaptures {
		for _, size := range []int{0, 64} {
			data := readCapture(t, c.file)
			if size > 0 {
				data = recordize(handshakeMessage(data), size)
			}
			var info *tls.ClientHelloInfo
			stop := errors.New("stop")
			cfg := &tls.Config{GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
				info = chi
				return nil, stop
			}}
			conn := tls.Server(&helloReplayConn{r: bytes.NewReader(data)}, cfg)
			if err := conn.Handshake(); !errors.Is(err, stop) {
				t.Fatalf("%s/%d: crypto/tls handshake: %v", c.file, size, err)
			}
			var h ClientHello
			if err := ParseClientHello(data, 0, &h); err != nil {
				t.Fatal(err)
			}
			if string(h.ServerName) != info.ServerName {
				t.Errorf("%s/%d: ServerName %q, crypto/tls %q", c.file, size, h.ServerName, info.ServerName)
			}
			if got := strings.Join(alpnList(t, h.ALPN), ","); got != strings.Join(info.SupportedProtos, ",") {
				t.Errorf("%s/%d: ALPN %q, crypto/tls %q", c.file, size, got, info.SupportedProtos)
			}
		}
	}
}

// helloReplayConn plays recorded client bytes to a tls.Server and drops its output.
type helloReplayConn struct{ r io.Reader }

func (c *helloReplayConn) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c *helloReplayConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c *helloReplayConn) Close() error                     { return nil }
func (c *helloReplayConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *helloReplayConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *helloReplayConn) SetDeadline(time.Time) error      { return nil }
func (c *helloReplayConn) SetReadDeadline(time.Time) error  { return nil }
func (c *helloReplayConn) SetWriteDeadline(time.Time) error { return nil }

// Builders for synthetic ClientHellos.

func chU16(n int) []byte { return []byte{byte(n >> 8), byte(n)} }

func chCat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func chExt(typ int, data []byte) []byte { return chCat(chU16(typ), chU16(len(data)), data) }

func chSNIExt(names ...string) []byte {
	var list []byte
	for _, n := range names {
		list = chCat(list, []byte{0}, chU16(len(n)), []byte(n))
	}
	return chExt(extServerName, chCat(chU16(len(list)), list))
}

func chALPNExt(protos ...string) []byte {
	var list []byte
	for _, p := range protos {
		list = chCat(list, []byte{byte(len(p))}, []byte(p))
	}
	return chExt(extALPN, chCat(chU16(len(list)), list))
}

// chPrelude is legacy_version, random, an empty session_id, one cipher suite
// and the null compression method.
var chPrelude = chCat([]byte{3, 3}, make([]byte, 32), []byte{0}, chU16(2), []byte{0x13, 0x01}, []byte{1, 0})

// bodyWith is a ClientHello body with the given extensions.
func chBody(exts ...[]byte) []byte {
	e := chCat(exts...)
	return chCat(chPrelude, chU16(len(e)), e)
}

// record wraps a ClientHello body in a handshake header and one record.
func chRecord(body []byte) []byte {
	msg := chCat([]byte{typeClientHello, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body)
	return chCat([]byte{recordHandshake, 3, 1}, chU16(len(msg)), msg)
}

// chSSLv2 is an SSLv2-format ClientHello offering TLS 1.0 with the given
// field lengths (RFC 5246 E.2).
func chSSLv2(suites, sid, challenge int) []byte {
	body := chCat([]byte{typeClientHello, 3, 1}, chU16(suites), chU16(sid), chU16(challenge),
		bytes.Repeat([]byte{0, 0, 0x2f}, suites/3), make([]byte, suites%3), make([]byte, sid), bytes.Repeat([]byte{7}, challenge))
	return chCat([]byte{0x80 | byte(len(body)>>8), byte(len(body))}, body)
}

func withSSLv2Len(b []byte, n int) []byte {
	b = append([]byte(nil), b...)
	b[0], b[1] = 0x80|byte(n>>8), byte(n)
	return append(b, make([]byte, n+2-len(b))...)
}

// TestParseClientHelloInterop: ClientHellos OpenSSL accepts and an earlier
// version refused: over 64 KiB within a 1 MiB limit, thousands of
// extensions (repeated unknown types too), tens of thousands of cipher
// suites, the SSLv2 compatibility format, and SNI bytes OpenSSL takes.
func TestParseClientHelloInterop(t *testing.T) {
	var exts [][]byte
	for i := 0; i < 5000; i++ {
		exts = append(exts, chExt(0x1000+i%3000, nil)) // 2000 repeats of unknown types
	}
	exts = append(exts, chExt(200, nil), chExt(200, nil), chSNIExt("many.test"))
	suites := make([]byte, 2*32767) // the most the 16-bit length allows
	bigExts := chCat(chSNIExt("suites.test"), chExt(21, make([]byte, 4000)))
	bigSuites := chCat([]byte{3, 3}, make([]byte, 32), []byte{0}, chU16(len(suites)), suites, []byte{1, 0}, chU16(len(bigExts)), bigExts)
	for _, c := range []struct {
		name   string
		data   []byte
		maxLen int
		sni    string
		sslv2  bool
	}{
		{"5003 extensions", recordize(chMsg(chBody(exts...)), 1<<14), 1 << 20, "many.test", false},
		{"32767 cipher suites, 70 KB", recordize(chMsg(bigSuites), 1<<14), 1 << 20, "suites.test", false},
		{"SSLv2 compatibility format", chSSLv2(3*40, 0, 32), 0, "", true},
		{"SSLv2 compatibility with session id", chSSLv2(3, 16, 16), 0, "", true},
		{"SNI with a trailing dot", chRecord(chBody(chSNIExt("a.test."))), 0, "a.test.", false},
		{"SNI with a space", chRecord(chBody(chSNIExt("a test"))), 0, "a test", false},
		{"SNI not ASCII", chRecord(chBody(chSNIExt("bücher.test"))), 0, "bücher.test", false},
		{"empty SNI is none", chRecord(chBody(chSNIExt(""))), 0, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var h ClientHello
			if err := ParseClientHello(c.data, c.maxLen, &h); err != nil {
				t.Fatal(err)
			}
			if string(h.ServerName) != c.sni || (c.sni == "") != (h.ServerName == nil) || h.SSLv2 != c.sslv2 || h.Len != len(c.data) {
				t.Fatalf("SNI %q SSLv2 %v Len %d of %d", h.ServerName, h.SSLv2, h.Len, len(c.data))
			}
			if a := testing.AllocsPerRun(10, func() { _ = ParseClientHello(c.data, c.maxLen, &h) }); a != 0 {
				t.Fatalf("%v allocations per parse", a)
			}
			if c.maxLen > 0 {
				if err := ParseClientHello(c.data, len(c.data)-1, &h); !errors.Is(err, ErrTooLarge) {
					t.Fatalf("one byte over the limit: %v", err)
				}
			}
		})
	}
}

// chMsg is a ClientHello handshake message of any size, for recordize.
func chMsg(body []byte) []byte {
	return chCat([]byte{typeClientHello, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body)
}

func TestParseClientHelloSynthetic(t *testing.T) {
	long := strings.Repeat("a", 255)
	valid := []struct {
		name string
		data []byte
		sni  string
		alpn []string
	}{
		{"no extensions", chRecord(chPrelude), "", nil},
		{"empty extensions block", chRecord(chBody()), "", nil},
		{"sni only", chRecord(chBody(chSNIExt("x.test"))), "x.test", nil},
		{"255-byte name", chRecord(chBody(chSNIExt(long))), long, nil},
		{"alpn only", chRecord(chBody(chALPNExt("h2"))), "", []string{"h2"}},
		{"both and psk last", chRecord(chBody(chALPNExt("a", "bc"), chSNIExt("x.test"), chExt(extPreSharedKey, []byte{1}))), "x.test", []string{"a", "bc"}},
		{"grease and high types", chRecord(chBody(chExt(0x0a0a, nil), chExt(0xff01, []byte{0}), chExt(0xfafa, nil), chSNIExt("g.test"))), "g.test", nil},
		{"32-byte session id", chRecord(chCat([]byte{3, 3}, make([]byte, 32), []byte{32}, make([]byte, 32), chU16(2), []byte{0, 1}, []byte{1, 0})), "", nil},
	}
	for _, c := range valid {
		t.Run(c.name, func(t *testing.T) {
			var h ClientHello
			if err := ParseClientHello(c.data, 0, &h); err != nil {
				t.Fatal(err)
			}
			checkHello(t, &h, c.sni, c.alpn, len(c.data))
		})
	}
}

func TestParseClientHelloErrors(t *testing.T) {
	good := chRecord(chBody(chSNIExt("x.test")))
	twoRecords := recordize(handshakeMessage(good), 20)
	withRecordLen := func(b []byte, n int) []byte {
		b = append([]byte(nil), b...)
		b[3], b[4] = byte(n>>8), byte(n)
		return b
	}
	setByte := func(b []byte, i int, v byte) []byte {
		b = append([]byte(nil), b...)
		b[i] = v
		return b
	}
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrNeedMore},
		{"http", []byte("GET / HTTP/1.1\r\n"), ErrNotTLS},
		{"first byte decides", []byte("G"), ErrNotTLS},
		{"alert record", []byte{21, 3, 1, 0, 2, 2, 40}, ErrNotTLS},
		{"zero byte", []byte{0}, ErrNotTLS},
		{"record major 2", []byte{22, 2}, ErrNotTLS},
		{"sslv2 needs 3 bytes", []byte{0x80, 0x2e}, ErrNeedMore},
		{"sslv2 offering SSL 2.0", []byte{0x80, 0x2e, 1, 0, 2, 0, 0x15}, ErrSSLv2},
		{"sslv2 compat, incomplete", []byte{0x80, 0x2e, 1, 3, 1, 0, 0x15}, ErrNeedMore},
		{"sslv2 compat, short record", chSSLv2(3, 0, 16)[:2:2], ErrNeedMore},
		{"sslv2 compat, record below 9", []byte{0x80, 0x08, 1, 3, 1, 0, 0, 0, 0, 0}, errSSLv2Length},
		{"sslv2 compat, lengths exceed record", withSSLv2Len(chSSLv2(3, 0, 16), 40), errSSLv2Length},
		{"sslv2 compat, no cipher specs", chSSLv2(0, 0, 16), errSSLv2Fields},
		{"sslv2 compat, cipher specs not of 3", chSSLv2(1, 0, 16), errSSLv2Fields},
		{"sslv2 compat, session id 33", chSSLv2(3, 33, 16), errSSLv2Fields},
		{"sslv2 compat, no challenge", chSSLv2(3, 0, 0), errSSLv2Fields},
		{"sslv2 header, not hello", []byte{0x80, 0x2e, 2}, ErrNotTLS},
		{"record too long", []byte{22, 3, 1, 0x40, 0x01}, errRecordTooLong},
		{"record max ok", []byte{22, 3, 1, 0x40, 0x00}, ErrNeedMore},
		{"zero-length record", []byte{22, 3, 1, 0, 0}, errRecordEmpty},
		{"not a ClientHello", []byte{22, 3, 1, 0, 4, 2}, errNotClientHello},
		{"hello over the limit", []byte{22, 3, 1, 0x40, 0, 1, 0x0f, 0xff, 0xf8}, errHelloTooLarge},
		{"hello at the limit", []byte{22, 3, 1, 0x40, 0, 1, 0x0f, 0xff, 0xf7}, ErrNeedMore},
		{"record longer than hello", withRecordLen(append(good, 0), len(good)-5+1), errRecordBoundary},
		{"boundary known before bytes", withRecordLen(good[:9], len(good)-5+1), errRecordBoundary},
		{"record shorter than hello", withRecordLen(good, 10), errRecordType},
		{"second record app data", setByte(twoRecords, 25, 23), errRecordType},
		{"second record type from 1 byte", setByte(twoRecords, 25, 23)[:26], errRecordType},
		{"second record major 2", setByte(twoRecords, 26, 2), errRecordVersion},
		{"second record major from 2 bytes", setByte(twoRecords, 26, 2)[:27], errRecordVersion},
		{"second record empty", chCat(twoRecords[:25], []byte{22, 3, 1, 0, 0}), errRecordEmpty},
		{"second record too long", chCat(twoRecords[:25], []byte{22, 3, 1, 0x40, 1}), errRecordTooLong},
		{"type in second record", chCat([]byte{22, 3, 1, 0, 1, 1}, []byte{22, 3, 1, 0, 1, 1}), ErrNeedMore},
		{"type split, wrong", chCat([]byte{22, 3, 1, 0, 1, 2}), errNotClientHello},
		{"empty body", chRecord(nil), errShortHello},
		{"short random", chRecord(make([]byte, 20)), errShortHello},
		{"legacy version", chRecord(chCat([]byte{2, 0}, chPrelude[2:])), errLegacyVersion},
		{"session id 33", chRecord(chCat([]byte{3, 3}, make([]byte, 32), []byte{33}, make([]byte, 33), chU16(2), []byte{0, 1}, []byte{1, 0})), errSessionID},
		{"session id truncated", chRecord(chCat([]byte{3, 3}, make([]byte, 32), []byte{10}, make([]byte, 5))), errSessionID},
		{"no session id byte", chRecord(chCat([]byte{3, 3}, make([]byte, 32))), errSessionID},
		{"suites truncated", chRecord(chCat([]byte{3, 3}, make([]byte, 32), []byte{0}, chU16(10), []byte{0, 1})), errCipherSuites},
		{"suites odd", chRecord(chCat([]byte{3, 3}, make([]byte, 32), []byte{0}, chU16(3), []byte{0, 1, 2}, []byte{1, 0})), errCipherSuitesLen},
		{"suites empty", chRecord(chCat([]byte{3, 3}, make([]byte, 32), []byte{0}, chU16(0), []byte{1, 0})), errCipherSuitesLen},
		{"compression empty", chRecord(chCat([]byte{3, 3}, make([]byte, 32), []byte{0}, chU16(2), []byte{0, 1}, []byte{0})), errCompression},
		{"compression truncated", chRecord(chCat([]byte{3, 3}, make([]byte, 32), []byte{0}, chU16(2), []byte{0, 1}, []byte{3, 0})), errCompression},
		{"compression missing", chRecord(chCat([]byte{3, 3}, make([]byte, 32), []byte{0}, chU16(2), []byte{0, 1})), errCompression},
		{"extensions length byte", chRecord(chCat(chPrelude, []byte{0})), errExtensionsLen},
		{"extensions too long", chRecord(chCat(chPrelude, chU16(10), chExt(1, nil))), errExtensionsLen},
		{"extensions trailing", chRecord(chCat(chPrelude, chU16(4), chExt(1, nil), []byte{0})), errExtensionsLen},
		{"extension header truncated", chRecord(chCat(chPrelude, chU16(3), []byte{0, 1, 0})), errExtension},
		{"extension data truncated", chRecord(chCat(chPrelude, chU16(6), chU16(1), chU16(5), []byte{1, 2})), errExtension},
		{"duplicate low", chRecord(chBody(chExt(5, nil), chExt(5, nil))), errDupExtension},
		{"duplicate renegotiation_info", chRecord(chBody(chExt(0xff01, []byte{0}), chExt(10, nil), chExt(0xff01, []byte{0}))), errDupExtension},
		{"duplicate next_protocol_negotiation", chRecord(chBody(chExt(13172, nil), chExt(13172, nil))), errDupExtension},
		{"duplicate sni", chRecord(chBody(chSNIExt("a"), chSNIExt("a"))), errDupExtension},
		{"duplicate alpn", chRecord(chBody(chALPNExt("h2"), chSNIExt("a"), chALPNExt("h2"))), errDupExtension},
		{"duplicate key_share", chRecord(chBody(chExt(51, nil), chExt(51, nil))), errDupExtension},
		{"psk not last", chRecord(chBody(chExt(extPreSharedKey, []byte{1}), chSNIExt("x.test"))), errPSKNotLast},
		{"sni empty ext", chRecord(chBody(chExt(extServerName, nil))), errSNIList},
		{"sni list too long", chRecord(chBody(chExt(extServerName, chCat(chU16(9), []byte{0}, chU16(1), []byte("a"))))), errSNIList},
		{"sni trailing byte", chRecord(chBody(chExt(extServerName, chCat(chU16(4), []byte{0}, chU16(1), []byte("a"), []byte{0})))), errSNIList},
		{"sni list empty", chRecord(chBody(chExt(extServerName, chU16(0)))), errSNIEmpty},
		{"sni type 1", chRecord(chBody(chExt(extServerName, chCat(chU16(4), []byte{1}, chU16(1), []byte("a"))))), errSNIType},
		{"sni name truncated", chRecord(chBody(chExt(extServerName, chCat(chU16(4), []byte{0}, chU16(5), []byte("a"))))), errSNITrunc},
		{"sni name length byte", chRecord(chBody(chExt(extServerName, chCat(chU16(2), []byte{0, 0})))), errSNITrunc},
		{"sni name 256", chRecord(chBody(chSNIExt(strings.Repeat("a", 256)))), errSNILen},
		{"sni two names", chRecord(chBody(chSNIExt("a.test", "b.test"))), errSNIMultiple},
		{"sni NUL", chRecord(chBody(chSNIExt("a\x00test"))), errSNIChar},
		{"alpn empty ext", chRecord(chBody(chExt(extALPN, nil))), errALPNList},
		{"alpn list too long", chRecord(chBody(chExt(extALPN, chCat(chU16(5), []byte{2}, []byte("h2"))))), errALPNList},
		{"alpn list empty", chRecord(chBody(chExt(extALPN, chU16(0)))), errALPNEmpty},
		{"alpn empty proto", chRecord(chBody(chALPNExt("h2", ""))), errALPNProto},
		{"alpn proto truncated", chRecord(chBody(chExt(extALPN, chCat(chU16(3), []byte{5}, []byte("h2"))))), errALPNProto},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var h ClientHello
			err := ParseClientHello(c.data, 1<<20, &h)
			if err != c.want {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if err != nil && h.Len != 0 {
				t.Errorf("Len = %d on error", h.Len)
			}
			// Every prefix answers ErrNeedMore or the same verdict.
			for k := 0; k < len(c.data); k++ {
				if e := ParseClientHello(c.data[:k], 1<<20, &h); e != ErrNeedMore && e != c.want {
					t.Fatalf("prefix %d: err = %v, want ErrNeedMore or %v", k, e, c.want)
				}
			}
		})
	}
	// Records that together pass the limit, each small: refused as soon as
	// the record header that passes it is in.
	small := recordize(chCat([]byte{typeClientHello, 0, 0x3e, 0x80}, make([]byte, 16000)), 8)
	var h ClientHello
	for k := 0; k < len(small); k += 13 {
		err := ParseClientHello(small[:k], 0, &h)
		if want := k > DefaultMaxHelloLen; (err == errHelloTooLarge) != want || !want && err != ErrNeedMore {
			t.Fatalf("%d bytes of 8-byte records: %v", k, err)
		}
	}
	if err := ParseClientHello([]byte{0xc0, 0x00, 1, 3, 1}, 0, &h); err != errHelloTooLarge {
		t.Fatalf("SSLv2-format record over the limit: %v", err)
	}
}

func TestErrorClasses(t *testing.T) {
	for _, c := range []struct {
		err, class error
	}{
		{ErrNotTLS, ErrNotThisProtocol},
		{ErrSSLv2, ErrNotThisProtocol},
		{ErrNotHTTP, ErrNotThisProtocol},
		{ErrHTTP2Preface, ErrNotThisProtocol},
		{errRecordTooLong, ErrMalformed},
		{errSNIChar, ErrMalformed},
		{frameErrBareLF, ErrMalformed},
		{frameErrCLAndTE, ErrMalformed},
	} {
		if !errors.Is(c.err, c.class) {
			t.Errorf("%v is not %v", c.err, c.class)
		}
		other := ErrMalformed
		if c.class == ErrMalformed {
			other = ErrNotThisProtocol
		}
		if errors.Is(c.err, other) || errors.Is(c.err, ErrNeedMore) {
			t.Errorf("%v is also %v or ErrNeedMore", c.err, other)
		}
	}
	if got := ErrSSLv2.Error(); !strings.Contains(got, "SSL 2.0 ClientHello not offering TLS") {
		t.Errorf("ErrSSLv2 message %q", got)
	}
	if got := errRecordTooLong.Error(); got != "parse ClientHello: record length exceeds 2^14" {
		t.Errorf("message %q", got)
	}
}

func TestNextProtocol(t *testing.T) {
	cases := []struct {
		in   string
		want []string
		ok   bool // whole list consumed without error
	}{
		{"", nil, true},
		{"\x02h2", []string{"h2"}, true},
		{"\x02h2\x08http/1.1", []string{"h2", "http/1.1"}, true},
		{"\x00", nil, false},
		{"\x05h2", nil, false},
		{"\x02h2\x09http/1.1", []string{"h2"}, false},
	}
	if p, rest, ok := NextProtocol(nil); ok || p != nil || rest != nil {
		t.Errorf("NextProtocol(nil) = %q %q %v", p, rest, ok)
	}
	for _, c := range cases {
		var got []string
		list := []byte(c.in)
		ok := true
		for len(list) > 0 {
			p, rest, more := NextProtocol(list)
			if !more {
				ok = false
				break
			}
			if cap(p) != len(p) {
				t.Errorf("%q: proto has spare capacity", c.in)
			}
			got = append(got, string(p))
			list = rest
		}
		if strings.Join(got, ",") != strings.Join(c.want, ",") || ok != c.ok {
			t.Errorf("NextProtocol(%q) = %q ok=%v, want %q ok=%v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestParseClientHelloAllocs(t *testing.T) {
	whole := readCapture(t, "go.bin")
	split := recordize(handshakeMessage(whole), 64)
	for _, c := range []struct {
		name string
		data []byte
		want error
	}{
		{"whole", whole, nil},
		{"split", split, nil},
		{"need more", split[:len(split)-1], ErrNeedMore},
		{"not tls", []byte("GET /"), ErrNotTLS},
		{"malformed", chRecord(chBody(chSNIExt("a\x00test"))), errSNIChar},
	} {
		var h ClientHello
		_ = ParseClientHello(c.data, 0, &h) // grow the scratch once
		allocs := testing.AllocsPerRun(100, func() {
			if err := ParseClientHello(c.data, 0, &h); err != c.want {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocs per run, want 0", c.name, allocs)
		}
	}
}

// within reports whether sub lies inside buf's memory.
func liesWithin(sub, buf []byte) bool {
	if len(sub) == 0 {
		return true
	}
	s, b := uintptr(unsafe.Pointer(unsafe.SliceData(sub))), uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	return s >= b && s+uintptr(len(sub)) <= b+uintptr(len(buf))
}

func FuzzParseClientHello(f *testing.F) {
	for _, c := range helloCaptures {
		data := readCapture(f, c.file)
		f.Add(data)
		f.Add(recordize(handshakeMessage(data), 64))
	}
	f.Add(chRecord(chPrelude))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var h ClientHello
		err := ParseClientHello(data, 0, &h)
		if err == nil {
			if h.Len <= 0 || h.Len > len(data) {
				t.Fatalf("Len %d, input %d", h.Len, len(data))
			}
			for _, s := range [][]byte{h.ServerName, h.ALPN} {
				if !liesWithin(s, data[:h.Len]) && !liesWithin(s, h.buf) {
					t.Fatalf("slice %q outside input and scratch", s)
				}
			}
			if h.ServerName != nil {
				if len(h.ServerName) == 0 || len(h.ServerName) > 255 || h.SSLv2 {
					t.Fatalf("ServerName length %d", len(h.ServerName))
				}
				if bytes.IndexByte(h.ServerName, 0) >= 0 {
					t.Fatalf("ServerName %q", h.ServerName)
				}
			}
			for l := h.ALPN; len(l) > 0; {
				_, rest, ok := NextProtocol(l)
				if !ok {
					t.Fatalf("accepted ALPN %q does not iterate", h.ALPN)
				}
				l = rest
			}
		} else if !errors.Is(err, ErrNeedMore) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNotThisProtocol) && !errors.Is(err, ErrTooLarge) {
			t.Fatalf("unclassified error %v", err)
		}
		if err != nil && h.Len != 0 {
			t.Fatalf("Len %d with error %v", h.Len, err)
		}

		// The same bytes as a bare handshake message (QUIC's CRYPTO stream):
		// classified, and a result lies within the input.
		var m ClientHello
		if merr := ParseClientHelloMessage(data, 0, &m); merr == nil {
			if m.Len != len(data) || (m.ServerName != nil && !liesWithin(m.ServerName, data)) {
				t.Fatalf("bare message: Len %d of %d, ServerName %q", m.Len, len(data), m.ServerName)
			}
		} else if !errors.Is(merr, ErrNeedMore) && !errors.Is(merr, ErrMalformed) && !errors.Is(merr, ErrTooLarge) {
			t.Fatalf("bare message: unclassified error %v", merr)
		}

		// Prefix consistency: checks run in stream order on bytes already
		// present, so a prefix yields ErrNeedMore or the identical verdict;
		// a prefix that still holds the whole ClientHello parses the same.
		sni, alpn, n := string(h.ServerName), string(h.ALPN), h.Len
		// All prefixes of short inputs, about 32 of long ones plus the
		// ones just short of the end and of the message.
		step := 1
		if len(data) > 128 {
			step = len(data)/32 + 1
		}
		var p ClientHello
		for k := 0; k < len(data); k = fuzzNextPrefix(k, step, len(data), n) {
			e := ParseClientHello(data[:k], 0, &p)
			switch {
			case err == nil && k >= n:
				if e != nil || string(p.ServerName) != sni || string(p.ALPN) != alpn || p.Len != n {
					t.Fatalf("prefix %d: %v %q %q %d, full: %q %q %d", k, e, p.ServerName, p.ALPN, p.Len, sni, alpn, n)
				}
			case err == nil:
				if e != ErrNeedMore {
					t.Fatalf("prefix %d of a %d-byte ClientHello: %v", k, n, e)
				}
			case e != ErrNeedMore && e != err:
				t.Fatalf("prefix %d: %v, full input: %v", k, e, err)
			}
		}
	})
}

func BenchmarkParseClientHello(b *testing.B) {
	data := readCapture(b, "go.bin")
	var h ClientHello
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := ParseClientHello(data, 0, &h); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseClientHelloSplit(b *testing.B) {
	data := recordize(handshakeMessage(readCapture(b, "go.bin")), 64)
	var h ClientHello
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := ParseClientHello(data, 0, &h); err != nil {
			b.Fatal(err)
		}
	}
}

// nextPrefix steps k through prefix lengths below n, stopping also at
// end-1 and n-1 so the last byte of a message and of the input get checked.
func fuzzNextPrefix(k, step, n, end int) int {
	next := k + step
	for _, p := range [2]int{end - 1, n - 1} {
		if p > k && p < next {
			next = p
		}
	}
	return next
}

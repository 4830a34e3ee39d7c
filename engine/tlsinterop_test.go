package engine

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
	"github.com/portier/portier/internal/testutil"
)

// helloBytes builds a TLS 1.2-style ClientHello with the given extensions
// (type, body pairs) in records of at most 16 KiB.
func helloBytes(suites int, exts ...[]byte) []byte {
	u16 := func(n int) []byte { return []byte{byte(n >> 8), byte(n)} }
	var e []byte
	for _, x := range exts {
		e = append(e, x...)
	}
	body := append([]byte{3, 3}, make([]byte, 32)...)
	body = append(body, 0)
	body = append(body, u16(2*suites)...)
	for i := 0; i < suites; i++ {
		body = append(body, 0xc0, 0x2f)
	}
	body = append(body, 1, 0)
	body = append(body, u16(len(e))...)
	body = append(body, e...)
	msg := append([]byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
	var out []byte
	for len(msg) > 0 {
		n := min(len(msg), 1<<14)
		out = append(out, 22, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

func extBytes(typ int, body []byte) []byte {
	return append([]byte{byte(typ >> 8), byte(typ), byte(len(body) >> 8), byte(len(body))}, body...)
}

func sniExt(name string) []byte {
	n := len(name)
	return extBytes(0, append([]byte{byte((n + 3) >> 8), byte(n + 3), 0, byte(n >> 8), byte(n)}, name...))
}

// sslv2Hello is an SSLv2-format ClientHello offering TLS 1.2.
func sslv2Hello() []byte {
	body := []byte{1, 3, 3, 0, 6, 0, 0, 0, 16, 0, 0xc0, 0x2f, 0, 0, 0x2f}
	body = append(body, bytes.Repeat([]byte{7}, 16)...)
	return append([]byte{0x80 | byte(len(body)>>8), byte(len(body))}, body...)
}

// recordingBackend reads n bytes, keeps them and answers "ok".
func recordingBackend(t *testing.T, n int, got chan<- []byte) string {
	return testutil.RawBackend(t, func(c *net.TCPConn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, n)
		if _, err := io.ReadFull(c, b); err != nil {
			got <- nil
			return
		}
		got <- b
		_, _ = c.Write([]byte("ok"))
	})
}

// TestTLSInterop: ClientHellos OpenSSL accepts reach the backend byte for
// byte: one of about 125 KB (5,000 extensions, the most cipher suites) with
// max_header_bytes at its 1 MiB maximum, and an SSLv2-format one, which has
// no SNI and goes to the default route.
func TestTLSInterop(t *testing.T) {
	var exts [][]byte
	for i := 0; i < 5000; i++ {
		// 60 KB: the extensions block has a 16-bit length.
		exts = append(exts, extBytes(0x1000+i%3000, []byte{1, 2, 3, 4, 5, 6, 7, 8}))
	}
	exts = append(exts, sniExt("big.test"))
	big := helloBytes(32767, exts...)
	v2 := sslv2Hello()
	got := make(chan []byte, 2)
	bigBE := recordingBackend(t, len(big), got)
	v2BE := recordingBackend(t, len(v2), got)
	p := startProxy(t, []balancer.RouteSpec{
		{Name: "big.test", Backends: []string{"tls://" + bigBE}},
		{Name: "fallback.test", Backends: []string{"tls://" + v2BE}},
	}, "fallback.test", func(o *Options) { o.MaxHeaderBytes = 1 << 20 })
	for _, tc := range []struct {
		name  string
		hello []byte
	}{
		{"125 KB ClientHello", big},
		{"SSLv2-format ClientHello to the default route", v2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", p.tlsAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(tc.hello); err != nil {
				t.Fatal(err)
			}
			answer := make([]byte, 2)
			if _, err := io.ReadFull(c, answer); err != nil || string(answer) != "ok" {
				t.Fatalf("answer %q, %v", answer, err)
			}
			if b := <-got; !bytes.Equal(b, tc.hello) {
				t.Fatalf("the backend got %d bytes, not the %d-byte ClientHello", len(b), len(tc.hello))
			}
		})
	}
}

// TestTLSRefusedClasses: what is refused gets the README's alert.
func TestTLSRefusedClasses(t *testing.T) {
	be := recordingBackend(t, 1, make(chan []byte, 8))
	p := startProxy(t, []balancer.RouteSpec{{Name: "one.test", Backends: []string{"tls://" + be}}}, "",
		func(o *Options) { o.MaxHeaderBytes = 4096 })
	dupSNI := helloBytes(1, sniExt("one.test"), sniExt("one.test"))
	for _, tc := range []struct {
		name  string
		bytes []byte
		alert int
	}{
		{"declared over max_header_bytes", []byte{22, 3, 1, 0x10, 0, 1, 0, 0x10, 0}, 47},
		{"records over max_header_bytes", helloBytes(1, extBytes(21, make([]byte, 5000)), sniExt("one.test")), 47},
		{"duplicate SNI", dupSNI, 50},
		{"NUL in SNI", helloBytes(1, sniExt("one\x00.test")), 50},
		{"SSLv2-format without a default route", sslv2Hello(), 112},
		{"SSL 2.0 itself", []byte{0x80, 0x2e, 1, 0, 2, 0, 0x15}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", p.tlsAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tc.bytes); err != nil {
				t.Fatal(err)
			}
			if got := readAlert(t, c); got != tc.alert {
				t.Errorf("alert %d, want %d", got, tc.alert)
			}
		})
	}
}

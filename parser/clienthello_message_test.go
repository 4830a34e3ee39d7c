package parser

import (
	"errors"
	"testing"
)

// A bare handshake message (QUIC's CRYPTO stream) parses like the records
// that carry it.
func TestParseClientHelloMessage(t *testing.T) {
	for _, c := range helloCaptures {
		t.Run(c.file, func(t *testing.T) {
			msg := handshakeMessage(readCapture(t, c.file))
			var h ClientHello
			if err := ParseClientHelloMessage(msg, 0, &h); err != nil {
				t.Fatal(err)
			}
			checkHello(t, &h, c.sni, c.alpn, len(msg))
			for _, tc := range []struct {
				name string
				in   []byte
				want error
			}{
				{"empty", nil, ErrNeedMore},
				{"header only", msg[:4], ErrNeedMore},
				{"truncated", msg[:len(msg)-1], ErrNeedMore},
				{"trailing", append(append([]byte(nil), msg...), 0), errMessageTrailing},
				{"server hello", append([]byte{2}, msg[1:]...), errNotClientHello},
				{"too long", []byte{1, 1, 0, 1}, errHelloTooLarge},
			} {
				if err := ParseClientHelloMessage(tc.in, 0, &h); !errors.Is(err, tc.want) {
					t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
				}
				if h.ServerName != nil || h.Len != 0 {
					t.Errorf("%s: results beside an error", tc.name)
				}
			}
		})
	}
}

func TestParseClientHelloMessageAllocs(t *testing.T) {
	msg := handshakeMessage(readCapture(t, "go.bin"))
	var h ClientHello
	if n := testing.AllocsPerRun(100, func() { _ = ParseClientHelloMessage(msg, 0, &h) }); n != 0 {
		t.Errorf("%.1f allocations", n)
	}
}

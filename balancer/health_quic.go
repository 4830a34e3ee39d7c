package balancer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// quicProbe is a client Initial-sized long-header packet of a reserved
// version (0x?a?a?a?a, RFC 9000 15): every QUIC server answers it with a
// Version Negotiation packet (RFC 9000 6.1) without creating any state, so it
// checks that a QUIC stack listens without a handshake. It is padded to
// 1,200 bytes because servers ignore shorter Initials.
var quicProbe = func() []byte {
	p := make([]byte, 1200)
	copy(p, []byte{0xc0, 0x1a, 0x2a, 0x3a, 0x4a, // long header, reserved version
		8, 'p', 'o', 'r', 't', 'i', 'e', 'r', '!', // DCID
		0}) // empty SCID
	return p
}()

var errNoVersionNegotiation = errors.New("no QUIC version negotiation answer")

// probeQUIC checks a quic:// backend: a datagram answered by a Version
// Negotiation packet passes; an ICMP port unreachable (ECONNREFUSED on the
// connected socket) or silence until ctx's deadline fails.
func probeQUIC(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Close()
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(5 * time.Second)
	}
	if err := c.SetDeadline(dl); err != nil {
		return err
	}
	if _, err := c.Write(quicProbe); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	var buf [1500]byte
	for {
		n, err := c.Read(buf[:])
		if err != nil {
			return fmt.Errorf("quic check: %w", err)
		}
		// Version Negotiation: long header, version 0, echoing our DCID as its SCID.
		if n >= 7 && buf[0]&0x80 != 0 && buf[1]|buf[2]|buf[3]|buf[4] == 0 {
			return nil
		}
		if ctx.Err() != nil {
			return errNoVersionNegotiation
		}
	}
}

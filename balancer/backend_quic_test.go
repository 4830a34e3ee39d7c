package balancer

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseBackendQUIC(t *testing.T) {
	spec, err := ParseBackend("quic://127.0.0.1?weight=3")
	if err != nil {
		t.Fatal(err)
	}
	if spec.Scheme != SchemeQUIC || spec.Port != 443 || spec.Weight != 3 || spec.Scheme.String() != "quic" {
		t.Errorf("%+v", spec)
	}
	if _, err := ParseBackend("quic://127.0.0.1:8443?proxy=v2"); err == nil || !strings.Contains(err.Error(), "not supported for quic") {
		t.Errorf("proxy on quic: %v", err)
	}
	tb, err := NewTable(context.Background(), []RouteSpec{{Name: "a.test", Backends: []string{"quic://127.0.0.1:9443", "tls://127.0.0.1:9443"}}}, "", TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p := tb.Lookup(SchemeQUIC, []byte("a.test")); p == nil || len(p.Backends) != 1 || p.Backends[0].Spec.Scheme != SchemeQUIC {
		t.Errorf("quic pool %+v", p)
	}
	if p := tb.Lookup(SchemeTLS, []byte("a.test")); p == nil || len(p.Backends) != 1 || p.Backends[0].Spec.Scheme != SchemeTLS {
		t.Errorf("tls pool %+v", p)
	}
}

// The QUIC check passes on a Version Negotiation answer and fails on an ICMP
// port unreachable (nothing bound) or silence.
func TestProbeQUIC(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n >= 1200 && buf[0]&0x80 != 0 {
				// Version Negotiation: DCID/SCID swapped, version 0, then v1.
				vn := []byte{0x80, 0, 0, 0, 0, 0, 8}
				vn = append(vn, buf[6:14]...)
				vn = append(vn, 0, 0, 0, 1)
				_, _ = pc.WriteTo(vn, from)
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := probeQUIC(ctx, pc.LocalAddr().String()); err != nil {
		t.Errorf("answering server: %v", err)
	}
	// A port with nothing bound: the kernel answers port unreachable.
	closed, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := closed.LocalAddr().String()
	closed.Close()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if err := probeQUIC(ctx2, addr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("closed port: %v, want connection refused (the ICMP answer, not a timeout)", err)
	}
}

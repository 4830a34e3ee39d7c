package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/portier/portier/parser/quic"
)

// The QUIC cases: portier routes each new flow by the SNI in its Initial
// packets; nginx's stream module (`listen ... udp; proxy_pass`) forwards UDP
// without looking inside. Both forward datagrams of established flows
// unchanged, so the figures compare like with like: proxy CPU per forwarded
// datagram and per new flow.

const backendQUIC = "127.0.0.1:18003"

// quicEcho is the QUIC cases' backend: it sends every datagram back as it
// came, so a client Initial flight is answered (the flow is established)
// and each short-header datagram makes a round trip.
func quicEcho(addr string) (func(), error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	_ = pc.(*net.UDPConn).SetReadBuffer(8 << 20)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, src, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n >= 7 && buf[0]&0x80 != 0 && !knownVersion(buf[1:5]) {
				// Version Negotiation, as a QUIC server answers an unknown
				// version (portier's health check relies on it).
				vn := []byte{0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
				_, _ = pc.WriteTo(vn, src)
				continue
			}
			_, _ = pc.WriteTo(buf[:n], src)
		}
	}()
	return func() { pc.Close() }, nil
}

// quicFlights captures n first flights of quic-go clients for sni: each is
// the datagrams carrying one client's ClientHello (two with Go's post-quantum
// key share), with its own Destination Connection ID, so every flow makes
// portier derive new Initial keys as a real client would.
func quicFlights(ctx context.Context, sni string, n int) ([][][]byte, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer pc.Close()
	_ = pc.(*net.UDPConn).SetReadBuffer(8 << 20)
	tlsConf := &tls.Config{ServerName: sni, NextProtos: []string{"h3"}, InsecureSkipVerify: true}
	out := make([][][]byte, 0, n)
	buf := make([]byte, 2048)
	scratch := make([]byte, 2048)
	var asm quic.Assembler
	for len(out) < n && ctx.Err() == nil {
		dctx, cancel := context.WithCancel(ctx)
		go func() { _, _ = quicgo.DialAddr(dctx, pc.LocalAddr().String(), tlsConf, nil) }()
		var flight [][]byte
		var from string
		asm.Reset(16 << 10)
		_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			m, src, err := pc.ReadFrom(buf)
			if err != nil {
				cancel()
				return nil, fmt.Errorf("capturing a quic-go first flight: %w", err)
			}
			if from != "" && src.String() != from {
				continue // a previous client's retransmission
			}
			from = src.String()
			flight = append(flight, append([]byte(nil), buf[:m]...))
			// The flight is complete when its ClientHello is.
			if err := asm.Feed(buf[:m], scratch); err == nil {
				break
			} else if !errors.Is(err, quic.ErrNeedMore) {
				cancel()
				return nil, fmt.Errorf("quic-go Initial: %w", err)
			}
		}
		cancel()
		out = append(out, flight)
	}
	return out, ctx.Err()
}

// quicFlowLoad opens one flow per flight (a new client socket each), waits for
// the backend's first answer, and closes the socket; workers run in parallel.
// Requests counts flows answered.
func quicFlowLoad(ctx context.Context, addr string, flights [][][]byte, workers int) loadResult {
	var done, failed atomic.Int64
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 2048)
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(len(flights)) {
					return
				}
				if err := oneFlow(addr, flights[i], buf); err != nil {
					failed.Add(1)
				} else {
					done.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	r := loadResult{Requests: done.Load(), Errors: failed.Load(), Duration: d}
	r.ReqPerSec = float64(r.Requests) / d.Seconds()
	return r
}

func oneFlow(addr string, flight [][]byte, buf []byte) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	for _, d := range flight {
		if _, err := c.Write(d); err != nil {
			return err
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = c.Read(buf)
	return err
}

// quicDatagramLoad establishes conns flows, then each sends 1,200-byte
// short-header datagrams in a ping-pong with the echo backend for dur.
// Requests counts datagrams forwarded (both directions).
func quicDatagramLoad(ctx context.Context, addr string, flights [][][]byte, conns int, dur time.Duration) (loadResult, error) {
	if len(flights) < conns {
		return loadResult{}, fmt.Errorf("%d flights for %d flows", len(flights), conns)
	}
	cs := make([]net.Conn, 0, conns)
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	buf := make([]byte, 2048)
	for i := 0; i < conns; i++ {
		c, err := net.Dial("udp", addr)
		if err != nil {
			return loadResult{}, err
		}
		cs = append(cs, c)
		for _, d := range flights[i] {
			if _, err := c.Write(d); err != nil {
				return loadResult{}, err
			}
		}
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Read(buf); err != nil {
			return loadResult{}, fmt.Errorf("flow %d not answered: %w", i, err)
		}
	}
	pkt := make([]byte, 1200)
	pkt[0] = 0x40 // short header; the rest is opaque to both proxies
	var trips, lost atomic.Int64
	start := time.Now()
	end := start.Add(dur)
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func(c net.Conn) {
			defer wg.Done()
			b := make([]byte, 2048)
			for time.Now().Before(end) && ctx.Err() == nil {
				if _, err := c.Write(pkt); err != nil {
					lost.Add(1)
					continue
				}
				_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if _, err := c.Read(b); err != nil {
					lost.Add(1)
					continue
				}
				trips.Add(1)
			}
		}(c)
	}
	wg.Wait()
	d := time.Since(start)
	r := loadResult{Requests: 2 * trips.Load(), Errors: lost.Load(), Duration: d}
	r.ReqPerSec = float64(r.Requests) / d.Seconds()
	return r, nil
}

func knownVersion(v []byte) bool {
	return (v[0] == 0 && v[1] == 0 && v[2] == 0 && v[3] == 1) || (v[0] == 0x6b && v[1] == 0x33 && v[2] == 0x43 && v[3] == 0xcf)
}

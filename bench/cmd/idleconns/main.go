// Command idleconns opens N TLS connections through a proxy (full handshake,
// SNI set, no request sent) and keeps them idle so that the proxy's memory per
// established connection can be read. It prints "ready N" once every
// handshake has completed, then holds the connections until stdin reaches EOF
// or it gets SIGTERM/SIGINT, and closes them all.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18443", "proxy TLS listener")
	sni := flag.String("sni", "bench.test", "server name sent in the ClientHello")
	n := flag.Int("n", 4000, "connections to open")
	par := flag.Int("c", 32, "handshakes in flight at once")
	timeout := flag.Duration("timeout", 60*time.Second, "limit for opening all connections")
	flag.Parse()
	if err := run(*addr, *sni, *n, *par, *timeout); err != nil {
		log.Fatalf("idleconns: %v", err)
	}
}

func run(addr, sni string, n, par int, timeout time.Duration) error {
	cfg := &tls.Config{
		ServerName: sni,
		// The backend's certificate is self-signed; only the bytes forwarded
		// by the proxy matter here, not the identity.
		InsecureSkipVerify: true,
		NextProtos:         []string{"http/1.1"},
	}
	conns := make([]net.Conn, n)
	deadline := time.Now().Add(timeout)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		next     int
	)
	for w := 0; w < par; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := &net.Dialer{Deadline: deadline}
			for {
				mu.Lock()
				if next >= n || firstErr != nil {
					mu.Unlock()
					return
				}
				i := next
				next++
				mu.Unlock()
				c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d: %w", i, err)
					}
					mu.Unlock()
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if firstErr != nil {
		return firstErr
	}
	fmt.Printf("ready %d\n", n)

	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(done)
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-done:
	case <-sig:
	}
	return nil
}

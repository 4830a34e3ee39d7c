// Command benchbackend is the origin server of the benchmark harness: a plain
// HTTP listener and a TLS listener (self-signed ECDSA P-256 certificate made at
// start, ALPN h2 and http/1.1) that both serve a small body on / and a 1 MiB
// body on /1m, with keep-alive. It prints "ready" on stdout once both listen.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"

	"github.com/portier/portier/internal/selfsigned"
)

// smallBody is about 100 bytes, the size of a typical health or API reply.
var smallBody = []byte("ok\n" + "portier benchmark backend: small response body padded to about one hundred bytes.......\n")

const bigSize = 1 << 20

func main() {
	httpAddr := flag.String("http", "127.0.0.1:18001", "plain HTTP listen address")
	tlsAddr := flag.String("tls", "127.0.0.1:18002", "TLS (HTTPS, h2 + http/1.1) listen address")
	host := flag.String("name", "bench.test", "DNS name put in the self-signed certificate")
	flag.Parse()
	if err := run(*httpAddr, *tlsAddr, *host); err != nil {
		log.Fatalf("benchbackend: %v", err)
	}
}

func run(httpAddr, tlsAddr, host string) error {
	big := make([]byte, bigSize)
	for i := range big {
		big[i] = byte('a' + i%26)
	}
	mux := http.NewServeMux()
	var accepts atomic.Int64
	// The harness reads this directly (not through a proxy) to show how
	// many backend connections each proxy opened.
	mux.HandleFunc("/_accepts", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, accepts.Load())
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", strconv.Itoa(len(smallBody)))
		w.Write(smallBody)
	})
	mux.HandleFunc("/1m", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(big)))
		w.Write(big)
	})

	cert, err := selfsigned.Certificate(host)
	if err != nil {
		return fmt.Errorf("make certificate: %w", err)
	}
	hl, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return fmt.Errorf("listen http %s: %w", httpAddr, err)
	}
	tl, err := net.Listen("tcp", tlsAddr)
	if err != nil {
		return fmt.Errorf("listen tls %s: %w", tlsAddr, err)
	}
	// No read or idle timeouts: the idle-connection scenario holds thousands
	// of handshaken connections open without a request for a while.
	plain := &http.Server{Handler: mux, ErrorLog: log.New(discard{}, "", 0),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				accepts.Add(1)
			}
		}}
	secure := &http.Server{
		Handler:  mux,
		ErrorLog: log.New(discard{}, "", 0),
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			NextProtos:   []string{"h2", "http/1.1"},
		},
	}
	errc := make(chan error, 2)
	go func() { errc <- plain.Serve(hl) }()
	// ServeTLS with TLSConfig.Certificates set enables net/http's HTTP/2.
	go func() { errc <- secure.ServeTLS(tl, "", "") }()
	fmt.Println("ready")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case s := <-sig:
		plain.Close()
		secure.Close()
		_ = s
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Command demobackend serves small HTTP and HTTPS backends for `make run`:
// each answers with its own address, the Host it was asked for and the
// client address it sees. The HTTPS and HTTP/3 certificate is self-signed,
// made at start.
package main

import (
	"bytes"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/portier/portier/internal/selfsigned"
)

func main() {
	httpAddrs := flag.String("http", "127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9003", "comma-separated HTTP listen addresses")
	tlsAddrs := flag.String("tls", "127.0.0.1:9443,127.0.0.1:9444", "comma-separated HTTPS listen addresses")
	quicAddrs := flag.String("quic", "127.0.0.1:9443,127.0.0.1:9444", "comma-separated HTTP/3 (UDP) listen addresses")
	names := flag.String("names", "app1.test,*.apps.test,localhost", "certificate DNS names")
	flag.Parse()

	cert, err := selfsigned.Certificate(strings.Split(*names, ",")...)
	if err != nil {
		log.Fatalf("demobackend: certificate: %v", err)
	}
	for _, addr := range split(*httpAddrs) {
		serve(addr, nil)
	}
	for _, addr := range split(*tlsAddrs) {
		serve(addr, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}})
	}
	for _, addr := range split(*quicAddrs) {
		serveH3(addr, cert)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	<-sigs
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// serveH3 serves HTTP/3 over QUIC with quic-go.
func serveH3(addr string, cert tls.Certificate) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		log.Fatalf("demobackend: %v", err)
	}
	srv := &http3.Server{
		TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}),
		Handler:   handler("h3", addr),
	}
	go func() {
		if err := srv.Serve(pc); err != nil {
			log.Printf("demobackend %s: %v", addr, err)
		}
	}()
	log.Printf("demobackend listening on h3://%s (udp)", addr)
}

func handler(scheme, addr string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "hello from demo backend %s://%s\n  Host: %s\n  protocol: %s\n  client seen by backend: %s\n",
			scheme, addr, r.Host, r.Proto, r.RemoteAddr)
		for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Port", "Forwarded"} {
			if v := r.Header.Get(k); v != "" {
				fmt.Fprintf(w, "  %s: %s\n", k, v)
			}
		}
	})
}

func serve(addr string, tlsCfg *tls.Config) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatalf("demobackend: %v", err)
	}
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
		ln = tls.NewListener(ln, tlsCfg)
	}
	h := handler(scheme, addr)
	// portier's TCP health checks connect and close without a handshake;
	// the TLS server would log each one as a handshake error.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: log.New(quietHandshakes{os.Stderr}, "", log.LstdFlags)}
	go func() {
		if err := srv.Serve(ln); err != nil {
			log.Printf("demobackend %s: %v", addr, err)
		}
	}()
	log.Printf("demobackend listening on %s://%s", scheme, addr)
}

// quietHandshakes drops "TLS handshake error ... EOF" lines: health checks
// that connect and close.
type quietHandshakes struct{ w io.Writer }

func (q quietHandshakes) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("TLS handshake error")) && bytes.HasSuffix(bytes.TrimSpace(p), []byte("EOF")) {
		return len(p), nil
	}
	return q.w.Write(p)
}

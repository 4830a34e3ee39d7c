// Command h3get fetches a URL over HTTP/3 (quic-go), optionally through
// another address, for trying portier's quic listener where curl lacks
// --http3:
//
//	h3get -connect 127.0.0.1:8443 -k https://app1.test/
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

func main() {
	connect := flag.String("connect", "", "UDP address to send to instead of the URL's host (like curl --connect-to)")
	insecure := flag.Bool("k", false, "accept any server certificate")
	timeout := flag.Duration("timeout", 10*time.Second, "whole request")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: h3get [-connect host:port] [-k] https://name/path")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	tr := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: *insecure}}
	if *connect != "" {
		tr.Dial = func(ctx context.Context, _ string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
			return quic.DialAddrEarly(ctx, *connect, tlsCfg, cfg)
		}
	}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, flag.Arg(0), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "h3get:", err)
		os.Exit(2)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "h3get:", err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	fmt.Fprintf(os.Stderr, "%s %s\n", resp.Proto, resp.Status)
	_, _ = io.Copy(os.Stdout, resp.Body)
}

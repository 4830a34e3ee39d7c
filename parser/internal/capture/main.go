// Command capture records the first bytes real clients send, for the parser
// package's test data. For each client it listens on 127.0.0.1:0, starts the
// client against that port, accepts one connection, reads until the parser
// reports the ClientHello (or HTTP request head) complete, saves exactly those
// bytes and closes the connection. It then rewrites the fuzz seed corpora
// under testdata/fuzz from all captures and HTTP samples.
//
// Run from the repository root:
//
//	go run ./parser/internal/capture -dir parser/testdata
//	go run ./parser/internal/capture -dir parser/testdata -seeds-only
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/portier/portier/parser"
)

type capture struct {
	file string
	http bool // parse an HTTP/1.x request head instead of a ClientHello
	// start launches the client against port; the returned func waits for it.
	start func(ctx context.Context, port string) (wait func(), err error)
}

func command(args ...string) func(ctx context.Context, port string) (func(), error) {
	return func(ctx context.Context, port string) (func(), error) {
		expanded := make([]string, len(args))
		for i, a := range args {
			expanded[i] = expand(a, port)
		}
		cmd := exec.CommandContext(ctx, expanded[0], expanded[1:]...)
		cmd.Stdin = nil // /dev/null: interactive clients exit once the connection ends
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		return func() { _ = cmd.Wait() }, nil
	}
}

// expand replaces every "{port}" in s.
func expand(s, port string) string { return strings.ReplaceAll(s, "{port}", port) }

func goClient(ctx context.Context, port string) (func(), error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		d := tls.Dialer{Config: &tls.Config{
			ServerName: "app1.test",
			NextProtos: []string{"h2", "http/1.1"},
			// Default CurvePreferences: X25519MLKEM768 first, so the key share
			// makes the ClientHello larger than 1 KB.
		}}
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", port))
		if err == nil {
			_ = c.Close()
		}
	}()
	return func() { <-done }, nil
}

var captures = []capture{
	{file: "clienthello/go.bin", start: goClient},
	{file: "clienthello/openssl.bin", start: command("openssl", "s_client", "-connect", "127.0.0.1:{port}",
		"-servername", "app1.test", "-alpn", "h2,http/1.1")},
	{file: "clienthello/openssl-nosni.bin", start: command("openssl", "s_client", "-connect", "127.0.0.1:{port}",
		"-noservername")},
	{file: "clienthello/curl.bin", start: command("curl", "-k", "-s", "-o", "/dev/null", "--max-time", "5",
		"--resolve", "app1.test:{port}:127.0.0.1", "https://app1.test:{port}/")},
	{file: "clienthello/gnutls.bin", start: command("gnutls-cli", "--insecure", "-p", "{port}",
		"--sni-hostname", "app1.test", "--alpn", "h2", "--alpn", "http/1.1", "127.0.0.1")},
	{file: "http/curl-get.http", http: true, start: command("curl", "-s", "-o", "/dev/null", "--max-time", "5",
		"--resolve", "app1.test:{port}:127.0.0.1", "http://app1.test:{port}/index.html?q=1")},
}

func run(dir string, c capture) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	wait, err := c.start(ctx, port)
	if err != nil {
		return err
	}
	defer wait()
	defer cancel() // runs before wait: stops a client that outlives the capture

	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	conn, err := ln.Accept()
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))

	var (
		data []byte
		buf  = make([]byte, 4096)
		ch   parser.ClientHello
		fr   parser.RequestFramer
	)
	for {
		n, err := conn.Read(buf)
		data = append(data, buf[:n]...)
		var perr error
		var end int
		if c.http {
			fr.Reset()
			_, end, perr = fr.Next(data, len(data)+1)
		} else {
			perr, end = parser.ParseClientHello(data, 0, &ch), ch.Len
		}
		switch {
		case perr == nil:
			return os.WriteFile(filepath.Join(dir, c.file), data[:end], 0o644)
		case !errors.Is(perr, parser.ErrNeedMore):
			return fmt.Errorf("client sent unparsable data: %w", perr)
		case err != nil:
			return fmt.Errorf("read after %d bytes: %w", len(data), err)
		}
	}
}

// writeSeed writes one seed file in the "go test fuzz v1" format.
// writeSeed writes a seed whose first argument is data; more are further
// arguments in the corpus syntax (e.g. "uint64(0)").
func writeSeed(dir, name string, data []byte, more ...string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
	for _, m := range more {
		body += m + "\n"
	}
	return os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
}

// recordize re-records the handshake message carried by data into records
// of at most size bytes, as a client with a small record size would send it.
func recordize(data []byte, size int) []byte {
	var msg, out []byte
	for len(data) >= 5 {
		n := int(data[3])<<8 | int(data[4])
		msg = append(msg, data[5:5+n]...)
		data = data[5+n:]
	}
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, 22, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// writeSeeds derives the fuzz seed corpora from every capture and sample.
func writeSeeds(dir string) error {
	hellos, err := filepath.Glob(filepath.Join(dir, "clienthello", "*.bin"))
	if err != nil {
		return err
	}
	chDir := filepath.Join(dir, "fuzz", "FuzzParseClientHello")
	for _, f := range hellos {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		base := strings.TrimSuffix(filepath.Base(f), ".bin")
		if err := writeSeed(chDir, base, b); err != nil {
			return err
		}
		if err := writeSeed(chDir, base+"-split64", recordize(b, 64)); err != nil {
			return err
		}
	}
	heads, err := filepath.Glob(filepath.Join(dir, "http", "*.http"))
	if err != nil {
		return err
	}
	for _, f := range heads {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(filepath.Base(f), ".http")
		if err := writeSeed(filepath.Join(dir, "fuzz", "FuzzRequestFramer"), "head-"+name, b, "uint64(0)"); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	dir := flag.String("dir", "parser/testdata", "testdata directory to write into")
	seedsOnly := flag.Bool("seeds-only", false, "only rewrite the fuzz seeds from existing captures")
	flag.Parse()
	failed := false
	for _, c := range captures {
		if *seedsOnly {
			break
		}
		if err := run(*dir, c); err != nil {
			log.Printf("capture %s: %v", c.file, err)
			failed = true
			continue
		}
		log.Printf("captured %s", c.file)
	}
	if err := writeSeeds(*dir); err != nil {
		log.Printf("fuzz seeds: %v", err)
		failed = true
	}
	if failed {
		os.Exit(1)
	}
}

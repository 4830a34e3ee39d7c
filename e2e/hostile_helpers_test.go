package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portier/portier/internal/selfsigned"
	"github.com/portier/portier/internal/testutil"
)

// hostileBackends are the real servers behind the hostile suite's portier.
type hostileBackends struct {
	http, tls, silent, reset, big, smuggle string // listen addresses

	roots *x509.CertPool // trusts the TLS backend's certificate

	uploads     chan ioResult // one per /upload request the HTTP backend finished
	streams     sync.Map      // request path -> chan ioResult, for the big backend
	silentOpen  atomic.Int64  // connections the silent backend holds
	smuggleSeen recorder      // every byte the smuggle backend received
}

// ioResult is how far a backend got with a transfer and how it ended.
type ioResult struct {
	n   int64
	err error
}

// recorder keeps the bytes a backend received, for "never forwarded" checks.
type recorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *recorder) add(b []byte) {
	r.mu.Lock()
	r.buf.Write(b)
	r.mu.Unlock()
}

func (r *recorder) contains(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Contains(r.buf.Bytes(), []byte(s))
}

const (
	bigBody      = 1 << 30   // what the big backend offers; clients always stop early
	resetPartial = 256 << 10 // body bytes the resetting backend sends before its RST
)

func startHostileBackends(t *testing.T) *hostileBackends {
	t.Helper()
	b := &hostileBackends{uploads: make(chan ioResult, 4)}

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		select {
		case b.uploads <- ioResult{n, err}:
		default:
		}
	})
	b.http = serveHTTP(t, mux, nil)

	cert, err := selfsigned.Certificate("secure.test")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	b.roots = x509.NewCertPool()
	b.roots.AddCert(leaf)
	b.tls = serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok-tls")
	}), &tls.Config{Certificates: []tls.Certificate{cert}})

	// Accepts, reads, never answers: only portier's idle timeout ends it.
	b.silent = testutil.RawBackend(t, func(c *net.TCPConn) {
		b.silentOpen.Add(1)
		defer b.silentOpen.Add(-1)
		_ = c.SetReadDeadline(time.Now().Add(time.Minute))
		_, _ = io.Copy(io.Discard, c)
	})

	// Starts a 10 MiB response, then resets the connection (SO_LINGER 0).
	b.reset = testutil.RawBackend(t, func(c *net.TCPConn) {
		if testutil.SkipHead(bufio.NewReader(c)) != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\n")
		_, _ = c.Write(make([]byte, resetPartial))
		_ = c.SetLinger(0)
		_ = c.Close()
	})

	// Streams as fast as portier takes it; the request path selects where
	// the outcome is reported.
	b.big = testutil.RawBackend(t, func(c *net.TCPConn) {
		br := bufio.NewReader(c)
		line, err := br.ReadString('\n')
		if err != nil || testutil.SkipHead(br) != nil {
			return
		}
		path := strings.Fields(line + " ")[1]
		_ = c.SetWriteDeadline(time.Now().Add(time.Minute))
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(bigBody)+"\r\n\r\n")
		var sent atomic.Int64
		_, err = testutil.SendPattern(c, bigBody, &sent)
		if ch, ok := b.streams.Load(path); ok {
			ch.(chan ioResult) <- ioResult{sent.Load(), err}
		}
	})

	// Records what reaches it and answers 200 only after 300 ms of quiet, so a
	// request portier should have refused shows up as a 200 or in the record.
	b.smuggle = testutil.RawBackend(t, func(c *net.TCPConn) {
		buf := make([]byte, 4096)
		for total := 0; total < 1<<20; {
			_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			n, err := c.Read(buf)
			b.smuggleSeen.add(buf[:n])
			total += n
			if err != nil {
				break
			}
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nbackend")
	})
	return b
}

// streamResult registers path with the big backend and returns where its outcome arrives.
func (b *hostileBackends) streamResult(path string) chan ioResult {
	ch := make(chan ioResult, 1)
	b.streams.Store(path, ch)
	return ch
}

func serveHTTP(t *testing.T, h http.Handler, tc *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	// Portier's TCP health checks connect and close without a TLS handshake;
	// the server would log each one.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// normalClient sends real requests through portier for the whole suite, with
// a fresh connection each, and records every failure with the phase it hit.
type normalClient struct {
	okHTTP, okTLS atomic.Int64
	phase         atomic.Value // string: the subtest running
	mu            sync.Mutex
	failures      []string
	stop, done    chan struct{}
	stopOnce      sync.Once

	webAddr     string
	httpc, tlsc *http.Client
}

const (
	normalPause   = 50 * time.Millisecond
	normalMaxRuns = 20000 // bound in count besides the stop signal
	normalMaxTime = 5 * time.Minute
)

func newNormalClient(webAddr, tlsAddr string, roots *x509.CertPool) *normalClient {
	nc := &normalClient{stop: make(chan struct{}), done: make(chan struct{}), webAddr: webAddr}
	nc.phase.Store("start")
	nc.httpc = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var d net.Dialer
	nc.tlsc = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: "secure.test"},
		// The URL names the route; the connection goes to portier's TLS listener.
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", tlsAddr)
		},
	}}
	return nc
}

func get(c *http.Client, url, host, want string) error {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return err
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 || string(body) != want {
		return fmt.Errorf("status %d body %q", resp.StatusCode, body)
	}
	return nil
}

// round sends one HTTP and one TLS request and counts the successes.
func (nc *normalClient) round() error {
	var errs []error
	if err := get(nc.httpc, "http://"+nc.webAddr+"/", "app.test", "ok"); err != nil {
		errs = append(errs, fmt.Errorf("http: %w", err))
	} else {
		nc.okHTTP.Add(1)
	}
	if err := get(nc.tlsc, "https://secure.test/", "secure.test", "ok-tls"); err != nil {
		errs = append(errs, fmt.Errorf("tls: %w", err))
	} else {
		nc.okTLS.Add(1)
	}
	return errors.Join(errs...)
}

// start sends rounds in the background until finish.
func (nc *normalClient) start() {
	go func() {
		defer close(nc.done)
		end := time.Now().Add(normalMaxTime)
		for i := 0; i < normalMaxRuns && time.Now().Before(end); i++ {
			if err := nc.round(); err != nil {
				nc.mu.Lock()
				nc.failures = append(nc.failures, fmt.Sprintf("during %s at %s: %v",
					nc.phase.Load(), time.Now().Format("15:04:05.000"), err))
				nc.mu.Unlock()
			}
			select {
			case <-nc.stop:
				return
			case <-time.After(normalPause):
			}
		}
	}()
}

// finish stops the background rounds and returns the failures; it may be
// called more than once.
func (nc *normalClient) finish() []string {
	nc.stopOnce.Do(func() { close(nc.stop) })
	<-nc.done
	nc.mu.Lock()
	defer nc.mu.Unlock()
	return nc.failures
}

// answer is everything a raw client saw before the connection ended.
type answer struct {
	data   []byte
	closed bool // EOF or reset before the deadline
	took   time.Duration
	err    error
}

// rawExchange writes send (half-closing after it if asked) and reads until
// portier closes or wait passes. Writes that fail because portier already
// answered and closed are expected and ignored.
func rawExchange(addr string, send []byte, halfClose bool, wait time.Duration) answer {
	start := time.Now() // before the dial: a late start would make a timeout look early
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return answer{err: err}
	}
	defer c.Close()
	go func() {
		_ = c.SetWriteDeadline(start.Add(wait))
		if _, err := c.Write(send); err == nil && halfClose {
			_ = c.(*net.TCPConn).CloseWrite()
		}
	}()
	return readAnswer(c, start, wait)
}

func readAnswer(c net.Conn, start time.Time, wait time.Duration) answer {
	_ = c.SetReadDeadline(start.Add(wait))
	data, err := io.ReadAll(c)
	a := answer{data: data, took: time.Since(start)}
	switch {
	case err == nil:
		a.closed = true
	case isReset(err):
		a.closed = true
	default:
		a.err = err
	}
	return a
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// TLS record and handshake framing of the ClientHellos built below: record
// header (5 bytes), handshake header (4), then the body. The body has a fixed
// prefix (version, random, empty session id, 4 suites, null compression), so
// the extensions length sits at a fixed offset.
const (
	helloRecLenOff = 3
	helloHsLenOff  = 6
	helloExtLenOff = 5 + 4 + 2 + 32 + 1 + 2 + 8 + 2
)

// clientHello builds a TLS 1.2-format ClientHello record carrying exts.
func clientHello(exts ...[]byte) []byte {
	body := []byte{3, 3}
	body = append(body, bytes.Repeat([]byte{0x5a}, 32)...)
	body = append(body, 0)                                                    // session id
	body = append(body, 0, 8, 0x13, 0x01, 0x13, 0x02, 0xc0, 0x2b, 0xc0, 0x2f) // suites
	body = append(body, 1, 0)                                                 // compression: null
	var all []byte
	for _, e := range exts {
		all = append(all, e...)
	}
	body = binary.BigEndian.AppendUint16(body, uint16(len(all)))
	body = append(body, all...)
	hs := append([]byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
	rec := []byte{22, 3, 1}
	rec = binary.BigEndian.AppendUint16(rec, uint16(len(hs)))
	return append(rec, hs...)
}

func tlsExt(typ uint16, body []byte) []byte {
	e := binary.BigEndian.AppendUint16(nil, typ)
	e = binary.BigEndian.AppendUint16(e, uint16(len(body)))
	return append(e, body...)
}

// sniExt is a server_name extension with one host_name entry; listDelta
// makes its list length lie.
func sniExt(name []byte, listDelta int) []byte {
	entry := append([]byte{0}, binary.BigEndian.AppendUint16(nil, uint16(len(name)))...)
	entry = append(entry, name...)
	body := binary.BigEndian.AppendUint16(nil, uint16(len(entry)+listDelta))
	return tlsExt(0, append(body, entry...))
}

// supportedGroups is a harmless extension for hellos without SNI.
var supportedGroups = tlsExt(10, []byte{0, 2, 0, 0x17})

func withU16(b []byte, off int, v uint16) []byte {
	b = bytes.Clone(b)
	binary.BigEndian.PutUint16(b[off:], v)
	return b
}

func withU24(b []byte, off int, v int) []byte {
	b = bytes.Clone(b)
	b[off], b[off+1], b[off+2] = byte(v>>16), byte(v>>8), byte(v)
	return b
}

// fdCount is how many descriptors pid has open.
func fdCount(t *testing.T, pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("read fds: %v", err)
	}
	return len(ents)
}

// cpuTime is pid's user+system CPU time. /proc reports it in USER_HZ ticks,
// which Linux fixes at 100 per second for user space.
func cpuTime(t *testing.T, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("read stat: %v", err)
	}
	// Fields after the parenthesised command name (which may hold spaces):
	// state is field 3, utime 14 and stime 15.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// alive reports whether portier has not exited.
func (p *process) alive() bool {
	select {
	case err := <-p.done:
		p.done <- err // keep it for stop
		return false
	default:
		return true
	}
}

// limitNofile lowers both limits of a running process: Go raises its soft
// limit to the hard one at startup, so only a low hard limit sticks.
func limitNofile(t *testing.T, pid, n int) {
	t.Helper()
	if path, err := exec.LookPath("prlimit"); err == nil {
		out, err := exec.Command(path, "--pid", strconv.Itoa(pid), fmt.Sprintf("--nofile=%d:%d", n, n)).CombinedOutput()
		if err != nil {
			t.Fatalf("prlimit: %v: %s", err, out)
		}
	} else {
		lim := unix.Rlimit{Cur: uint64(n), Max: uint64(n)}
		if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
			t.Fatalf("prlimit(2): %v", err)
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); strings.HasPrefix(line, "Max open files") && len(f) >= 5 {
			if f[3] != strconv.Itoa(n) || f[4] != strconv.Itoa(n) {
				t.Fatalf("limit not applied: %q", line)
			}
			return
		}
	}
	t.Fatal("no open-files line in /proc limits")
}

// raiseNofile lifts this test process's soft descriptor limit to its hard
// limit and fails early when even that cannot hold need descriptors.
func raiseNofile(t *testing.T, need int) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
	}
	if lim.Cur < uint64(need) {
		t.Fatalf("descriptor limit %d is below the %d this suite needs (raise the hard limit)", lim.Cur, need)
	}
}

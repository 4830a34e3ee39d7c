package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Helpers of ops_test.go and health_test.go. Every name starts with ops so
// that nothing collides with the other e2e files of the package.

// opsBackend is a net/http backend on 127.0.0.1 that can be killed and
// restarted on the same port. Its default handler answers 200 with its name
// as the body; /healthz answers 200 "ok" and is not counted in hits.
type opsBackend struct {
	name    string
	addr    string // fixed after the first start
	handler http.Handler
	hits    atomic.Int64

	mu  sync.Mutex
	srv *http.Server
}

func startOpsBackend(t *testing.T, name string, h http.Handler) *opsBackend {
	t.Helper()
	b := &opsBackend{name: name, addr: "127.0.0.1:0"}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		w.Header().Set("X-Backend", name)
		if h != nil {
			h.ServeHTTP(w, r)
			return
		}
		io.WriteString(w, name)
	})
	b.handler = mux
	if err := b.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.kill)
	return b
}

// start listens on b.addr (a fresh port the first time, the same port after).
func (b *opsBackend) start() error {
	ln, err := net.Listen("tcp", b.addr)
	if err != nil {
		return fmt.Errorf("backend %s: %w", b.name, err)
	}
	b.mu.Lock()
	b.addr = ln.Addr().String()
	b.srv = &http.Server{Handler: b.handler, ReadHeaderTimeout: 10 * time.Second}
	srv := b.srv
	b.mu.Unlock()
	go srv.Serve(ln)
	return nil
}

// kill closes the listener and every connection. Requests already inside a
// handler get a moment to finish first: those were accepted by the backend,
// so no proxy could move them elsewhere, and failing them would measure the
// test's brutality rather than portier.
func (b *opsBackend) kill() {
	b.mu.Lock()
	srv := b.srv
	b.srv = nil
	b.mu.Unlock()
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	_ = srv.Shutdown(ctx)
	cancel()
	_ = srv.Close()
}

// opsAdminRE finds the admin server's bound address in portier's log.
var opsAdminRE = regexp.MustCompile(`msg="admin listening" address=(\S+)`)

func opsAdminAddr(t *testing.T, p *process) string {
	t.Helper()
	m := opsAdminRE.FindStringSubmatch(p.logText())
	if m == nil {
		t.Fatalf("no admin address in the log:\n%s", p.logText())
	}
	return m[1]
}

// opsConfigPath is the config file startPortier wrote (argv: bin -config FILE ...).
func opsConfigPath(t *testing.T, p *process) string {
	t.Helper()
	args := p.cmd.Args
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-config" {
			return args[i+1]
		}
	}
	t.Fatalf("no -config in %q", args)
	return ""
}

// opsExited reports whether the process has exited, keeping its exit error
// in p.done for whoever waits next.
func opsExited(p *process) bool {
	select {
	case err := <-p.done:
		p.done <- err
		return true
	default:
		return false
	}
}

// opsWait polls cond every 20ms until it holds or timeout passes; it
// returns how long that took and whether cond held.
func opsWait(timeout time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > timeout {
			return time.Since(start), false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// opsClient makes one request per connection, as a fresh client would.
func opsClient(local net.IP) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if local != nil {
		d.LocalAddr = &net.TCPAddr{IP: local}
	}
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true, DialContext: d.DialContext},
	}
}

// opsGet sends GET http://addr/path with Host host and returns the status
// and body.
func opsGet(c *http.Client, addr, host, path string) (int, string, error) {
	return opsGetTraced(c, addr, host, path, nil)
}

func opsGetTraced(c *http.Client, addr, host, path string, trace *httptrace.ClientTrace) (int, string, error) {
	req, err := http.NewRequest("GET", "http://"+addr+path, nil)
	if err != nil {
		return 0, "", err
	}
	if trace != nil {
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// opsWant200 fails the test unless GET host/ answers 200 with body want.
func opsWant200(t *testing.T, addr, host, want string) {
	t.Helper()
	st, body, err := opsGet(opsClient(nil), addr, host, "/")
	if err != nil || st != 200 || body != want {
		t.Fatalf("GET %s: status %d body %q err %v; want 200 %q", host, st, body, err, want)
	}
}

// opsScrape returns the admin server's /metrics text.
func opsScrape(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("scrape: status %d err %v", resp.StatusCode, err)
	}
	return string(b)
}

var opsLabelRE = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

// opsMetric finds the sample of metric name whose labels include every pair
// of labels (in Prometheus text format). ok is false when there is none.
func opsMetric(text, name string, labels map[string]string) (v float64, ok bool) {
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name) || len(line) == len(name) {
			continue
		}
		rest := line[len(name):]
		got := map[string]string{}
		switch rest[0] {
		case '{':
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			for _, m := range opsLabelRE.FindAllStringSubmatch(rest[1:end], -1) {
				got[m[1]] = m[2]
			}
			rest = rest[end+1:]
		case ' ':
		default:
			continue // another metric whose name starts with name
		}
		match := true
		for k, want := range labels {
			match = match && got[k] == want
		}
		if !match {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			continue
		}
		return f, true
	}
	return 0, false
}

// opsMetricOf scrapes and returns one sample, failing when it is missing.
func opsMetricOf(t *testing.T, admin, name string, labels map[string]string) float64 {
	t.Helper()
	text := opsScrape(t, admin)
	v, ok := opsMetric(text, name, labels)
	if !ok {
		t.Fatalf("no metric %s%v in:\n%s", name, labels, opsGrep(text, name))
	}
	return v
}

// opsGrep returns the lines of text that contain s, for failure messages.
func opsGrep(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// opsLoad is bounded client load: workers each make fresh-connection GETs
// until stopped, maxDur passes or maxPerWorker requests are done.
type opsLoad struct {
	ok, failed atomic.Int64
	stop       chan struct{}
	wg         sync.WaitGroup

	mu        sync.Mutex
	errs      []string       // the first few failures
	failures  []opsFailure   // every failure
	byBackend map[string]int // body (the backend's name) -> answers
}

// opsFailure is one failed request of an opsLoad.
type opsFailure struct {
	at    time.Time
	local string // the client's address, "" if it never connected
	err   error
}

func startOpsLoad(addr, host string, workers int, maxDur time.Duration, maxPerWorker int, pause time.Duration) *opsLoad {
	l := &opsLoad{stop: make(chan struct{}), byBackend: map[string]int{}}
	deadline := time.Now().Add(maxDur)
	for w := 0; w < workers; w++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			c := opsClient(nil)
			for i := 0; i < maxPerWorker && time.Now().Before(deadline); i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				var local string
				trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { local = i.Conn.LocalAddr().String() }}
				st, body, err := opsGetTraced(c, addr, host, "/", trace)
				if err == nil && st != 200 {
					err = fmt.Errorf("status %d body %q", st, body)
				}
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					l.failures = append(l.failures, opsFailure{time.Now(), local, err})
					if len(l.errs) < 10 {
						l.errs = append(l.errs, time.Now().Format("15:04:05.000")+" "+err.Error())
					}
					l.mu.Unlock()
				} else {
					l.ok.Add(1)
					l.mu.Lock()
					l.byBackend[body]++
					l.mu.Unlock()
				}
				if pause > 0 {
					time.Sleep(pause)
				}
			}
		}()
	}
	return l
}

// finish stops the load and waits for the workers.
func (l *opsLoad) finish() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

func (l *opsLoad) report() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("%d ok, %d failed, per backend %v, first failures %q",
		l.ok.Load(), l.failed.Load(), l.byBackend, l.errs)
}

// opsIsRefused reports a connection refused by the kernel (nobody listening).
func opsIsRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// Command redisload measures how portier copes with a large Redis route
// store: it starts its own redis-server (random loopback port, temporary
// directory, no persistence), seeds N hipache keys
// frontend:hK.load.test = [hK, http://127.0.0.1:PORT] with pipelined RPUSH
// (batches of 10,000), builds and starts portier on that Redis, and
// measures the time from process start until portier logs
// `routes updated from redis` with redis_routes=N, then portier's RSS, and
// checks that one routed request reaches the program's own HTTP backend.
//
//	go run ./bench/cmd/redisload -n 100000
//
// It prints one markdown table row, `| N | load time | RSS |`, on stdout;
// details go to stderr. Every key points to the same backend: distinct
// backends would each get an active health check, and a million checks
// would measure the checker, not the route store.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const batch = 10_000

func main() {
	n := flag.Int("n", 100_000, "number of routes to seed")
	timeout := flag.Duration("timeout", 5*time.Minute, "give up waiting for portier after this long")
	keep := flag.Bool("keep", false, "keep the temporary directory (logs, config)")
	flag.Parse()
	if *n < 1 {
		fatalf("-n must be at least 1")
	}
	if err := run(*n, *timeout, *keep); err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "redisload: "+format+"\n", args...)
	os.Exit(1)
}

func run(n int, timeout time.Duration, keep bool) (err error) {
	dir, err := os.MkdirTemp("", "redisload-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Fprintf(os.Stderr, "temporary directory: %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	bin := filepath.Join(dir, "portier")
	build := exec.Command("go", "build", "-o", bin, "github.com/portier/portier/cmd/portier")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build portier: %w", err)
	}

	backend, stopBackend, err := startBackend()
	if err != nil {
		return err
	}
	defer stopBackend()

	redisAddr, stopRedis, err := startRedis(dir)
	if err != nil {
		return err
	}
	defer stopRedis()

	t0 := time.Now()
	if err := seed(redisAddr, n, "http://"+backend); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "seeded %d keys in %v; redis %s\n", n, time.Since(t0).Round(time.Millisecond), redisMemory(redisAddr))

	cfg := filepath.Join(dir, "portier.yaml")
	yaml := fmt.Sprintf(`listeners:
  - {name: web, address: "127.0.0.1:0", protocol: http}
routes:
  static.load.test:
    - http://%s
loops: 1
redis:
  url: redis://%s/0
`, backend, redisAddr)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		return err
	}
	return measure(bin, cfg, filepath.Join(dir, "portier.log"), redisAddr, backend, n, timeout)
}

var (
	updatedRE   = regexp.MustCompile(`msg="routes updated from redis" redis_routes=(\d+)`)
	listeningRE = regexp.MustCompile(`msg=listening listener=web address=(\S+)`)
)

// measure starts portier and waits for the update that carries all n routes.
func measure(bin, cfg, logPath, redisAddr, backend string, n int, timeout time.Duration) error {
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "-config", cfg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()

	type event struct {
		addr   string
		routes int       // an update line: redis_routes
		at     time.Time // when it was read
		err    error
	}
	events := make(chan event, 16)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				events <- event{addr: m[1]}
			}
			if m := updatedRE.FindStringSubmatch(line); m != nil {
				got, _ := strconv.Atoi(m[1])
				events <- event{routes: got, at: time.Now()}
			}
		}
		events <- event{err: errors.New("portier's log ended (did it exit?)")}
	}()

	var addr string
	deadline := time.After(timeout)
	// waitRoutes waits for an update line with redis_routes=want.
	waitRoutes := func(want int) (time.Time, error) {
		for {
			select {
			case ev := <-events:
				switch {
				case ev.err != nil:
					return time.Time{}, fmt.Errorf("%v; log: %s", ev.err, logPath)
				case ev.addr != "":
					addr = ev.addr
				case ev.routes == want:
					return ev.at, nil
				default:
					fmt.Fprintf(os.Stderr, "update with redis_routes=%d (waiting for %d)\n", ev.routes, want)
				}
			case <-deadline:
				return time.Time{}, fmt.Errorf("no `routes updated from redis` with redis_routes=%d within %v; log: %s", want, timeout, logPath)
			}
		}
	}
	at, err := waitRoutes(n)
	if err != nil {
		return err
	}
	loaded := at.Sub(start)
	for addr == "" {
		// The listening line comes before Redis's first update; this only
		// guards against a reordered log.
		if _, err := waitRoutes(-1); err != nil {
			return err
		}
	}
	rss, err := vmRSS(cmd.Process.Pid)
	if err != nil {
		return err
	}

	// One routed request, to the last key seeded, through portier.
	host := fmt.Sprintf("h%d.load.test", n-1)
	body, err := get(addr, host)
	if err != nil {
		return fmt.Errorf("request for %s through portier: %w", host, err)
	}
	if body != "redisload backend" {
		return fmt.Errorf("request for %s through portier: body %q", host, body)
	}
	fmt.Fprintf(os.Stderr, "routes loaded %v after start; RSS %.1f MiB; GET Host %s through %s: ok\n",
		loaded.Round(time.Millisecond), float64(rss)/1024, host, addr)

	// One change on top of the N routes: how long until it is applied (the
	// whole table is rebuilt for every change).
	c, err := net.Dial("tcp", redisAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	w := bufio.NewWriter(c)
	writeCommand(w, "RPUSH", "frontend:new.load.test", "new", "http://"+backend)
	if err := w.Flush(); err != nil {
		return err
	}
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != ":2\r\n" {
		return fmt.Errorf("RPUSH frontend:new.load.test: %q %v", line, err)
	}
	pushed := time.Now()
	at, err = waitRoutes(n + 1)
	if err != nil {
		return err
	}
	if body, err := get(addr, "new.load.test"); err != nil || body != "redisload backend" {
		return fmt.Errorf("request for new.load.test: %q %v", body, err)
	}
	fmt.Fprintf(os.Stderr, "one RPUSH on top of %d routes applied after %v\n", n, at.Sub(pushed).Round(time.Millisecond))
	fmt.Fprintf(os.Stderr, "| routes | load time | RSS | one change applied after |\n")
	fmt.Fprintf(os.Stderr, "| %d | %.2f s | %.1f MiB | %v |\n", n, loaded.Seconds(), float64(rss)/1024, at.Sub(pushed).Round(time.Millisecond))
	fmt.Printf("| %d | %.2f s | %.1f MiB |\n", n, loaded.Seconds(), float64(rss)/1024)
	return nil
}

// vmRSS reads the resident set size (KiB) of pid.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

func get(addr, host string) (string, error) {
	req, err := http.NewRequest("GET", "http://"+addr+"/", nil)
	if err != nil {
		return "", err
	}
	req.Host = host
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d: %q", resp.StatusCode, b)
	}
	return string(b), nil
}

// startBackend serves a fixed body on a random loopback port.
func startBackend() (addr string, stop func(), err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "redisload backend")
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	return l.Addr().String(), func() { srv.Close() }, nil
}

// startRedis runs redis-server on a free loopback port in dir.
func startRedis(dir string) (addr string, stop func(), err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, fmt.Errorf("redis-server is needed: %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop = func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			r := bufio.NewReader(c)
			_, werr := c.Write([]byte("PING\r\n"))
			line, rerr := r.ReadString('\n')
			c.Close()
			if werr == nil && rerr == nil && strings.HasPrefix(line, "+PONG") {
				return addr, stop, nil
			}
		}
		select {
		case <-exited:
			return "", nil, fmt.Errorf("redis-server exited; see %s", filepath.Join(dir, "redis.log"))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("redis-server on %s not ready", addr)
		}
	}
}

// seed writes n hipache keys with pipelined RPUSH, batch commands per
// round trip, and checks every reply.
func seed(addr string, n int, backendURL string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	w := bufio.NewWriterSize(c, 1<<20)
	r := bufio.NewReaderSize(c, 1<<16)
	for lo := 0; lo < n; lo += batch {
		hi := min(lo+batch, n)
		for i := lo; i < hi; i++ {
			name := fmt.Sprintf("h%d.load.test", i)
			writeCommand(w, "RPUSH", "frontend:"+name, name, backendURL)
		}
		if err := w.Flush(); err != nil {
			return err
		}
		for i := lo; i < hi; i++ {
			line, err := r.ReadString('\n')
			if err != nil {
				return fmt.Errorf("RPUSH reply: %w", err)
			}
			if line != ":2\r\n" {
				return fmt.Errorf("RPUSH frontend:h%d.load.test: reply %q, want :2 (was the key there already?)", i, strings.TrimSpace(line))
			}
		}
	}
	return nil
}

func writeCommand(w *bufio.Writer, args ...string) {
	fmt.Fprintf(w, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(w, "$%d\r\n%s\r\n", len(a), a)
	}
}

// redisMemory returns Redis's used_memory_human, for the log.
func redisMemory(addr string) string {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "memory unknown"
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	w := bufio.NewWriter(c)
	writeCommand(w, "INFO", "memory")
	if w.Flush() != nil {
		return "memory unknown"
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "memory unknown"
		}
		if v, ok := strings.CutPrefix(line, "used_memory_human:"); ok {
			return "used_memory " + strings.TrimSpace(v)
		}
	}
}

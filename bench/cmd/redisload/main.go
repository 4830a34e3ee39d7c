// Command redisload measures how portier copes with a large Redis route
// store. It starts its own redis-server (random loopback port, temporary
// directory, no persistence), seeds N hipache keys
// frontend:hK.load.test = [hK, http://127.0.0.1:PORT] with pipelined RPUSH
// (batches of 10,000) and reads Redis's used_memory before and after, then:
//
//   - baseline: portier on an empty database of the same Redis, its RSS once
//     its (empty) Redis routes are in;
//
//   - load: portier on the N keys, from process start until it logs
//     `routes updated from redis` with redis_routes=N; its RSS then, the
//     growth over the baseline per route, and one routed request;
//
//   - one later change: an RPUSH, timed until portier logs the delta and
//     routes by it;
//
//   - resync and rebuild: the peak RSS (VmHWM, reset through
//     /proc/PID/clear_refs) during the full resync that follows the change
//     (it reads every key again and finds nothing the delta missed), and
//     during a rebuild of the whole table (SIGHUP, as when a resync finds
//     missed changes);
//
//   - restart: Redis is stopped and portier started again: the time until it
//     serves the N routes from its snapshot file;
//
//   - lookup: the snapshot loaded into a table in this process, and the cost
//     of Table.Lookup over names spread across all N (cache-missing).
//
//     go run ./bench/cmd/redisload -n 1000000
//
// It prints a markdown table on stdout; details go to stderr. Every key
// points to the same backend: distinct backends would each get an active
// health check, and a million checks would measure the checker, not the
// route store.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/portier/portier/balancer"
	"github.com/portier/portier/balancer/redisroutes"
)

const batch = 10_000

func main() {
	n := flag.Int("n", 100_000, "number of routes to seed")
	timeout := flag.Duration("timeout", 5*time.Minute, "give up waiting for portier after this long")
	resync := flag.Duration("resync", 15*time.Second, "portier's full resync period")
	keep := flag.Bool("keep", false, "keep the temporary directory (logs, config, snapshot)")
	prebuilt := flag.String("portier", "", "run this portier binary instead of building the working tree's (to compare versions in one sitting)")
	flag.Parse()
	if *n < 1 {
		fatalf("-n must be at least 1")
	}
	if err := run(*n, *timeout, *resync, *keep, *prebuilt); err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "redisload: "+format+"\n", args...)
	os.Exit(1)
}

// results are the figures of one run.
type results struct {
	n                          int
	redisBefore, redisAfter    int64 // used_memory, bytes
	baseRSS, rss, loadPeak     int64 // KiB
	load, change, restart      time.Duration
	resyncPeak                 int64 // KiB: a full resync (nothing missed)
	rebuildPeak, rebuildRSS    int64 // KiB: a rebuild of the table (SIGHUP)
	hit, miss                  time.Duration
	snapshotBytes              int64
	snapshotRead, snapshotLoad time.Duration
}

func run(n int, timeout, resync time.Duration, keep bool, prebuilt string) (err error) {
	dir, err := os.MkdirTemp("", "redisload-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Fprintf(os.Stderr, "temporary directory: %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	bin := prebuilt
	if bin == "" {
		bin = filepath.Join(dir, "portier")
		build := exec.Command("go", "build", "-o", bin, "github.com/portier/portier/cmd/portier")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build portier: %w", err)
		}
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
	redisUp := true
	defer func() {
		if redisUp {
			stopRedis()
		}
	}()

	res := results{n: n}
	if res.redisBefore, err = usedMemory(redisAddr); err != nil {
		return err
	}
	t0 := time.Now()
	if err := seed(redisAddr, n, "http://"+backend); err != nil {
		return err
	}
	if res.redisAfter, err = usedMemory(redisAddr); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "seeded %d keys in %v; redis used_memory %.1f MiB -> %.1f MiB\n", n,
		time.Since(t0).Round(time.Millisecond), mib(res.redisBefore), mib(res.redisAfter))

	snap := filepath.Join(dir, "routes.snap")
	config := func(name string, db int) (string, error) {
		cfg := filepath.Join(dir, name)
		yaml := fmt.Sprintf(`listeners:
  - {name: web, address: "127.0.0.1:0", protocol: http}
routes:
  static.load.test:
    - http://%s
loops: 1
redis:
  url: redis://%s/%d
  resync: %s
  snapshot_file: %s
`, backend, redisAddr, db, resync, snap)
		return cfg, os.WriteFile(cfg, []byte(yaml), 0o644)
	}

	// Baseline: the same process with no Redis routes.
	baseCfg, err := config("base.yaml", 1)
	if err != nil {
		return err
	}
	base, err := startPortier(bin, baseCfg, filepath.Join(dir, "base.log"), timeout)
	if err != nil {
		return err
	}
	if _, _, err := base.waitRoutes(0, false); err != nil {
		base.stop()
		return err
	}
	res.baseRSS, _ = procStatus(base.pid(), "VmRSS")
	base.stop()
	os.Remove(snap)

	cfg, err := config("portier.yaml", 0)
	if err != nil {
		return err
	}
	if err := measure(&res, bin, cfg, filepath.Join(dir, "portier.log"), redisAddr, snap, timeout, resync); err != nil {
		return err
	}

	// Restart with Redis down: the routes come from the snapshot.
	stopRedis()
	redisUp = false
	fi, err := os.Stat(snap)
	if err != nil {
		return fmt.Errorf("no snapshot written: %w", err)
	}
	res.snapshotBytes = fi.Size()
	p, err := startPortier(bin, cfg, filepath.Join(dir, "restart.log"), timeout)
	if err != nil {
		return err
	}
	_, addr, err := p.waitRoutes(n+1, false)
	if err == nil {
		err = routes(addr, n)
	}
	res.restart = time.Since(p.started)
	p.stop()
	if err != nil {
		return fmt.Errorf("restart from the snapshot with Redis down: %w", err)
	}
	fmt.Fprintf(os.Stderr, "restart with Redis down: serving the %d routes of the snapshot (%.1f MiB) %v after start\n",
		n+1, mib(res.snapshotBytes), res.restart.Round(time.Millisecond))

	if err := lookups(&res, snap); err != nil {
		return err
	}
	report(&res)
	return nil
}

// routes checks that portier at addr routes the last seeded name and the
// one added later.
func routes(addr string, n int) error {
	for _, host := range []string{fmt.Sprintf("h%d.load.test", n-1), "new.load.test"} {
		if body, err := get(addr, host); err != nil || body != "redisload backend" {
			return fmt.Errorf("request for %s through portier: %q %v", host, body, err)
		}
	}
	return nil
}

// portier is a running portier process and its log.
type portier struct {
	cmd     *exec.Cmd
	started time.Time
	events  chan event
	addr    string
	logPath string
	timeout time.Time
}

type event struct {
	addr     string
	routes   int       // an update line: redis_routes
	delta    bool      // the update applied a delta (not a full publish)
	reloaded bool      // a "reloaded" line (SIGHUP done)
	at       time.Time // when it was read
	err      error
}

var (
	updatedRE   = regexp.MustCompile(`msg="routes updated from redis" redis_routes=(\d+)`)
	listeningRE = regexp.MustCompile(`msg=listening listener=web address=(\S+)`)
	reloadedRE  = regexp.MustCompile(`msg=reloaded `)
)

func startPortier(bin, cfg, logPath string, timeout time.Duration) (*portier, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-config", cfg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	p := &portier{cmd: cmd, events: make(chan event, 16), logPath: logPath, started: time.Now()}
	p.timeout = p.started.Add(timeout)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() {
		defer logf.Close()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				p.events <- event{addr: m[1]}
			}
			if reloadedRE.MatchString(line) {
				p.events <- event{reloaded: true, at: time.Now()}
			}
			if m := updatedRE.FindStringSubmatch(line); m != nil {
				got, _ := strconv.Atoi(m[1])
				p.events <- event{routes: got, delta: strings.Contains(line, " changed="), at: time.Now()}
			}
		}
		p.events <- event{err: errors.New("portier's log ended (did it exit?)")}
	}()
	return p, nil
}

func (p *portier) pid() int { return p.cmd.Process.Pid }

func (p *portier) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// reloaded as the count for waitRoutes waits for the "reloaded" line.
const reloaded = -2

// waitRoutes waits for an update line with redis_routes=want (a delta or a
// full publish, as asked) and for the listening line; it returns when the
// update was read and the listener's address.
func (p *portier) waitRoutes(want int, delta bool) (time.Time, string, error) {
	deadline := time.NewTimer(time.Until(p.timeout))
	defer deadline.Stop()
	var at time.Time
	for at.IsZero() || p.addr == "" {
		select {
		case ev := <-p.events:
			switch {
			case ev.err != nil:
				return time.Time{}, "", fmt.Errorf("%v; log: %s", ev.err, p.logPath)
			case ev.addr != "":
				p.addr = ev.addr
			case ev.routes == want && ev.delta == delta && at.IsZero() && !ev.reloaded:
				at = ev.at
			case ev.reloaded && want == reloaded:
				at = ev.at
			default:
				fmt.Fprintf(os.Stderr, "update with redis_routes=%d delta=%v (waiting for %d)\n", ev.routes, ev.delta, want)
			}
		case <-deadline.C:
			return time.Time{}, "", fmt.Errorf("no `routes updated from redis` with redis_routes=%d in time; log: %s", want, p.logPath)
		}
	}
	return at, p.addr, nil
}

// measure runs portier on the seeded keys: load, one change, two resyncs.
func measure(res *results, bin, cfg, logPath, redisAddr, snap string, timeout, resync time.Duration) error {
	n := res.n
	p, err := startPortier(bin, cfg, logPath, timeout)
	if err != nil {
		return err
	}
	defer p.stop()
	at, addr, err := p.waitRoutes(n, false)
	if err != nil {
		return err
	}
	res.load = at.Sub(p.started)
	if res.rss, err = procStatus(p.pid(), "VmRSS"); err != nil {
		return err
	}
	res.loadPeak, _ = procStatus(p.pid(), "VmHWM")
	host := fmt.Sprintf("h%d.load.test", n-1)
	if body, err := get(addr, host); err != nil || body != "redisload backend" {
		return fmt.Errorf("request for %s through portier: %q %v", host, body, err)
	}
	fmt.Fprintf(os.Stderr, "routes loaded %v after start; RSS %.1f MiB (baseline %.1f MiB, peak while loading %.1f MiB); GET Host %s through %s: ok\n",
		res.load.Round(time.Millisecond), kib(res.rss), kib(res.baseRSS), kib(res.loadPeak), host, addr)

	// One change on top of the N routes.
	c, err := net.Dial("tcp", redisAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	w := bufio.NewWriter(c)
	writeCommand(w, "RPUSH", "frontend:new.load.test", "new", "http://"+backendOf(cfg))
	if err := w.Flush(); err != nil {
		return err
	}
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != ":2\r\n" {
		return fmt.Errorf("RPUSH frontend:new.load.test: %q %v", line, err)
	}
	pushed := time.Now()
	at, _, err = p.waitRoutes(n+1, true)
	if err != nil {
		return err
	}
	res.change = at.Sub(pushed)
	if err := routes(addr, n); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "one RPUSH on top of %d routes applied after %v\n", n, res.change.Round(time.Millisecond))

	// The resync after the change reads every key again and finds nothing
	// the delta missed; the delta stays overlaid on the table. Nothing is
	// logged, but it rewrites the snapshot file of a store over 100,000
	// routes (smaller ones are rewritten per change: then wait a period
	// and a margin for the scan).
	if err := resetPeak(p.pid()); err != nil {
		return err
	}
	if err := waitSnapshot(snap, pushed, time.Until(p.timeout)); err != nil {
		return err
	}
	if n <= 100_000 {
		time.Sleep(resync + resync/2)
	}
	res.resyncPeak, _ = procStatus(p.pid(), "VmHWM")
	fmt.Fprintf(os.Stderr, "full resync: peak RSS %.1f MiB\n", kib(res.resyncPeak))
	// A rebuild of the whole table from the routes held (SIGHUP; a resync
	// that finds missed changes does the same after its scan).
	if err := resetPeak(p.pid()); err != nil {
		return err
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return err
	}
	if _, _, err := p.waitRoutes(reloaded, false); err != nil {
		return err
	}
	res.rebuildPeak, _ = procStatus(p.pid(), "VmHWM")
	res.rebuildRSS, _ = procStatus(p.pid(), "VmRSS")
	fmt.Fprintf(os.Stderr, "table rebuild (SIGHUP): peak RSS %.1f MiB, RSS after %.1f MiB\n", kib(res.rebuildPeak), kib(res.rebuildRSS))
	return routes(addr, n)
}

// waitSnapshot waits until the snapshot file has the route added after
// t: a file written at t or before (the first full publish's is written
// after the routes are served) cannot have it.
func waitSnapshot(path string, t time.Time, d time.Duration) error {
	deadline := time.Now().Add(d)
	var seen time.Time
	for {
		if fi, err := os.Stat(path); err == nil && fi.ModTime().After(t) && !fi.ModTime().Equal(seen) {
			seen = fi.ModTime()
			if set, _, err := redisroutes.ReadSnapshot(path); err == nil && set.Has("new.load.test") {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("snapshot %s not rewritten after the change", path)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// backendOf returns the backend address the config's static route names.
func backendOf(cfg string) string {
	b, _ := os.ReadFile(cfg)
	m := regexp.MustCompile(`- http://(\S+)`).FindSubmatch(b)
	if m == nil {
		return ""
	}
	return string(m[1])
}

// lookups loads the snapshot into a table in this process and times
// Table.Lookup over names spread across every route, so that nearly every
// lookup misses the CPU caches.
func lookups(res *results, snap string) error {
	runtime.GC()
	start := time.Now()
	set, skipped, err := redisroutes.ReadSnapshot(snap)
	if err != nil || skipped != 0 {
		return fmt.Errorf("read snapshot: %v (%d skipped)", err, skipped)
	}
	res.snapshotRead = time.Since(start)
	b := balancer.NewBuilder(context.Background(), set.Len(), balancer.TableOptions{})
	if err := b.AddSet(set, nil); err != nil {
		return err
	}
	t, err := b.Table("")
	if err != nil {
		return err
	}
	res.snapshotLoad = time.Since(start)
	const names = 1 << 16
	r := rand.New(rand.NewPCG(1, 2))
	hit := make([][]byte, names)
	miss := make([][]byte, names)
	for i := range hit {
		k := r.IntN(res.n)
		hit[i] = fmt.Appendf(nil, "h%d.load.test", k)
		miss[i] = fmt.Appendf(nil, "h%d.missing.test", k)
	}
	timeIt := func(names [][]byte, wantHit bool) (time.Duration, error) {
		const rounds = 30
		start := time.Now()
		found := 0
		for range rounds {
			for _, name := range names {
				if t.Lookup(balancer.SchemeHTTP, name) != nil {
					found++
				}
			}
		}
		d := time.Since(start) / time.Duration(rounds*len(names))
		if want := map[bool]int{true: rounds * len(names), false: 0}[wantHit]; found != want {
			return 0, fmt.Errorf("lookups found %d pools, want %d", found, want)
		}
		return d, nil
	}
	if res.hit, err = timeIt(hit, true); err != nil {
		return err
	}
	if res.miss, err = timeIt(miss, false); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "snapshot read in %v, table built in %v; Lookup over %d random names: hit %v, miss %v\n",
		res.snapshotRead.Round(time.Millisecond), res.snapshotLoad.Round(time.Millisecond), names, res.hit, res.miss)
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
func kib(k int64) float64 { return float64(k) / 1024 }

func report(r *results) {
	growth := float64(r.rss-r.baseRSS) * 1024 / float64(r.n)
	perKey := float64(r.redisAfter-r.redisBefore) / float64(r.n)
	fmt.Printf("| routes | load after start | portier RSS (baseline) | RSS growth per route | Redis used_memory per key | one change live after | peak RSS: load / full resync / table rebuild | restart from snapshot, Redis down | Lookup hit / miss |\n")
	fmt.Printf("|---|---|---|---|---|---|---|---|---|\n")
	fmt.Printf("| %d | %.2f s | %.1f MiB (%.1f MiB) | %.0f B | %.0f B | %v | %.1f / %.1f / %.1f MiB | %v | %.0f ns / %.0f ns |\n",
		r.n, r.load.Seconds(), kib(r.rss), kib(r.baseRSS), growth, perKey, r.change.Round(time.Millisecond),
		kib(r.loadPeak), kib(r.resyncPeak), kib(r.rebuildPeak), r.restart.Round(time.Millisecond),
		float64(r.hit.Nanoseconds()), float64(r.miss.Nanoseconds()))
}

// procStatus reads a field in KiB (VmRSS, VmHWM) of /proc/pid/status.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// resetPeak resets the peak RSS (VmHWM) of pid to its current RSS.
func resetPeak(pid int) error {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return fmt.Errorf("reset peak RSS: %w", err)
	}
	return nil
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

// usedMemory returns Redis's used_memory in bytes.
func usedMemory(addr string) (int64, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	w := bufio.NewWriter(c)
	writeCommand(w, "INFO", "memory")
	if err := w.Flush(); err != nil {
		return 0, err
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return 0, fmt.Errorf("INFO memory: %w", err)
		}
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
}

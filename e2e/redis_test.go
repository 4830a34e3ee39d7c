package e2e

// Tests of the Redis route source through the real binary, against a real
// redis-server driven with the real redis-cli (internal/redistest). They
// skip loudly without Redis unless PORTIER_REQUIRE_REDIS=1.

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portier/portier/internal/redistest"
)

// liveDeadline is the requirement for a change made in Redis to be served:
// visible within one second.
const liveDeadline = time.Second

// reconnectDeadline: after Redis comes back, the source reconnects within
// its backoff (capped at 5 s), plus a full sync; 7 s leaves room for one
// more attempt on a loaded machine.
const reconnectDeadline = 7 * time.Second

// nameBackend starts an HTTP backend that answers every request with its
// name, so that a response tells which backend served it.
func nameBackend(t *testing.T, name string) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name)
	}))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// hit sends one request with Host host on a fresh connection (portier
// routes a connection by its first request, so reuse would hide changes)
// and returns the status and the body. status 0 means the request failed.
func hit(addr, host string) (int, string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host); err != nil {
		return 0, "", err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return 0, "", err
	}
	resp := string(b)
	var code int
	if _, err := fmt.Sscanf(resp, "HTTP/1.1 %d", &code); err != nil {
		return 0, "", fmt.Errorf("bad response %q", resp)
	}
	_, body, _ := strings.Cut(resp, "\r\n\r\n")
	return code, body, nil
}

// served is the backend name that answered, "404" for portier's no-route
// answer, or a description of anything else.
func served(addr, host string) string {
	code, body, err := hit(addr, host)
	switch {
	case err != nil:
		return "error: " + err.Error()
	case code == 200:
		return body
	case code == 404:
		return "404"
	}
	return fmt.Sprintf("status %d: %q", code, body)
}

// waitServed polls until cond holds for the answers to host, within d, and
// returns how long it took; it logs the measured delay.
func waitServed(t *testing.T, p *process, host, what string, d time.Duration, cond func(got string) bool) time.Duration {
	t.Helper()
	start := time.Now()
	last := ""
	for {
		last = served(p.addr("web"), host)
		if cond(last) {
			el := time.Since(start)
			t.Logf("%s: visible after %v", what, el.Round(time.Millisecond))
			return el
		}
		if time.Since(start) > d {
			t.Fatalf("%s: not visible within %v (last answer %q)\nportier log:\n%s", what, d, last, p.logText())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func is(want string) func(string) bool { return func(got string) bool { return got == want } }

// waitOnly polls until n answers in a row come from want: with round robin
// over several backends that cannot happen while another one is still in
// the route.
func waitOnly(t *testing.T, p *process, host, want, what string, d time.Duration) {
	t.Helper()
	const n = 6
	run := 0
	waitServed(t, p, host, what, d, func(got string) bool {
		if got == want {
			run++
		} else {
			run = 0
		}
		return run >= n
	})
}

// answers sends n requests and counts the answers.
func answers(p *process, host string, n int) map[string]int {
	got := map[string]int{}
	for range n {
		got[served(p.addr("web"), host)]++
	}
	return got
}

// waitLog waits until the log of p has a line containing s.
func waitLog(t *testing.T, p *process, s string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(p.logText(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q within %v\n%s", s, d, p.logText())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logLines returns the lines of p's log that contain s.
func logLines(p *process, s string) []string {
	var out []string
	for _, l := range strings.Split(p.logText(), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// redisYAML is a config with one http listener, a static route
// static.test -> staticBackend and a redis section; extra is appended to
// the redis section (indented lines).
func redisYAML(r *redistest.Server, staticBackend, extra string) string {
	return fmt.Sprintf(`listeners:
  - {name: web, address: "127.0.0.1:0", protocol: http}
routes:
  static.test:
    - http://%s
loops: 1
redis:
  url: %s
%s`, staticBackend, r.URL(), extra)
}

// startRedisPortier starts portier and waits until its first sync with
// Redis is done, so that later delays measure following changes only.
func startRedisPortier(t *testing.T, yaml string) *process {
	t.Helper()
	p := startPortier(t, yaml)
	waitLog(t, p, "redis connected", 10*time.Second)
	return p
}

func TestRedisRoutesLive(t *testing.T) {
	r := redistest.Start(t)
	b1, b2, b3 := nameBackend(t, "b1"), nameBackend(t, "b2"), nameBackend(t, "b3")
	bStatic, bOverride := nameBackend(t, "static"), nameBackend(t, "override")
	p := startRedisPortier(t, redisYAML(r, bStatic, ""))

	if got := served(p.addr("web"), "r1.test"); got != "404" {
		t.Fatalf("r1.test before any key: %q, want 404", got)
	}
	if got := served(p.addr("web"), "static.test"); got != "static" {
		t.Fatalf("static.test: %q, want static", got)
	}

	r.Cli("RPUSH", "frontend:r1.test", "r1", "http://"+b1)
	waitServed(t, p, "r1.test", "RPUSH new route", liveDeadline, is("b1"))

	r.Cli("RPUSH", "frontend:r1.test", "http://"+b2)
	waitServed(t, p, "r1.test", "RPUSH second backend", liveDeadline, is("b2"))
	if got := answers(p, "r1.test", 20); got["b1"] == 0 || got["b2"] == 0 || got["b1"]+got["b2"] != 20 {
		t.Fatalf("two backends: answers %v, want both b1 and b2 only", got)
	}

	r.Cli("LREM", "frontend:r1.test", "0", "http://"+b1)
	waitOnly(t, p, "r1.test", "b2", "LREM first backend", liveDeadline)
	if got := answers(p, "r1.test", 20); got["b2"] != 20 {
		t.Fatalf("after LREM: answers %v, want only b2", got)
	}

	// Index 1 is the only backend (index 0 is the identifier).
	r.Cli("LSET", "frontend:r1.test", "1", "http://"+b3)
	waitOnly(t, p, "r1.test", "b3", "LSET backend", liveDeadline)
	if got := answers(p, "r1.test", 20); got["b3"] != 20 {
		t.Fatalf("after LSET: answers %v, want only b3", got)
	}

	r.Cli("DEL", "frontend:r1.test")
	waitServed(t, p, "r1.test", "DEL route", liveDeadline, is("404"))

	// A Redis name overrides the file's, and the file's comes back when the
	// key goes.
	r.Cli("RPUSH", "frontend:static.test", "static", "http://"+bOverride)
	waitOnly(t, p, "static.test", "override", "Redis overrides file route", liveDeadline)
	r.Cli("DEL", "frontend:static.test")
	waitOnly(t, p, "static.test", "static", "file route restored after DEL", liveDeadline)

	if got := logLines(p, `msg="routes updated from redis"`); len(got) < 7 {
		t.Errorf("%d 'routes updated from redis' lines, want one per change (7+):\n%s", len(got), strings.Join(got, "\n"))
	}
	last := logLines(p, `msg="routes updated from redis"`)
	if l := last[len(last)-1]; !strings.Contains(l, "redis_routes=0 routes=1") {
		t.Errorf("last update line %q, want redis_routes=0 routes=1", l)
	}
}

func TestRedisTwoProxiesFollow(t *testing.T) {
	r := redistest.Start(t)
	b1, b2 := nameBackend(t, "b1"), nameBackend(t, "b2")
	yaml := redisYAML(r, b2, "")
	ps := []*process{startRedisPortier(t, yaml), startRedisPortier(t, yaml)}

	// Each proxy is polled from its own goroutine, so that one's delay does
	// not add to the other's.
	both := func(what string, cond func(string) bool) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]string, len(ps))
		for i, p := range ps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				last := ""
				for time.Since(start) <= liveDeadline {
					if last = served(p.addr("web"), "two.test"); cond(last) {
						t.Logf("%s: proxy %d follows after %v", what, i, time.Since(start).Round(time.Millisecond))
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
				errs[i] = fmt.Sprintf("%s: proxy %d did not follow within %v (last %q)\n%s", what, i, liveDeadline, last, p.logText())
			}()
		}
		wg.Wait()
		for _, e := range errs {
			if e != "" {
				t.Fatal(e)
			}
		}
	}
	r.Cli("RPUSH", "frontend:two.test", "two", "http://"+b1)
	both("RPUSH", is("b1"))
	r.Cli("LSET", "frontend:two.test", "1", "http://"+b2)
	both("LSET", is("b2"))
	r.Cli("DEL", "frontend:two.test")
	both("DEL", is("404"))
}

func TestRedisOutageUnderLoad(t *testing.T) {
	r := redistest.Start(t)
	b1, b2 := nameBackend(t, "b1"), nameBackend(t, "b2")
	r.Cli("RPUSH", "frontend:load.test", "load", "http://"+b1)
	p := startRedisPortier(t, redisYAML(r, b2, ""))
	waitServed(t, p, "load.test", "route present before the load", liveDeadline, is("b1"))

	// A few clients, each on fresh connections, bounded in time (4 s) and
	// in count; every answer must come from b1.
	const (
		clients  = 3
		loadTime = 4 * time.Second
		maxReqs  = 20000 // per client: time, not count, should end the load
	)
	var ok, failed atomic.Int64
	var firstFail atomic.Value
	stop := time.Now().Add(loadTime)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < maxReqs && time.Now().Before(stop); n++ {
				if got := served(p.addr("web"), "load.test"); got == "b1" {
					ok.Add(1)
				} else {
					failed.Add(1)
					firstFail.CompareAndSwap(nil, got)
				}
			}
		}()
	}
	time.Sleep(time.Second)
	r.Stop()
	down := time.Now()
	atStop := ok.Load() + failed.Load()
	time.Sleep(1500 * time.Millisecond)
	r.Restart()
	atRestart := ok.Load() + failed.Load()
	t.Logf("redis-server was down for %v", time.Since(down).Round(time.Millisecond))
	wg.Wait()
	total := ok.Load() + failed.Load()
	t.Logf("load: %d requests ok, %d failed (%d before the stop, %d during the outage, %d after the restart)",
		ok.Load(), failed.Load(), atStop, atRestart-atStop, total-atRestart)
	// The load must span the stop and the restart, or it proves nothing.
	if atStop == 0 || atRestart == atStop || total == atRestart {
		t.Fatalf("the load did not span the outage: %d before, %d during, %d after", atStop, atRestart-atStop, total-atRestart)
	}
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed during the Redis outage; first: %v\n%s", failed.Load(), firstFail.Load(), p.logText())
	}
	if ok.Load() == 0 {
		t.Fatal("no request was made")
	}
	if len(logLines(p, "redis unavailable")) == 0 {
		t.Errorf("portier did not notice the outage (no 'redis unavailable' line):\n%s", p.logText())
	}

	// After the restart, changes flow again: the source reconnected,
	// re-enabled notifications on the fresh server and resubscribed.
	r.Cli("RPUSH", "frontend:after.test", "after", "http://"+b2)
	waitServed(t, p, "after.test", "RPUSH after the Redis restart", reconnectDeadline, is("b2"))
	if got := served(p.addr("web"), "load.test"); got != "b1" {
		t.Errorf("load.test after the restart: %q, want b1", got)
	}
}

func TestRedisDownAtStart(t *testing.T) {
	r := redistest.Start(t)
	b1, bStatic := nameBackend(t, "b1"), nameBackend(t, "static")
	// The route is saved with the data set and comes back with the server.
	r.Cli("RPUSH", "frontend:late.test", "late", "http://"+b1)
	r.Stop()

	p := startPortier(t, redisYAML(r, bStatic, ""))
	if got := served(p.addr("web"), "static.test"); got != "static" {
		t.Fatalf("static.test with Redis down: %q, want static", got)
	}
	if got := served(p.addr("web"), "late.test"); got != "404" {
		t.Fatalf("late.test with Redis down: %q, want 404", got)
	}
	// Let portier fail a few attempts, so that it is in its backoff.
	time.Sleep(1500 * time.Millisecond)
	if got := served(p.addr("web"), "static.test"); got != "static" {
		t.Fatalf("static.test while Redis stays down: %q, want static", got)
	}
	r.Restart()
	waitServed(t, p, "late.test", "route of a Redis started after portier", reconnectDeadline, is("b1"))
	if got := served(p.addr("web"), "static.test"); got != "static" {
		t.Errorf("static.test after Redis came up: %q, want static", got)
	}
}

func TestRedisSnapshotFile(t *testing.T) {
	r := redistest.Start(t)
	b1, bStatic := nameBackend(t, "b1"), nameBackend(t, "static")
	snap := filepath.Join(t.TempDir(), "routes.snapshot")
	yaml := redisYAML(r, bStatic, fmt.Sprintf("  snapshot_file: %s\n", snap))

	p := startRedisPortier(t, yaml)
	r.Cli("RPUSH", "frontend:snap.test", "snap", "http://"+b1)
	waitServed(t, p, "snap.test", "RPUSH with a snapshot file", liveDeadline, is("b1"))
	// The snapshot is written after the publish: wait until it names the route.
	deadline := time.Now().Add(liveDeadline)
	for {
		b, _ := os.ReadFile(snap)
		if strings.Contains(string(b), "snap.test") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshot %s does not name snap.test within %v: %q", snap, liveDeadline, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.stop(t); err != nil {
		t.Fatalf("portier exit: %v", err)
	}
	r.Stop()

	// Redis stays down: the route must come from the snapshot.
	p2 := startPortier(t, yaml)
	waitServed(t, p2, "snap.test", "route from the snapshot with Redis down", liveDeadline, is("b1"))
	if got := served(p2.addr("web"), "static.test"); got != "static" {
		t.Errorf("static.test: %q, want static", got)
	}
	if len(logLines(p2, "routes from snapshot")) != 1 {
		t.Errorf("want one 'routes from snapshot' line:\n%s", p2.logText())
	}
	if len(logLines(p2, "redis connected")) != 0 {
		t.Fatalf("portier connected to a stopped Redis?\n%s", p2.logText())
	}

	// When Redis returns, it is the source again: a deletion there wins
	// over the snapshot.
	r.Restart()
	waitLog(t, p2, "redis connected", reconnectDeadline)
	r.Cli("DEL", "frontend:snap.test")
	waitServed(t, p2, "snap.test", "DEL after Redis came back", liveDeadline, is("404"))
}

func TestRedisMalformed(t *testing.T) {
	r := redistest.Start(t)
	b1, b2, bStatic := nameBackend(t, "b1"), nameBackend(t, "b2"), nameBackend(t, "static")
	// A short resync: several full syncs pass over the bad key, and it must
	// still be logged once only.
	p := startRedisPortier(t, redisYAML(r, bStatic, "  resync: 500ms\n"))

	r.Cli("RPUSH", "frontend:good.test", "good", "http://"+b1)
	waitServed(t, p, "good.test", "good route", liveDeadline, is("b1"))

	r.Cli("RPUSH", "frontend:bad.test", "bad", "htp://127.0.0.1:1")
	waitLog(t, p, "frontend:bad.test", liveDeadline)
	if got := served(p.addr("web"), "bad.test"); got != "404" {
		t.Errorf("bad.test: %q, want 404", got)
	}
	if got := served(p.addr("web"), "good.test"); got != "b1" {
		t.Errorf("good.test next to a bad key: %q, want b1", got)
	}
	// Other changes still apply while the bad key stays.
	r.Cli("RPUSH", "frontend:other.test", "other", "http://"+b2)
	waitServed(t, p, "other.test", "new route next to a bad key", liveDeadline, is("b2"))

	time.Sleep(1500 * time.Millisecond) // three resyncs
	// portier's own 404 for the request above names bad.test too: only
	// the other lines count.
	var lines []string
	for _, l := range logLines(p, "bad.test") {
		if !strings.Contains(l, "msg=rejected") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("%d log lines name bad.test, want 1:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	t.Logf("the line: %s", lines[0])
	if !strings.Contains(lines[0], "key=frontend:bad.test") || !strings.Contains(lines[0], "htp") {
		t.Errorf("line %q does not name the key and the bad URL", lines[0])
	}
	for _, h := range []string{"good.test", "other.test", "static.test"} {
		want := map[string]string{"good.test": "b1", "other.test": "b2", "static.test": "static"}[h]
		if got := served(p.addr("web"), h); got != want {
			t.Errorf("%s after resyncs: %q, want %q", h, got, want)
		}
	}
	// Fixing the key makes the route appear.
	r.Cli("LSET", "frontend:bad.test", "1", "http://"+b2)
	waitServed(t, p, "bad.test", "fixed key", liveDeadline, is("b2"))
}

func TestRouteCommand(t *testing.T) {
	r := redistest.Start(t)
	b1, b2, bStatic := nameBackend(t, "b1"), nameBackend(t, "b2"), nameBackend(t, "static")
	yaml := redisYAML(r, bStatic, "")
	cfg := filepath.Join(t.TempDir(), "portier.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startRedisPortier(t, yaml)

	route := func(wantCode int, args ...string) string {
		t.Helper()
		out, code := runPortier(t, append([]string{"route", "-config", cfg}, args...)...)
		if code != wantCode {
			t.Fatalf("portier route %s: exit %d, want %d: %s", strings.Join(args, " "), code, wantCode, out)
		}
		return out
	}
	u1, u2 := "http://"+b1, "http://"+b2

	// -config may also follow the command words.
	out, code := runPortier(t, "route", "add", "app.test", u1, "-config", cfg)
	if code != 0 {
		t.Fatalf("route add with a trailing -config: exit %d: %s", code, out)
	}
	route(0, "rm", "app.test")
	if got := r.Cli("EXISTS", "frontend:app.test"); got != "(integer) 0" && got != "0" {
		t.Fatalf("rm left the key: EXISTS = %q", got)
	}

	route(0, "add", "app.test", u1)
	waitServed(t, p, "app.test", "route add", liveDeadline, is("b1"))
	if got := r.Cli("LRANGE", "frontend:app.test", "0", "-1"); !strings.Contains(got, "app.test") || !strings.Contains(got, u1) {
		t.Errorf("hipache list after add: %q", got)
	}
	if out := route(0, "ls"); strings.TrimSpace(out) != "app.test "+u1 {
		t.Errorf("ls: %q, want %q", out, "app.test "+u1)
	}

	route(0, "add", "app.test", u2)
	waitServed(t, p, "app.test", "route add second backend", liveDeadline, is("b2"))
	if out := route(0, "ls"); strings.TrimSpace(out) != "app.test "+u1+" "+u2 {
		t.Errorf("ls: %q, want %q", out, "app.test "+u1+" "+u2)
	}
	if got := answers(p, "app.test", 10); got["b1"]+got["b2"] != 10 || got["b1"] == 0 || got["b2"] == 0 {
		t.Errorf("two backends: answers %v", got)
	}

	route(0, "rm", "app.test", u1)
	waitOnly(t, p, "app.test", "b2", "route rm one backend", liveDeadline)

	route(0, "rm", "app.test")
	waitServed(t, p, "app.test", "route rm whole route", liveDeadline, is("404"))
	route(3, "rm", "app.test")
	if out := route(0, "ls"); strings.TrimSpace(out) != "" {
		t.Errorf("ls after rm: %q, want nothing", out)
	}
	if got := served(p.addr("web"), "static.test"); got != "static" {
		t.Errorf("static.test: %q, want static", got)
	}
}

package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portier/portier/internal/testutil"
)

// Operating portier: metrics and admin endpoints, reload, graceful drain,
// zero-downtime restart, per-IP limits and the access log, all against the
// real binary.

// opsConfig is one http listener "web" on an ephemeral port with the given
// routes (YAML lines under routes:) and any further top-level YAML.
func opsConfig(routes, extra string) string {
	return fmt.Sprintf(`listeners:
  - {name: web, address: "127.0.0.1:0", protocol: http}
routes:
%s
%s`, routes, extra)
}

func TestOpsMetrics(t *testing.T) {
	be := startOpsBackend(t, "alpha", nil)
	p := startPortier(t, opsConfig("  a.test: [http://"+be.addr+"]", "admin: 127.0.0.1:0\n"))
	web, admin := p.addr("web"), opsAdminAddr(t, p)

	const good, unknown = 12, 3
	c := opsClient(nil)
	for i := 0; i < good; i++ {
		opsWant200(t, web, "a.test", "alpha")
	}
	for i := 0; i < unknown; i++ {
		if st, _, err := opsGet(c, web, "nope.test", "/"); err != nil || st != 404 {
			t.Fatalf("unknown name: status %d err %v; want 404", st, err)
		}
	}

	web1 := map[string]string{"listener": "web"}
	fwd := map[string]string{"listener": "web", "outcome": "forwarded"}
	rej := map[string]string{"listener": "web", "outcome": "rejected"}
	// Outcomes are counted when a connection ends, which may trail the
	// client's last read a little.
	var text string
	if _, ok := opsWait(5*time.Second, func() bool {
		text = opsScrape(t, admin)
		f, _ := opsMetric(text, "portier_connections_total", fwd)
		r, _ := opsMetric(text, "portier_connections_total", rej)
		return f == good && r == unknown
	}); !ok {
		t.Fatalf("connections_total did not reach forwarded=%d rejected=%d:\n%s", good, unknown,
			opsGrep(text, "portier_connections_total"))
	}
	checks := []struct {
		name   string
		labels map[string]string
		ok     func(float64) bool
		want   string
	}{
		{"portier_connections_accepted_total", web1, func(v float64) bool { return v == good+unknown }, fmt.Sprint(good + unknown)},
		{"portier_connections_open", web1, func(v float64) bool { return v == 0 }, "0"},
		{"portier_bytes_total", map[string]string{"listener": "web", "direction": "up"}, func(v float64) bool { return v > 0 }, "> 0"},
		// Every forwarded answer carries at least the body "alpha".
		{"portier_bytes_total", map[string]string{"listener": "web", "direction": "down"}, func(v float64) bool { return v >= good*5 }, fmt.Sprintf(">= %d", good*5)},
		{"portier_rejections_total", map[string]string{"reason": "unknown_name"}, func(v float64) bool { return v == unknown }, fmt.Sprint(unknown)},
		{"portier_rejections_total", map[string]string{"reason": "no_backend"}, func(v float64) bool { return v == 0 }, "0"},
		// Requests share pooled backend connections: at least one connect,
		// never more than one per request, each counted in both metrics.
		{"portier_backend_connect_duration_seconds_count", nil, func(v float64) bool { return v >= 1 && v <= good }, fmt.Sprintf("1..%d", good)},
		{"portier_backend_connects_total", nil, func(v float64) bool {
			n, _ := opsMetric(text, "portier_backend_connect_duration_seconds_count", nil)
			return v == n
		}, "portier_backend_connect_duration_seconds_count"},
		{"portier_backend_pool_idle", nil, func(v float64) bool { return v >= 1 }, ">= 1"},
		{"portier_backend_pool_retries_total", nil, func(v float64) bool { return v == 0 }, "0"},
		{"portier_backend_connect_failures_total", nil, func(v float64) bool { return v == 0 }, "0"},
		{"portier_routes", nil, func(v float64) bool { return v == 1 }, "1"},
		{"portier_backend_up", map[string]string{"backend": be.addr, "scheme": "http"}, func(v float64) bool { return v == 1 }, "1"},
	}
	for _, ck := range checks {
		v, ok := opsMetric(text, ck.name, ck.labels)
		if !ok || !ck.ok(v) {
			t.Errorf("%s%v = %v (present %v), want %s\n%s", ck.name, ck.labels, v, ok, ck.want, opsGrep(text, ck.name))
		}
	}

	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + admin + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return resp, b
	}
	if resp, b := get("/healthz"); resp.StatusCode != 200 {
		t.Errorf("/healthz: %d %q", resp.StatusCode, b)
	}
	resp, b := get("/routes")
	var routes struct {
		Routes []struct {
			Name     string
			Backends []struct {
				Addr string
				Up   bool
			}
		}
	}
	if err := json.Unmarshal(b, &routes); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/routes: %d %v\n%s", resp.StatusCode, err, b)
	}
	if len(routes.Routes) != 1 || routes.Routes[0].Name != "a.test" || len(routes.Routes[0].Backends) != 1 ||
		routes.Routes[0].Backends[0].Addr != be.addr || !routes.Routes[0].Backends[0].Up {
		t.Errorf("/routes does not list a.test -> %s (up):\n%s", be.addr, b)
	}
	// Both profiles are gzip-compressed protobuf; a CPU profile of one
	// second proves the handler samples rather than failing fast.
	for _, path := range []string{"/debug/pprof/profile?seconds=1", "/debug/pprof/heap"} {
		resp, b := get(path)
		if resp.StatusCode != 200 || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
			t.Errorf("%s: status %d, %d bytes starting %x; want 200 and gzip magic 1f8b", path, resp.StatusCode, len(b), b[:min(len(b), 8)])
		}
	}
	if resp, b := get("/debug/pprof/heap?debug=1"); resp.StatusCode != 200 || !bytes.Contains(b, []byte("heap profile")) {
		t.Errorf("/debug/pprof/heap?debug=1: %d %q", resp.StatusCode, b[:min(len(b), 200)])
	}
}

func TestOpsReload(t *testing.T) {
	a := startOpsBackend(t, "alpha", nil)
	b := startOpsBackend(t, "beta", nil)
	routeA := "  a.test: [http://" + a.addr + "]"
	routeB := "  b.test: [http://" + b.addr + "]"
	p := startPortier(t, opsConfig(routeA, ""))
	web, cfg := p.addr("web"), opsConfigPath(t, p)

	// One established keep-alive connection, used before and after reloads.
	kc, err := net.Dial("tcp", web)
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	br := bufio.NewReader(kc)
	keepAlive := func(when string) {
		t.Helper()
		_ = kc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(kc, "GET /k HTTP/1.1\r\nHost: a.test\r\n\r\n"); err != nil {
			t.Fatalf("%s: established connection: write: %v", when, err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: established connection: %v", when, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || string(body) != "alpha" || resp.Close {
			t.Fatalf("%s: established connection: %d %q %v close=%v", when, resp.StatusCode, body, err, resp.Close)
		}
	}
	keepAlive("before reload")
	if st, _, err := opsGet(opsClient(nil), web, "b.test", "/"); err != nil || st != 404 {
		t.Fatalf("b.test before reload: %d %v, want 404", st, err)
	}

	hup := func(yaml, wantLog string) {
		t.Helper()
		before := strings.Count(p.logText(), wantLog)
		if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if _, ok := opsWait(5*time.Second, func() bool { return strings.Count(p.logText(), wantLog) > before }); !ok {
			t.Fatalf("no new %q log line after SIGHUP:\n%s", wantLog, p.logText())
		}
	}

	hup(opsConfig(routeA+"\n"+routeB, ""), "msg=reloaded")
	// The table is swapped before "reloaded" is logged; the poll only
	// covers a slow machine.
	if d, ok := opsWait(3*time.Second, func() bool {
		st, body, err := opsGet(opsClient(nil), web, "b.test", "/")
		return err == nil && st == 200 && body == "beta"
	}); !ok {
		t.Fatalf("b.test not served within %v of the reload", d)
	}
	keepAlive("after reload")
	opsWant200(t, web, "a.test", "alpha")
	if strings.Contains(p.logText(), "need a restart") {
		t.Errorf("a routes-only reload warned about a restart:\n%s", p.logText())
	}

	broken := []struct{ name, yaml string }{
		{"invalid YAML", opsConfig(routeA+"\n  b.test: [http://"+b.addr, "")},
		{"bad backend URL", opsConfig(routeA+"\n  b.test: [htp://"+b.addr+"]", "")},
		{"no listeners", "routes:\n" + routeA + "\n"},
	}
	for _, bc := range broken {
		hup(bc.yaml, "reload failed")
		opsWant200(t, web, "a.test", "alpha")
		opsWant200(t, web, "b.test", "beta")
		keepAlive("after broken reload (" + bc.name + ")")
	}
	if n := strings.Count(p.logText(), "level=ERROR msg=\"reload failed"); n != len(broken) {
		t.Errorf("%d error lines \"reload failed\", want %d:\n%s", n, len(broken), p.logText())
	}
}

func TestOpsDrain(t *testing.T) {
	const half = 64 << 10
	payload := make([]byte, 2*half)
	for i := range payload {
		payload[i] = byte(i % 251)
	}
	for _, tc := range []struct {
		name string
		// keepAlive: the client does not ask to close and the backend keeps
		// the connection open after its answer, as keep-alive peers do.
		keepAlive bool
	}{
		{"connection close", false},
		{"keep-alive", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := testutil.RawBackend(t, func(c *net.TCPConn) {
				br := bufio.NewReader(c)
				if testutil.SkipHead(br) != nil {
					return
				}
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(payload))
				c.Write(payload[:half])
				time.Sleep(time.Second)
				c.Write(payload[half:])
				if tc.keepAlive {
					_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
					_, _ = br.ReadByte() // wait for a next request that never comes
				}
			})
			p := startPortier(t, opsConfig("  d.test: [http://"+be+"]", "timeouts: {shutdown: 10s}\n"))
			web := p.addr("web")

			c, err := net.Dial("tcp", web)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			req := "GET /slow HTTP/1.1\r\nHost: d.test\r\n"
			if !tc.keepAlive {
				req += "Connection: close\r\n"
			}
			io.WriteString(c, req+"\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, half)
			if _, err := io.ReadFull(resp.Body, got); err != nil {
				t.Fatal(err)
			}

			sigAt := time.Now()
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			var dialErr error
			refusedAfter, ok := opsWait(2*time.Second, func() bool {
				nc, err := net.DialTimeout("tcp", web, time.Second)
				if err == nil {
					nc.Close()
					return false
				}
				dialErr = err
				// A connection whose handshake the kernel finished just
				// before the listener closed is reset: keep trying.
				return !errors.Is(err, syscall.ECONNRESET)
			})
			if !ok || !opsIsRefused(dialErr) {
				t.Errorf("new connections not refused within %v of SIGTERM (last error %v)", refusedAfter, dialErr)
			}
			if opsExited(p) {
				t.Fatalf("portier exited before the response in flight finished:\n%s", p.logText())
			}

			rest, err := io.ReadAll(resp.Body)
			got = append(got, rest...)
			if err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("response after SIGTERM: %d of %d bytes, intact %v, err %v", len(got), len(payload), bytes.Equal(got, payload), err)
			}
			doneAt := time.Now()
			if !tc.keepAlive {
				// As any client does once a "Connection: close" answer is
				// complete; portier passes half-closes through, so it waits
				// for this.
				c.Close()
			}

			select {
			case err := <-p.done:
				exitAt := time.Now()
				t.Logf("refused %v after SIGTERM; response done %v after; exit %v after the response",
					refusedAfter.Round(time.Millisecond), doneAt.Sub(sigAt).Round(time.Millisecond), exitAt.Sub(doneAt).Round(time.Millisecond))
				if err != nil {
					t.Errorf("exit: %v, want 0\n%s", err, p.logText())
				}
				// shutdown is 10s: an exit this soon means portier did not
				// wait for the deadline once nothing was in flight.
				if exitAt.Sub(doneAt) > 3*time.Second {
					t.Errorf("exited %v after the response ended; want well before timeouts.shutdown (10s)\n%s",
						exitAt.Sub(doneAt), p.logText())
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("portier did not exit after SIGTERM\n%s", p.logText())
			}
		})
	}
}

// opsMigrateReq turns on net.ipv4.tcp_migrate_req for the test. Without it
// Linux resets the connections still queued on a SO_REUSEPORT listener when
// that socket closes, instead of handing them to another listener of the
// group, so a restart would drop a few clients for a kernel reason.
func opsMigrateReq(t *testing.T) {
	const path = "/proc/sys/net/ipv4/tcp_migrate_req"
	old, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(old)) == "1" {
		return
	}
	if err == nil {
		err = os.WriteFile(path, []byte("1\n"), 0o644)
	}
	if err != nil {
		t.Skipf("!!! SKIPPING the zero-downtime restart test: cannot set %s to 1 (%v). Linux resets connections "+
			"queued on a closing SO_REUSEPORT socket unless it is 1 (kernel 5.14+, needs root); without it this "+
			"test would fail on the kernel, not on portier. !!!", path, err)
	}
	t.Cleanup(func() { _ = os.WriteFile(path, old, 0o644) })
}

func TestOpsRestartUnderLoad(t *testing.T) {
	opsMigrateReq(t)
	be := startOpsBackend(t, "alpha", nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := fmt.Sprintf(`listeners:
  - {name: web, address: "%s", protocol: http}
routes:
  r.test: [http://%s]
`, addr, be.addr)

	a := startPortier(t, cfg)
	load := startOpsLoad(addr, "r.test", 4, 15*time.Second, 20000, time.Millisecond)
	defer load.finish()
	time.Sleep(time.Second)
	b := startPortier(t, cfg)
	if b.addr("web") != addr {
		t.Fatalf("B listens on %s, want %s", b.addr("web"), addr)
	}
	time.Sleep(500 * time.Millisecond) // both serve the port for a while
	okBefore := load.ok.Load()
	if err := a.stop(t); err != nil {
		t.Errorf("A exit: %v, want 0\n%s", err, a.logText())
	}
	okAtExit := load.ok.Load()
	time.Sleep(1500 * time.Millisecond)
	load.finish()
	after := load.ok.Load() - okAtExit
	t.Logf("restart under load: %s; %d ok before SIGTERM to A, %d during A's drain, %d after A exited",
		load.report(), okBefore, okAtExit-okBefore, after)
	if load.failed.Load() != 0 {
		t.Errorf("%d requests failed across the restart", load.failed.Load())
	}
	if after == 0 {
		t.Errorf("no request succeeded after A exited: B is not serving")
	}
	if err := b.stop(t); err != nil {
		t.Errorf("B exit: %v", err)
	}
}

func TestOpsPerIPLimit(t *testing.T) {
	be := startOpsBackend(t, "alpha", nil)
	// A long handshake timeout keeps the idle connections from being
	// answered 408 while the test runs.
	p := startPortier(t, opsConfig("  a.test: [http://"+be.addr+"]",
		"limits: {max_connections_per_ip: 2}\ntimeouts: {handshake: 60s}\nadmin: 127.0.0.1:0\n"))
	web, admin := p.addr("web"), opsAdminAddr(t, p)
	from := func(ip string) (net.Conn, error) {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		return d.Dial("tcp", web)
	}

	var idle []net.Conn
	for i := 0; i < 2; i++ {
		c, err := from("127.0.0.41")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	// The third must reach portier after both: wait until it holds them.
	open := map[string]string{"listener": "web"}
	if _, ok := opsWait(5*time.Second, func() bool { return opsMetricOf(t, admin, "portier_connections_open", open) == 2 }); !ok {
		t.Fatal("portier never held the two idle connections")
	}

	c, err := from("127.0.0.41")
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	c.Close()
	if !strings.HasPrefix(string(got), "HTTP/1.1 503") || err != nil {
		t.Errorf("third connection from 127.0.0.41: %q, err %v; want HTTP/1.1 503 then close", got, err)
	}

	st, body, err := opsGet(opsClient(net.ParseIP("127.0.0.42")), web, "a.test", "/")
	if err != nil || st != 200 || body != "alpha" {
		t.Errorf("from 127.0.0.42: %d %q %v; want 200", st, body, err)
	}
	text := opsScrape(t, admin)
	if v, ok := opsMetric(text, "portier_limit_hits_total", map[string]string{"limit": "max_connections_per_ip"}); !ok || v != 1 {
		t.Errorf("limit_hits_total{max_connections_per_ip} = %v, want 1\n%s", v, opsGrep(text, "limit_hits"))
	}
	if v, ok := opsMetric(text, "portier_limit_hits_total", map[string]string{"limit": "max_connections"}); !ok || v != 0 {
		t.Errorf("limit_hits_total{max_connections} = %v, want 0", v)
	}

	// Closing one idle connection gives its slot back.
	idle[0].Close()
	if d, ok := opsWait(3*time.Second, func() bool {
		st, _, err := opsGet(opsClient(net.ParseIP("127.0.0.41")), web, "a.test", "/")
		return err == nil && st == 200
	}); !ok {
		t.Errorf("127.0.0.41 still refused %v after closing one of its connections", d)
	}
}

func TestOpsAccessLog(t *testing.T) {
	be := startOpsBackend(t, "alpha", nil)
	logPath := filepath.Join(t.TempDir(), "access.log")
	p := startPortier(t, opsConfig("  a.test: [http://"+be.addr+"]",
		fmt.Sprintf("access_log: {path: %q, format: json}\n", logPath)))
	web := p.addr("web")

	lines := func(path string) []map[string]any {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		var out []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l == "" {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("%s: line %q: %v", path, l, err)
			}
			out = append(out, m)
		}
		return out
	}
	waitLines := func(path string, n int) []map[string]any {
		t.Helper()
		var got []map[string]any
		if _, ok := opsWait(5*time.Second, func() bool { got = lines(path); return len(got) >= n }); !ok || len(got) != n {
			t.Fatalf("%s has %d lines, want %d: %v", path, len(got), n, got)
		}
		return got
	}
	checkLine := func(m map[string]any, name, outcome string) {
		t.Helper()
		for _, k := range []string{"listener", "client", "name", "backend", "bytes_up", "bytes_down", "outcome"} {
			if _, ok := m[k]; !ok {
				t.Errorf("access log line lacks %q: %v", k, m)
			}
		}
		wantBackend := be.addr
		if outcome != "forwarded" {
			wantBackend = ""
		}
		up, _ := m["bytes_up"].(float64)
		down, _ := m["bytes_down"].(float64)
		client, _ := m["client"].(string)
		if m["listener"] != "web" || m["name"] != name || m["outcome"] != outcome ||
			!strings.HasPrefix(client, "127.0.0.1:") || (outcome == "forwarded" && (up <= 0 || down <= 0)) {
			t.Errorf("access log line %v; want listener web, name %s, outcome %s, client 127.0.0.1:*, bytes both ways",
				m, name, outcome)
		}
		// accesslog.Record documents backend as "ip:port", the form the
		// backend label of /metrics uses, so that the two can be joined.
		if m["backend"] != wantBackend {
			t.Errorf("access log backend = %q, want %q (ip:port as accesslog.Record documents)", m["backend"], wantBackend)
		}
	}

	for i := 0; i < 3; i++ {
		opsWant200(t, web, "a.test", "alpha")
	}
	if st, _, err := opsGet(opsClient(nil), web, "nope.test", "/"); err != nil || st != 404 {
		t.Fatalf("nope.test: %d %v", st, err)
	}
	first := waitLines(logPath, 4)
	forwarded := 0
	for _, m := range first {
		if m["outcome"] == "forwarded" {
			forwarded++
			checkLine(m, "a.test", "forwarded")
		} else {
			checkLine(m, "nope.test", "rejected")
		}
	}
	if forwarded != 3 {
		t.Errorf("%d forwarded lines, want 3", forwarded)
	}

	// logrotate's way: move the file, then tell portier to reopen it.
	rotated := logPath + ".1"
	if err := os.Rename(logPath, rotated); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if _, ok := opsWait(5*time.Second, func() bool { return strings.Contains(p.logText(), "access log reopened") }); !ok {
		t.Fatalf("no \"access log reopened\" after SIGUSR1:\n%s", p.logText())
	}
	for i := 0; i < 2; i++ {
		opsWant200(t, web, "a.test", "alpha")
	}
	for _, m := range waitLines(logPath, 2) {
		checkLine(m, "a.test", "forwarded")
	}
	if n := len(lines(rotated)); n != 4 {
		t.Errorf("rotated file has %d lines, want the 4 written before SIGUSR1", n)
	}
}

package redisroutes

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portier/portier/balancer"
	"github.com/portier/portier/internal/redistest"
)

// recorder collects what Run publishes.
type recorder struct {
	mu      sync.Mutex
	calls   int
	last    map[string][]string
	changed chan struct{}
	busy    bool // detects concurrent publish calls
	overlap bool
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) publish(set *balancer.RouteSet) {
	routes := set.Sorted()
	r.mu.Lock()
	if r.busy {
		r.overlap = true
	}
	r.busy = true
	r.calls++
	r.last = toMap(routes)
	r.busy = false
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) state() (calls int, last map[string][]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls, r.last
}

// wait waits until the last published routes equal want.
func (r *recorder) wait(t *testing.T, want map[string][]string, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		calls, last := r.state()
		if calls > 0 && equalRoutes(last, want) {
			return
		}
		select {
		case <-r.changed:
		case <-deadline:
			t.Fatalf("after %v: published %v (%d calls), want %v", d, last, calls, want)
		}
	}
}

func toMap(routes []balancer.RouteSpec) map[string][]string {
	m := make(map[string][]string, len(routes))
	for _, r := range routes {
		m[r.Name] = r.Backends
	}
	return m
}

func equalRoutes(a, b map[string][]string) bool {
	return maps.EqualFunc(a, b, func(x, y []string) bool { return slices.Equal(x, y) })
}

// logBuf is a concurrency-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) count(sub string) int { return strings.Count(l.String(), sub) }

// run starts Run and stops it when the test ends.
func run(t *testing.T, opts Options) (*Source, *recorder, *logBuf) {
	t.Helper()
	return runWith(t, opts, newRecorder())
}

// runWith is run with a recorder made by the caller.
func runWith(t *testing.T, opts Options, rec *recorder) (*Source, *recorder, *logBuf) {
	t.Helper()
	logs := &logBuf{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	start(t, s, rec)
	return s, rec, logs
}

// start runs s until the test ends.
func start(t *testing.T, s *Source, rec *recorder) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx, rec.publish)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
		s.Close()
		if rec.overlap {
			t.Error("publish was called concurrently")
		}
	})
}

func client(t testing.TB, srv *redistest.Server) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	return c
}

func rpush(t testing.TB, c *redis.Client, key string, vals ...string) {
	t.Helper()
	args := make([]any, len(vals))
	for i, v := range vals {
		args[i] = v
	}
	if err := c.RPush(context.Background(), key, args...).Err(); err != nil {
		t.Fatal(err)
	}
}

func sadd(t testing.TB, c *redis.Client, key string, vals ...string) {
	t.Helper()
	args := make([]any, len(vals))
	for i, v := range vals {
		args[i] = v
	}
	if err := c.SAdd(context.Background(), key, args...).Err(); err != nil {
		t.Fatal(err)
	}
}

func waitStatus(t *testing.T, s *Source, what string, ok func(Status) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok(s.Status()) {
		if time.Now().After(deadline) {
			t.Fatalf("status never became %s: %+v", what, s.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLoadAtStart(t *testing.T) {
	tests := []struct {
		name   string
		schema string
		seed   func(t *testing.T, c *redis.Client)
		want   map[string][]string
	}{
		{
			name:   "hipache",
			schema: "",
			seed: func(t *testing.T, c *redis.Client) {
				rpush(t, c, "frontend:app1.test", "app1", "http://127.0.0.1:9001", "tls://127.0.0.1:9443?weight=2")
				rpush(t, c, "frontend:*.apps.test", "apps", "http://[::1]:9002")
				rpush(t, c, "frontend:*", "fallback", "http://127.0.0.1:9009")
				rpush(t, c, "frontend:App2.Test.", "app2", "tls://backend.internal")
				rpush(t, c, "unrelated:key", "x", "http://127.0.0.1:1")
			},
			want: map[string][]string{
				"app1.test":   {"http://127.0.0.1:9001", "tls://127.0.0.1:9443?weight=2"},
				"*.apps.test": {"http://[::1]:9002"},
				"*":           {"http://127.0.0.1:9009"},
				"app2.test":   {"tls://backend.internal"},
			},
		},
		{
			name:   "sets",
			schema: "sets",
			seed: func(t *testing.T, c *redis.Client) {
				sadd(t, c, "hostnames:app1.test:backends", "10.0.0.1", "10.0.0.2:8080", "[::1]:9000",
					"quic://10.0.0.3:443", "tls://10.0.0.4:8443?proxy=v2")
				sadd(t, c, "hostnames:*.w.test:backends", "w.internal")
				sadd(t, c, "hostnames:httpDefault:backends", "10.0.0.9")
				sadd(t, c, "hostnames:httpsDefault:backends", "10.0.0.10:8443")
				sadd(t, c, "hostnames:other", "10.0.0.1") // not a route key
			},
			want: map[string][]string{
				"app1.test": {"http://10.0.0.1:80", "tls://10.0.0.1:443", "http://10.0.0.2:8080", "tls://10.0.0.2:8080", "http://[::1]:9000", "tls://[::1]:9000",
					"quic://10.0.0.3:443", "tls://10.0.0.4:8443?proxy=v2"},
				"*.w.test": {"http://w.internal:80", "tls://w.internal:443"},
				"*":        {"http://10.0.0.9:80", "tls://10.0.0.10:8443"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			tc.seed(t, client(t, srv))
			s, rec, _ := run(t, Options{URL: srv.URL(), Schema: tc.schema})
			rec.wait(t, tc.want, 3*time.Second)
			st := s.Status()
			if !st.Connected || !st.Notifications || st.Routes != len(tc.want) || st.Skipped != 0 || st.LastSync.IsZero() {
				t.Errorf("status %+v", st)
			}
			got, err := List(context.Background(), client(t, srv), tc.schema)
			if err != nil {
				t.Fatal(err)
			}
			if !equalRoutes(toMap(got), tc.want) {
				t.Errorf("List = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestLiveChanges makes each change with a redis-cli process and expects
// it published within a second.
// failPipelines fails every pipeline after the first ok ones, as a
// connection lost in the middle of a full sync would.
type failPipelines struct {
	ok  int
	mu  sync.Mutex
	n   int
	err error
}

func (f *failPipelines) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (f *failPipelines) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (f *failPipelines) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		f.mu.Lock()
		f.n++
		fail := f.n > f.ok
		f.mu.Unlock()
		if !fail {
			return next(ctx, cmds)
		}
		for _, c := range cmds {
			c.SetErr(f.err)
		}
		return f.err
	}
}

// TestLoadAllReadError: a read that fails during a full sync of many pages
// (read by several readers at once) ends it with that error, at once and
// without leaving goroutines behind.
func TestLoadAllReadError(t *testing.T) {
	srv := redistest.Start(t)
	seed := client(t, srv)
	ctx := context.Background()
	const n = 30_000
	pipe := seed.Pipeline()
	for i := range n {
		pipe.RPush(ctx, fmt.Sprintf("frontend:h%d.test", i), "h", "http://127.0.0.1:1")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	for _, ok := range []int{0, 1, 7} {
		t.Run(fmt.Sprintf("after %d pipelines", ok), func(t *testing.T) {
			before := runtime.NumGoroutine()
			c := client(t, srv)
			hook := &failPipelines{ok: ok, err: errors.New("connection lost")}
			c.AddHook(hook)
			done := make(chan error, 1)
			go func() {
				_, _, _, err := loadAll(ctx, c, hipache, 0, nil)
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "connection lost") {
					t.Fatalf("loadAll: %v, want the read error", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("loadAll did not return after a read error")
			}
			// The scanner and the readers are gone (the client's own
			// goroutines, if any, end with it).
			c.Close()
			deadline := time.Now().Add(2 * time.Second)
			for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if g := runtime.NumGoroutine(); g > before {
				t.Errorf("%d goroutines after loadAll failed, %d before", g, before)
			}
		})
	}
}

func TestLiveChanges(t *testing.T) {
	srv := redistest.Start(t)
	redistest.Require(t, "redis-cli")
	c := client(t, srv)
	rpush(t, c, "frontend:a.test", "a", "http://127.0.0.1:9001")
	rpush(t, c, "hostnames:s.test:backends", "ignored-in-hipache")
	_, rec, _ := run(t, Options{URL: srv.URL()})
	want := map[string][]string{"a.test": {"http://127.0.0.1:9001"}}
	rec.wait(t, want, 3*time.Second)

	steps := []struct {
		name string
		cli  []string
		want map[string][]string
	}{
		{"rpush", []string{"RPUSH", "frontend:a.test", "http://127.0.0.1:9002"},
			map[string][]string{"a.test": {"http://127.0.0.1:9001", "http://127.0.0.1:9002"}}},
		{"rpush new route", []string{"RPUSH", "frontend:b.test", "b", "tls://127.0.0.1:9443"},
			map[string][]string{"a.test": {"http://127.0.0.1:9001", "http://127.0.0.1:9002"}, "b.test": {"tls://127.0.0.1:9443"}}},
		{"lrem", []string{"LREM", "frontend:a.test", "0", "http://127.0.0.1:9001"},
			map[string][]string{"a.test": {"http://127.0.0.1:9002"}, "b.test": {"tls://127.0.0.1:9443"}}},
		{"lset", []string{"LSET", "frontend:a.test", "1", "http://127.0.0.1:9003"},
			map[string][]string{"a.test": {"http://127.0.0.1:9003"}, "b.test": {"tls://127.0.0.1:9443"}}},
		{"del", []string{"DEL", "frontend:b.test"},
			map[string][]string{"a.test": {"http://127.0.0.1:9003"}}},
		{"del last", []string{"DEL", "frontend:a.test"}, map[string][]string{}},
	}
	for _, st := range steps {
		start := time.Now()
		srv.Cli(st.cli...)
		rec.wait(t, st.want, time.Second)
		t.Logf("%s: published after %v", st.name, time.Since(start))
	}
}

func TestLiveChangesSets(t *testing.T) {
	srv := redistest.Start(t)
	redistest.Require(t, "redis-cli")
	_, rec, _ := run(t, Options{URL: srv.URL(), Schema: SchemaSets})
	rec.wait(t, map[string][]string{}, 3*time.Second)
	srv.Cli("SADD", "hostnames:s.test:backends", "127.0.0.1:9001")
	rec.wait(t, map[string][]string{"s.test": {"http://127.0.0.1:9001", "tls://127.0.0.1:9001"}}, time.Second)
	srv.Cli("SADD", "hostnames:httpsDefault:backends", "127.0.0.1")
	rec.wait(t, map[string][]string{"s.test": {"http://127.0.0.1:9001", "tls://127.0.0.1:9001"}, "*": {"tls://127.0.0.1:443"}}, time.Second)
	srv.Cli("SREM", "hostnames:s.test:backends", "127.0.0.1:9001")
	rec.wait(t, map[string][]string{"*": {"tls://127.0.0.1:443"}}, time.Second)
}

func TestMalformedSkipped(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	ctx := context.Background()
	rpush(t, c, "frontend:good.test", "good", "http://127.0.0.1:9001")
	bad := []struct {
		key     string
		seed    func()
		problem string
	}{
		{"frontend:badurl.test", func() { rpush(t, c, "frontend:badurl.test", "x", "htp://127.0.0.1:1") }, "no valid backend"},
		{"frontend:only-id.test", func() { rpush(t, c, "frontend:only-id.test", "x") }, "no backends"},
		{"frontend:bad_name!", func() { rpush(t, c, "frontend:bad_name!", "x", "http://127.0.0.1:1") }, "invalid route name"},
		{"frontend:string.test", func() { c.Set(ctx, "frontend:string.test", "http://127.0.0.1:1", 0) }, "wrong key type"},
	}
	for _, b := range bad {
		b.seed()
	}
	// Partly bad: the good backend stays.
	rpush(t, c, "frontend:partial.test", "p", "http://127.0.0.1:9002", "http://127.0.0.1:99999")

	s, rec, logs := run(t, Options{URL: srv.URL(), Resync: 100 * time.Millisecond})
	rec.wait(t, map[string][]string{
		"good.test":    {"http://127.0.0.1:9001"},
		"partial.test": {"http://127.0.0.1:9002"},
	}, 3*time.Second)
	// Let several resyncs pass: each problem is still logged once.
	time.Sleep(400 * time.Millisecond)
	out := logs.String()
	for _, b := range bad {
		n := 0
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "skipping malformed entry") && strings.Contains(line, "key="+quoteIfNeeded(b.key)+" ") {
				n++
				if !strings.Contains(line, b.problem) {
					t.Errorf("log line for %s lacks %q: %s", b.key, b.problem, line)
				}
			}
		}
		if n != 1 {
			t.Errorf("%d log lines for %s, want 1; logs:\n%s", n, b.key, out)
		}
	}
	if !strings.Contains(out, "skipped 1 of 2 backends") {
		t.Errorf("partial route not logged:\n%s", out)
	}
	if st := s.Status(); st.Skipped != len(bad)+1 {
		t.Errorf("Skipped = %d, want %d", st.Skipped, len(bad)+1)
	}
}

// quoteIfNeeded mirrors slog's text quoting of values.
func quoteIfNeeded(s string) string {
	if strings.ContainsAny(s, " =\"") {
		return fmt.Sprintf("%q", s)
	}
	return s
}

func TestOutageKeepsRoutes(t *testing.T) {
	srv := redistest.Start(t)
	redistest.Require(t, "redis-cli")
	rpush(t, client(t, srv), "frontend:a.test", "a", "http://127.0.0.1:9001")
	s, rec, logs := run(t, Options{URL: srv.URL(), Resync: 200 * time.Millisecond})
	want := map[string][]string{"a.test": {"http://127.0.0.1:9001"}}
	rec.wait(t, want, 3*time.Second)
	before, _ := rec.state()

	srv.Stop()
	waitStatus(t, s, "disconnected", func(st Status) bool { return !st.Connected })
	time.Sleep(500 * time.Millisecond) // reconnect attempts, resync ticks
	if calls, last := rec.state(); calls != before || !equalRoutes(last, want) {
		t.Fatalf("during the outage: %d publishes (had %d), last %v", calls, before, last)
	}
	if n := logs.count("redis unavailable"); n != 1 {
		t.Errorf("%d 'redis unavailable' lines, want 1:\n%s", n, logs)
	}

	srv.Restart()
	waitStatus(t, s, "connected", func(st Status) bool { return st.Connected })
	srv.Cli("RPUSH", "frontend:a.test", "http://127.0.0.1:9002")
	rec.wait(t, map[string][]string{"a.test": {"http://127.0.0.1:9001", "http://127.0.0.1:9002"}}, time.Second)
	if n := logs.count("redis connected"); n != 2 {
		t.Errorf("%d 'redis connected' lines, want 2:\n%s", n, logs)
	}
}

func TestStartWithRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	rpush(t, client(t, srv), "frontend:a.test", "a", "http://127.0.0.1:9001")
	srv.Stop()
	s, rec, _ := run(t, Options{URL: srv.URL()})
	time.Sleep(300 * time.Millisecond)
	if calls, _ := rec.state(); calls != 0 || s.Status().Connected {
		t.Fatalf("with Redis down: %d publishes, status %+v", calls, s.Status())
	}
	srv.Restart()
	rec.wait(t, map[string][]string{"a.test": {"http://127.0.0.1:9001"}}, 3*time.Second)
	waitStatus(t, s, "connected", func(st Status) bool { return st.Connected })
}

func TestSnapshotAtStart(t *testing.T) {
	srv := redistest.Start(t)
	snap := filepath.Join(t.TempDir(), "routes.json")
	c := client(t, srv)
	rpush(t, c, "frontend:a.test", "a", "http://127.0.0.1:9001")
	rpush(t, c, "frontend:*", "all", "tls://127.0.0.1:9443")
	want := map[string][]string{"a.test": {"http://127.0.0.1:9001"}, "*": {"tls://127.0.0.1:9443"}}

	ctx, cancel := context.WithCancel(context.Background())
	first, err := New(Options{URL: srv.URL(), SnapshotFile: snap})
	if err != nil {
		t.Fatal(err)
	}
	rec1 := newRecorder()
	done := make(chan struct{})
	go func() { defer close(done); first.Run(ctx, rec1.publish) }()
	rec1.wait(t, want, 3*time.Second)
	cancel()
	<-done
	first.Close()
	if _, err := os.Stat(snap); err != nil {
		t.Fatalf("snapshot not written: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(snap))
	if len(entries) != 1 {
		t.Errorf("temporary files left next to the snapshot: %v", entries)
	}

	srv.Stop()
	s, rec, _ := run(t, Options{URL: srv.URL(), SnapshotFile: snap})
	rec.wait(t, want, time.Second)
	if st := s.Status(); st.Connected || st.Routes != 2 {
		t.Errorf("status %+v", st)
	}
}

func TestSnapshotCorruptIgnored(t *testing.T) {
	// A good snapshot of another route, to damage.
	good := filepath.Join(t.TempDir(), "good.snap")
	if err := writeSnapshot(good, SchemaHipache, testSet(t, balancer.RouteSpec{Name: "old.test", Backends: []string{"http://127.0.0.1:9009"}}), time.Now()); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	flipped := slices.Clone(data)
	flipped[len(flipped)/2] ^= 1
	tests := []struct{ name, content, why string }{
		{"not json", "{", "snapshot ignored"},
		{"wrong version", `{"version": 99, "routes": []}`, "version 99"},
		{"truncated", string(data[:len(data)-5]), "checksum mismatch: the file is damaged or truncated"},
		{"damaged", string(flipped), "checksum mismatch: the file is damaged or truncated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			rpush(t, client(t, srv), "frontend:a.test", "a", "http://127.0.0.1:9001")
			snap := filepath.Join(t.TempDir(), "routes.json")
			if err := os.WriteFile(snap, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, rec, logs := run(t, Options{URL: srv.URL(), SnapshotFile: snap})
			rec.wait(t, map[string][]string{"a.test": {"http://127.0.0.1:9001"}}, 3*time.Second)
			if calls, _ := rec.state(); calls != 1 {
				t.Errorf("%d publishes, want 1 (the corrupt snapshot must not be published)", calls)
			}
			if !strings.Contains(logs.String(), "snapshot ignored") || !strings.Contains(logs.String(), tc.why) {
				t.Errorf("no log line saying %q about the snapshot:\n%s", tc.why, logs)
			}
		})
	}
}

func TestNotificationsRefused(t *testing.T) {
	srv := redistest.Start(t, "--rename-command", "CONFIG", "")
	redistest.Require(t, "redis-cli")
	s, rec, logs := run(t, Options{URL: srv.URL(), Resync: 200 * time.Millisecond})
	rec.wait(t, map[string][]string{}, 3*time.Second)
	if st := s.Status(); st.Notifications || !st.Connected {
		t.Errorf("status %+v, want connected without notifications", st)
	}
	srv.Cli("RPUSH", "frontend:a.test", "a", "http://127.0.0.1:9001")
	rec.wait(t, map[string][]string{"a.test": {"http://127.0.0.1:9001"}}, 2*time.Second)
	srv.Cli("DEL", "frontend:a.test")
	rec.wait(t, map[string][]string{}, 2*time.Second)
	if n := logs.count("keyspace notifications off"); n != 1 {
		t.Errorf("%d log lines about notifications, want 1:\n%s", n, logs)
	}
}

func TestNotificationFlagsMerged(t *testing.T) {
	srv := redistest.Start(t, "--notify-keyspace-events", "Eh")
	s, rec, _ := run(t, Options{URL: srv.URL()})
	rec.wait(t, map[string][]string{}, 3*time.Second)
	waitStatus(t, s, "connected", func(st Status) bool { return st.Connected })
	got := srv.Cli("CONFIG", "GET", "notify-keyspace-events")
	flags := strings.TrimSpace(strings.SplitN(got, "\n", 2)[1])
	for _, f := range "EhKglx" {
		if !strings.ContainsRune(flags, f) {
			t.Errorf("notify-keyspace-events = %q, lacks %c", flags, f)
		}
	}
}

// TestNotifyOffLeavesServerConfig: with notify_keyspace_events off the
// server's setting is not touched; changes still arrive, at each resync,
// and by notification when the server already sends them.
func TestNotifyOffLeavesServerConfig(t *testing.T) {
	for _, tc := range []struct {
		flags  string
		notify bool
	}{{"", false}, {"Kgl$x", true}} {
		srv := redistest.Start(t, "--notify-keyspace-events", tc.flags)
		resync := 300 * time.Millisecond
		if tc.notify {
			resync = time.Hour // only a notification can bring the change
		}
		s, rec, _ := run(t, Options{URL: srv.URL(), NotifyOff: true, Resync: resync})
		rec.wait(t, map[string][]string{}, 3*time.Second)
		waitStatus(t, s, "connected", func(st Status) bool { return st.Connected })
		if st := s.Status(); st.Notifications != tc.notify {
			t.Errorf("flags %q: Notifications = %v, want %v", tc.flags, st.Notifications, tc.notify)
		}
		srv.Cli("RPUSH", "frontend:a.test", "a", "http://127.0.0.1:9001")
		rec.wait(t, map[string][]string{"a.test": {"http://127.0.0.1:9001"}}, 3*time.Second)
		got := srv.Cli("CONFIG", "GET", "notify-keyspace-events")
		if flags := strings.TrimSpace(strings.SplitN(got, "\n", 2)[1]); !sameFlags(flags, tc.flags) {
			t.Errorf("notify-keyspace-events = %q, was %q: changed although notify_keyspace_events is off", flags, tc.flags)
		}
	}
}

func sameFlags(a, b string) bool {
	sa, sb := []rune(a), []rune(b)
	slices.Sort(sa)
	slices.Sort(sb)
	return string(sa) == string(sb)
}

type healthEvent struct {
	addr string
	down bool
}

func TestFleetHealth(t *testing.T) {
	srv := redistest.Start(t)
	events := make(chan healthEvent, 16)
	reporter, rrec, _ := run(t, Options{URL: srv.URL()})
	watcher, wrec, _ := run(t, Options{URL: srv.URL(), Resync: 200 * time.Millisecond,
		OnFleetHealth: func(addr string, down bool) { events <- healthEvent{addr, down} }})
	rrec.wait(t, map[string][]string{}, 3*time.Second)
	wrec.wait(t, map[string][]string{}, 3*time.Second)
	waitStatus(t, watcher, "connected", func(st Status) bool { return st.Connected })
	ctx := context.Background()
	expect := func(want healthEvent, d time.Duration) {
		t.Helper()
		select {
		case got := <-events:
			if got != want {
				t.Fatalf("OnFleetHealth(%q, %v), want (%q, %v)", got.addr, got.down, want.addr, want.down)
			}
		case <-time.After(d):
			t.Fatalf("no OnFleetHealth(%q, %v) within %v", want.addr, want.down, d)
		}
	}
	steps := []struct {
		addr string
		down bool
		ttl  time.Duration
		want healthEvent
		d    time.Duration
	}{
		{"10.0.0.5:8000", true, time.Minute, healthEvent{"10.0.0.5:8000", true}, 500 * time.Millisecond},
		{"10.0.0.5:8000", false, 0, healthEvent{"10.0.0.5:8000", false}, 500 * time.Millisecond},
		// Expiry publishes nothing: the watcher's resync sees the key gone.
		{"[::1]:9000", true, 300 * time.Millisecond, healthEvent{"[::1]:9000", true}, 500 * time.Millisecond},
	}
	for _, st := range steps {
		if err := reporter.ReportHealth(ctx, st.addr, st.down, st.ttl); err != nil {
			t.Fatal(err)
		}
		expect(st.want, st.d)
	}
	expect(healthEvent{"[::1]:9000", false}, 2*time.Second)

	// Reported before a Source starts: seen at its first sync.
	if err := reporter.ReportHealth(ctx, "10.0.0.6:8000", true, time.Minute); err != nil {
		t.Fatal(err)
	}
	expect(healthEvent{"10.0.0.6:8000", true}, 500*time.Millisecond)
	late := make(chan healthEvent, 4)
	run(t, Options{URL: srv.URL(), OnFleetHealth: func(addr string, down bool) { late <- healthEvent{addr, down} }})
	select {
	case got := <-late:
		if got != (healthEvent{"10.0.0.6:8000", true}) {
			t.Fatalf("late source: %+v", got)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("late source never saw the dead backend")
	}

	for _, bad := range []struct {
		addr string
		down bool
		ttl  time.Duration
	}{{"", true, time.Second}, {"a b", true, time.Second}, {"10.0.0.1:1", true, 0}} {
		if err := reporter.ReportHealth(ctx, bad.addr, bad.down, bad.ttl); err == nil {
			t.Errorf("ReportHealth(%q, %v, %v) accepted", bad.addr, bad.down, bad.ttl)
		}
	}
}

// TestFleetScanReplaysMessages holds the fleet scan of a resync after it
// has read the dead keys, reports a backend down meanwhile, and checks that
// the scan's older view (nothing down) does not undo the message.
func TestFleetScanReplaysMessages(t *testing.T) {
	srv := redistest.Start(t)
	reporter, rrec, _ := run(t, Options{URL: srv.URL()})
	rrec.wait(t, map[string][]string{}, 3*time.Second)

	events := make(chan healthEvent, 16)
	s, err := New(Options{URL: srv.URL(), Resync: time.Hour,
		OnFleetHealth: func(addr string, down bool) { events <- healthEvent{addr, down} }})
	if err != nil {
		t.Fatal(err)
	}
	scanned := make(chan struct{})
	release := make(chan struct{})
	applied := make(chan struct{}, 16)
	s.fleetScanned = func() {
		scanned <- struct{}{}
		<-release
	}
	s.fleetApplied = func() { applied <- struct{}{} }
	rec := newRecorder()
	start(t, s, rec)
	t.Cleanup(func() { // runs first: a scan held in its hook must go on for Run to return
		select {
		case <-release:
		default:
			close(release)
		}
	})
	wait := func(c <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-c:
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s within 5s", what)
		}
	}
	wait(scanned, "fleet scan")
	// The routes are published while the scan is held: it is off the
	// critical path of the sync.
	rec.wait(t, map[string][]string{}, 3*time.Second)
	const addr = "10.0.0.7:8000"
	if err := reporter.ReportHealth(context.Background(), addr, true, time.Minute); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-events:
		if got != (healthEvent{addr, true}) {
			t.Fatalf("OnFleetHealth(%q, %v), want (%q, true)", got.addr, got.down, addr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the health message was not applied while the scan was in flight")
	}
	close(release)
	wait(applied, "scan result applied")
	select {
	case got := <-events:
		t.Fatalf("the scan's stale view overrode the message: OnFleetHealth(%q, %v)", got.addr, got.down)
	default:
	}
}

func TestAddListRemove(t *testing.T) {
	tests := []struct {
		schema string
		ops    []struct {
			op, name, backend string
			wantErr           bool
		}
		want  map[string][]string
		raw   map[string][]string // key -> list or sorted members after the ops
		isSet bool
	}{
		{
			schema: SchemaHipache,
			ops: []struct {
				op, name, backend string
				wantErr           bool
			}{
				{"add", "App.Test", "http://127.0.0.1:9001", false},
				{"add", "app.test", "http://127.0.0.1:9002", false},
				{"add", "app.test", "http://127.0.0.1:9002", false}, // no duplicate
				{"add", "app.test", "htp://x", true},
				{"add", "bad name", "http://127.0.0.1:9002", true},
				{"add", "*", "tls://127.0.0.1:9443", false},
				{"add", "gone.test", "http://127.0.0.1:9005", false},
				{"rm", "gone.test", "http://127.0.0.1:9005", false}, // last backend: route goes
				{"rm", "app.test", "http://127.0.0.1:9001", false},
				{"rm", "app.test", "http://127.0.0.1:9001", true},
				{"rm", "nope.test", "", true},
				{"add", "del.test", "http://127.0.0.1:9006", false},
				{"rm", "del.test", "", false},
			},
			want: map[string][]string{"app.test": {"http://127.0.0.1:9002"}, "*": {"tls://127.0.0.1:9443"}},
			raw:  map[string][]string{"frontend:app.test": {"app.test", "http://127.0.0.1:9002"}, "frontend:*": {"*", "tls://127.0.0.1:9443"}},
		},
		{
			schema: SchemaSets,
			isSet:  true,
			ops: []struct {
				op, name, backend string
				wantErr           bool
			}{
				{"add", "app.test", "127.0.0.1", false},
				{"add", "app.test", "http://127.0.0.1:9001", false},
				{"add", "app.test", "http://127.0.0.1:9001?weight=2", true},
				{"add", "*", "http://127.0.0.1:8080", false},
				{"add", "*", "tls://127.0.0.1", false},
				{"add", "*", "10.0.0.1:81", false},
				{"rm", "*", "10.0.0.1:81", false},
				{"rm", "app.test", "127.0.0.1", false},
				{"rm", "app.test", "127.0.0.1", true},
				{"add", "x.test", "[::1]:9000", false},
				{"rm", "x.test", "", false},
				{"rm", "x.test", "", true},
			},
			want: map[string][]string{
				"app.test": {"http://127.0.0.1:9001", "tls://127.0.0.1:9001"},
				"*":        {"http://127.0.0.1:8080", "tls://127.0.0.1:443"},
			},
			raw: map[string][]string{
				"hostnames:app.test:backends":     {"127.0.0.1:9001"},
				"hostnames:httpDefault:backends":  {"127.0.0.1:8080"},
				"hostnames:httpsDefault:backends": {"127.0.0.1:443"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.schema, func(t *testing.T) {
			srv := redistest.Start(t)
			c := client(t, srv)
			ctx := context.Background()
			for _, op := range tc.ops {
				var err error
				if op.op == "add" {
					err = Add(ctx, c, tc.schema, op.name, op.backend)
				} else {
					err = Remove(ctx, c, tc.schema, op.name, op.backend)
				}
				if (err != nil) != op.wantErr {
					t.Fatalf("%s %q %q: err = %v, want error %v", op.op, op.name, op.backend, err, op.wantErr)
				}
				if err != nil && op.op == "rm" && !errors.Is(err, ErrNotFound) {
					t.Errorf("%s %q %q: %v does not wrap ErrNotFound", op.op, op.name, op.backend, err)
				}
			}
			got, err := List(ctx, c, tc.schema)
			if err != nil {
				t.Fatal(err)
			}
			if !equalRoutes(toMap(got), tc.want) {
				t.Errorf("List = %v, want %v", toMap(got), tc.want)
			}
			keys, _ := c.Keys(ctx, "*").Result()
			if len(keys) != len(tc.raw) {
				t.Errorf("keys %v, want those of %v", keys, tc.raw)
			}
			for key, want := range tc.raw {
				var vals []string
				if tc.isSet {
					vals, err = c.SMembers(ctx, key).Result()
					slices.Sort(vals)
				} else {
					vals, err = c.LRange(ctx, key, 0, -1).Result()
				}
				if err != nil || !slices.Equal(vals, want) {
					t.Errorf("%s = %v (%v), want %v", key, vals, err, want)
				}
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no address", Options{}, "no address"},
		{"bad schema", Options{URL: "redis://127.0.0.1:1", Schema: "zset"}, "unknown schema"},
		{"bad url", Options{URL: "http://u:secret@127.0.0.1:1"}, "invalid URL scheme"},
		{"bad url parse", Options{URL: "redis://u:secret@[::1"}, "url"},
		{"negative resync", Options{URL: "redis://127.0.0.1:1", Resync: -time.Second}, "must be positive"},
		{"sentinel without addrs", Options{SentinelMaster: "m"}, "without sentinel addresses"},
		{"sentinel addrs without master", Options{SentinelAddrs: []string{"127.0.0.1:1"}}, "without a master"},
		{"both", Options{SentinelMaster: "m", SentinelAddrs: []string{"a:1"}, ClusterAddrs: []string{"b:1"}}, "not both"},
		{"cluster db", Options{URL: "redis://127.0.0.1:1/3", ClusterAddrs: []string{"127.0.0.1:2"}}, "database 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
	for _, opts := range []Options{
		{URL: "redis://127.0.0.1:1"},
		{URL: "rediss://:pw@127.0.0.1:1/2"},
		{SentinelMaster: "m", SentinelAddrs: []string{"127.0.0.1:1"}},
		{ClusterAddrs: []string{"127.0.0.1:1", "127.0.0.1:2"}},
	} {
		s, err := New(opts)
		if err != nil {
			t.Errorf("New(%+v): %v", opts, err)
			continue
		}
		s.Close()
	}
}

func TestPasswordOverride(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "s3cret")
	tests := []struct {
		name   string
		url    string
		pw     string
		wantOK bool
	}{
		{"in url", "redis://:s3cret@" + srv.Addr, "", true},
		{"override", "redis://:wrong@" + srv.Addr, "s3cret", true},
		{"missing", "redis://" + srv.Addr, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(Options{URL: tc.url, Password: tc.pw})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, err = List(context.Background(), s.Client(), "")
			if (err == nil) != tc.wantOK {
				t.Fatalf("List: %v, want ok %v", err, tc.wantOK)
			}
		})
	}
}

func TestMergeFlags(t *testing.T) {
	tests := []struct{ cur, need, want string }{
		{"", "Kgxl", "Kgxl"},
		{"Ex", "Kgxl", "ExKgl"},
		{"AK", "Kgxl", "AK"},
		{"AE", "Kgxs", "AEK"},
		{"Kgxl", "Kgxs", "Kgxls"},
	}
	for _, tc := range tests {
		if got := mergeFlags(tc.cur, tc.need); got != tc.want {
			t.Errorf("mergeFlags(%q, %q) = %q, want %q", tc.cur, tc.need, got, tc.want)
		}
	}
}

func TestParseEntries(t *testing.T) {
	tests := []struct {
		sc      schema
		key     string
		vals    []string
		want    entry
		ok      bool
		problem string
	}{
		{hipache, "frontend:a.test", []string{"id", "http://1.2.3.4"}, entry{name: "a.test", backends: []string{"http://1.2.3.4"}}, true, ""},
		{hipache, "frontend:*", []string{"id", "tls://1.2.3.4"}, entry{name: "*", backends: []string{"tls://1.2.3.4"}}, true, ""},
		{hipache, "frontend:", []string{"id", "http://1.2.3.4"}, entry{}, false, "invalid route name"},
		{hipache, "frontend:a.test", []string{"id"}, entry{}, false, "no backends"},
		{hipache, "frontend:a.test@acme-tls/1", []string{"id", "tls://1.2.3.4", "http://1.2.3.5"}, entry{name: "a.test", alpn: "acme-tls/1", backends: []string{"tls://1.2.3.4"}}, true, "an ALPN pool takes tls:// backends"},
		{hipache, "frontend:A.test@h2", []string{"id", "tls://1.2.3.4"}, entry{name: "a.test", alpn: "h2", backends: []string{"tls://1.2.3.4"}}, true, ""},
		{hipache, "frontend:a.test@", []string{"id", "tls://1.2.3.4"}, entry{}, false, "ALPN protocol ID"},
		{hipache, "frontend:a.test", []string{"id", "ftp://x", "http://1.2.3.4"}, entry{name: "a.test", backends: []string{"http://1.2.3.4"}}, true, "skipped 1 of 2"},
		{sets, "hostnames:a.test:backends", []string{"b.internal:81", "1.2.3.4"}, entry{name: "a.test", backends: []string{"http://1.2.3.4:80", "tls://1.2.3.4:443", "http://b.internal:81", "tls://b.internal:81"}}, true, ""},
		{sets, "hostnames:a.test:backends", []string{"::1"}, entry{name: "a.test", backends: []string{"http://[::1]:80", "tls://[::1]:443"}}, true, ""},
		{sets, "hostnames:a.test:backends", []string{"[::1]"}, entry{name: "a.test", backends: []string{"http://[::1]:80", "tls://[::1]:443"}}, true, ""},
		{sets, "hostnames:httpDefault:backends", []string{"1.2.3.4"}, entry{name: "*", backends: []string{"http://1.2.3.4:80"}}, true, ""},
		{sets, "hostnames:httpsDefault:backends", []string{"1.2.3.4:8443"}, entry{name: "*", backends: []string{"tls://1.2.3.4:8443"}}, true, ""},
		{sets, "hostnames:a.test:backends", []string{"quic://10.0.0.3:443"}, entry{name: "a.test", backends: []string{"quic://10.0.0.3:443"}}, true, ""},
		{sets, "hostnames:a.test:backends", []string{"1.2.3.4:", "ftp://x:80", "a b"}, entry{}, false, "no valid backend"},
		{sets, "hostnames:a.test:backends", []string{"1.2.3.4:99999"}, entry{}, false, "no valid backend"},
	}
	for _, tc := range tests {
		e, problem, ok := tc.sc.parse(tc.key, tc.vals)
		if ok != tc.ok || e.name != tc.want.name || e.alpn != tc.want.alpn || !slices.Equal(e.backends, tc.want.backends) ||
			(tc.problem == "") != (problem == "") || !strings.Contains(problem, tc.problem) {
			t.Errorf("parse(%s, %q) = %+v, %q, %v; want %+v, %q, %v", tc.key, tc.vals, e, problem, ok, tc.want, tc.problem, tc.ok)
		}
	}
}

// BenchmarkLoad measures a full load of N hostnames, one backend each,
// into []RouteSpec (SCAN + pipelined LRANGE + validation + build).
func BenchmarkLoad(b *testing.B) {
	for _, n := range []int{100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			srv := redistest.Start(b)
			c := client(b, srv)
			ctx := context.Background()
			for start := 0; start < n; start += 10_000 {
				pipe := c.Pipeline()
				for i := start; i < min(start+10_000, n); i++ {
					pipe.RPush(ctx, fmt.Sprintf("frontend:h%d.bench.test", i), "h", fmt.Sprintf("http://10.0.0.%d:8080", i%50))
				}
				if _, err := pipe.Exec(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				routes, err := List(ctx, c, SchemaHipache)
				if err != nil {
					b.Fatal(err)
				}
				if len(routes) != n {
					b.Fatalf("%d routes, want %d", len(routes), n)
				}
			}
		})
	}
}

// TestFleetScanAfterRoutes: the fleet's dead keys are scanned once the
// routes are read, not beside them (SCAN walks every key whatever its
// MATCH: beside the routes' scan it doubled Redis's work during the sync).
// Redis's MONITOR shows the order in which the commands ran.
func TestFleetScanAfterRoutes(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	ctx := context.Background()
	const n = 3000 // several pages of SCAN COUNT 1000
	pipe := c.Pipeline()
	want := make(map[string][]string, n)
	for i := range n {
		name := fmt.Sprintf("h%d.fleet.test", i)
		pipe.RPush(ctx, "frontend:"+name, name, "http://10.0.0.1:80")
		want[name] = []string{"http://10.0.0.1:80"}
	}
	pipe.Set(ctx, deadPrefix+"10.0.0.9:80", "1", time.Minute)
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	mconn, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mconn.Close() })
	mr := bufio.NewReader(mconn)
	if _, err := mconn.Write([]byte("MONITOR\r\n")); err != nil {
		t.Fatal(err)
	}
	if l, err := mr.ReadString('\n'); err != nil || l != "+OK\r\n" {
		t.Fatalf("MONITOR: %q %v", l, err)
	}
	mon := make(chan string, 16384)
	go func() {
		for {
			l, err := mr.ReadString('\n')
			if err != nil {
				return
			}
			mon <- l
		}
	}()
	down := make(chan string, 4)
	_, rec, _ := run(t, Options{URL: srv.URL(), Resync: time.Hour,
		OnFleetHealth: func(addr string, isDown bool) {
			if isDown {
				down <- addr
			}
		}})
	rec.wait(t, want, 10*time.Second)
	select {
	case addr := <-down:
		if addr != "10.0.0.9:80" {
			t.Fatalf("fleet down %q, want 10.0.0.9:80", addr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the fleet's dead key was not applied")
	}
	// MONITOR's lines arrive on their own connection: read up to a marker
	// sent after everything else.
	if err := c.Echo(ctx, "fleet-order-marker").Err(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for marker := false; !marker; {
		select {
		case l := <-mon:
			lines = append(lines, l)
			marker = strings.Contains(l, "fleet-order-marker")
		case <-time.After(5 * time.Second):
			t.Fatalf("no marker from MONITOR after %d lines", len(lines))
		}
	}
	lastRoutes, firstFleet := -1, -1
	for i, l := range lines {
		switch {
		case strings.Contains(l, `"frontend:*"`) || strings.Contains(l, `"lrange"`):
			lastRoutes = i
		case strings.Contains(l, `"portier:dead:*"`) && firstFleet < 0:
			firstFleet = i
		}
	}
	if lastRoutes < 0 || firstFleet < 0 {
		t.Fatalf("MONITOR saw no route reads (%d) or no fleet scan (%d) in %d lines", lastRoutes, firstFleet, len(lines))
	}
	if firstFleet < lastRoutes {
		t.Errorf("the fleet scan began at command %d, before the routes' reads ended at %d:\n%s\n%s",
			firstFleet, lastRoutes, lines[firstFleet], lines[lastRoutes])
	}
}

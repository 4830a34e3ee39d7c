package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portier/portier/accesslog"
	"github.com/portier/portier/balancer"
	"github.com/portier/portier/engine"
)

// logWriter sends log lines to the test log.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// env is a real engine with one http listener in front of a real backend,
// plus an admin server over it.
type env struct {
	eng       *engine.Engine
	router    *balancer.Router
	proxyAddr string
	backend   *httptest.Server
	beAddr    string // backend "ip:port"
	srv       *Server
	base      string // "http://admin-addr"
}

func newEnv(t testing.TB, mod func(*Options)) *env {
	t.Helper()
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte("hello from " + r.Host))
	}))
	t.Cleanup(be.Close)
	beAddr := be.Listener.Addr().String()
	routes := []balancer.RouteSpec{
		{Name: "app.test", Backends: []string{"http://" + beAddr}},
		{Name: "*.wild.test", Backends: []string{"http://" + beAddr + "?weight=3"}},
		// Only a tls backend: the http lookup of this name must not be
		// mistaken for its pool.
		{Name: "secure.test", Backends: []string{"tls://127.0.0.1:1"}},
	}
	table, err := balancer.NewTable(context.Background(), routes, "", balancer.TableOptions{})
	if err != nil {
		t.Fatalf("NewTable: %v", err)
	}
	router := balancer.NewRouter(table)
	logger := slog.New(slog.NewTextHandler(logWriter{t}, nil))
	eng, err := engine.New(engine.Options{
		Listeners: []engine.ListenerSpec{{Name: "web", Address: "127.0.0.1:0", Scheme: balancer.SchemeHTTP}},
		Router:    router,
		Loops:     1,
		Logger:    logger,
	})
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	eng.Start()
	t.Cleanup(func() { _ = eng.Close() })

	opts := Options{Addr: "127.0.0.1:0", Engine: eng, Router: router, Logger: logger}
	if mod != nil {
		mod(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatalf("admin.New: %v", err)
	}
	srv.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return &env{eng: eng, router: router, proxyAddr: eng.Addrs()[0].String(), backend: be, beAddr: beAddr,
		srv: srv, base: "http://" + srv.Addr()}
}

// proxyGet sends one request through the engine on its own connection.
func (e *env) proxyGet(t *testing.T, host string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+e.proxyAddr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET via proxy (Host %s): %v", host, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e *env) do(t *testing.T, method, path string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, path, err)
	}
	return resp, b
}

// scrape returns /metrics as series ("name{labels}") -> value.
func (e *env) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	resp, body := e.do(t, http.MethodGet, "/metrics")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("/metrics Content-Type %q", ct)
	}
	out := make(map[string]float64)
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("bad metrics line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad value in %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func TestMetricsCountTraffic(t *testing.T) {
	e := newEnv(t, nil)
	if code, body := e.proxyGet(t, "app.test"); code != 200 || !strings.HasPrefix(body, "hello from app.test") {
		t.Fatalf("forwarded request: %d %q", code, body)
	}
	if code, _ := e.proxyGet(t, "nope.test"); code < 400 {
		t.Fatalf("unknown host answered %d, want an error status", code)
	}
	// Connections are counted when they end, which the engine notices
	// shortly after the client; poll until the counters settle.
	var m map[string]float64
	deadline := time.Now().Add(5 * time.Second)
	for {
		m = e.scrape(t)
		settled := m[`portier_connections_total{listener="web",outcome="forwarded"}`] >= 1 &&
			m[`portier_connections_total{listener="web",outcome="rejected"}`] >= 1 &&
			m[`portier_connections_open{listener="web"}`] == 0
		if settled || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	tests := []struct {
		series string
		min    float64
		max    float64
	}{
		{`portier_connections_accepted_total{listener="web"}`, 2, math.Inf(1)},
		{`portier_connections_open{listener="web"}`, 0, 0},
		{`portier_connections_total{listener="web",outcome="forwarded"}`, 1, 1},
		{`portier_connections_total{listener="web",outcome="rejected"}`, 1, 1},
		{`portier_connections_total{listener="web",outcome="idle_timeout"}`, 0, 0},
		{`portier_bytes_total{direction="up",listener="web"}`, 30, math.Inf(1)},
		{`portier_bytes_total{direction="down",listener="web"}`, 30, math.Inf(1)},
		{`portier_rejections_total{reason="unknown_name"}`, 1, 1},
		{`portier_rejections_total{reason="malformed"}`, 0, 0},
		{`portier_backend_connect_failures_total`, 0, 0},
		{`portier_backend_connect_duration_seconds_count`, 1, 1},
		{`portier_backend_connect_duration_seconds_bucket{le="+Inf"}`, 1, 1},
		{`portier_backend_connect_duration_seconds_bucket{le="5"}`, 1, 1},
		{`portier_limit_hits_total{limit="max_connections"}`, 0, 0},
		{`portier_limit_hits_total{limit="max_connections_per_ip"}`, 0, 0},
		{`portier_routes`, 3, 3},
		{`go_goroutines`, 1, math.Inf(1)},
		{`process_open_fds`, 1, math.Inf(1)},
	}
	for _, tc := range tests {
		v, ok := m[tc.series]
		if !ok {
			t.Errorf("%s missing", tc.series)
			continue
		}
		if v < tc.min || v > tc.max {
			t.Errorf("%s = %v, want [%v, %v]", tc.series, v, tc.min, tc.max)
		}
	}
	// Optional sources were not configured: their series must be absent.
	for name := range m {
		for _, p := range []string{"portier_backend_up", "portier_redis_", "portier_accesslog_"} {
			if strings.HasPrefix(name, p) {
				t.Errorf("%s exported without its source", name)
			}
		}
	}
}

func TestMetricsOptionalSources(t *testing.T) {
	alog, err := accesslog.Open(accesslog.Options{Path: filepath.Join(t.TempDir(), "access.log"), Queue: 4})
	if err != nil {
		t.Fatal(err)
	}
	rec := accesslog.Record{Start: time.Now(), Listener: "web", Outcome: "forwarded"}
	for range 2 {
		alog.Log(&rec)
	}
	if err := alog.Close(); err != nil {
		t.Fatal(err)
	}
	alog.Log(&rec) // after Close: dropped

	tests := []struct {
		name  string
		redis RedisStatus
		want  map[string]float64
	}{
		{"synced", RedisStatus{Connected: true, LastSync: time.Now().Add(-30 * time.Second), Routes: 7, Skipped: 2, Notifications: true},
			map[string]float64{"portier_redis_connected": 1, "portier_redis_routes": 7,
				"portier_redis_skipped_routes": 2, "portier_redis_notifications": 1}},
		{"never synced", RedisStatus{},
			map[string]float64{"portier_redis_connected": 0, "portier_redis_routes": 0,
				"portier_redis_last_sync_age_seconds": math.Inf(1), "portier_redis_notifications": 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			health := []balancer.BackendState{
				{Addr: "127.0.0.1:9001", Scheme: balancer.SchemeHTTP, Up: true, Active: 3},
				{Addr: "127.0.0.1:9001", Scheme: balancer.SchemeHTTP, Up: true, Active: 3}, // reported twice
				{Addr: "127.0.0.1:9001", Scheme: balancer.SchemeTLS, Up: false, Active: 1},
				{Addr: "127.0.0.1:9002", Scheme: balancer.SchemeHTTP, Up: true, FleetDown: true},
			}
			e := newEnv(t, func(o *Options) {
				o.Health = func() []balancer.BackendState { return health }
				o.Redis = func() RedisStatus { return tc.redis }
				o.AccessLog = alog
			})
			m := e.scrape(t)
			want := map[string]float64{
				`portier_backend_up{backend="127.0.0.1:9001",scheme="http"}`:   1,
				`portier_backend_up{backend="127.0.0.1:9001",scheme="tls"}`:    0,
				`portier_backend_up{backend="127.0.0.1:9002",scheme="http"}`:   0,
				`portier_backend_active_connections{backend="127.0.0.1:9001"}`: 4,
				`portier_backend_active_connections{backend="127.0.0.1:9002"}`: 0,
				`portier_accesslog_written_total`:                              2,
				`portier_accesslog_dropped_total`:                              1,
			}
			for k, v := range tc.want {
				want[k] = v
			}
			for k, v := range want {
				got, ok := m[k]
				if !ok {
					t.Errorf("%s missing", k)
				} else if got != v {
					t.Errorf("%s = %v, want %v", k, got, v)
				}
			}
			if !tc.redis.LastSync.IsZero() {
				if age := m["portier_redis_last_sync_age_seconds"]; age < 30 || age > 60 {
					t.Errorf("redis_last_sync_age_seconds = %v, want about 30", age)
				}
			}
		})
	}
}

func TestPprof(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		path string
		gzip bool   // a binary profile (gzip-compressed protobuf)
		text string // else a substring of the body
	}{
		{"/debug/pprof/profile?seconds=1", true, ""},
		{"/debug/pprof/heap", true, ""},
		{"/debug/pprof/allocs", true, ""},
		{"/debug/pprof/goroutine?debug=1", false, "goroutine profile:"},
		{"/debug/pprof/", false, "threadcreate"},
		{"/debug/pprof/cmdline", false, "admin.test"},
		{"/debug/pprof/trace?seconds=0.2", false, "go 1."},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			resp, body := e.do(t, http.MethodGet, tc.path)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %.200s", resp.StatusCode, body)
			}
			if tc.gzip {
				if len(body) < 2 || body[0] != 0x1f || body[1] != 0x8b {
					t.Fatalf("not a gzip profile: % x", body[:min(len(body), 8)])
				}
				return
			}
			if !strings.Contains(string(body), tc.text) {
				t.Fatalf("body lacks %q: %.200s", tc.text, body)
			}
		})
	}
}

func TestHealthz(t *testing.T) {
	var ready atomic.Bool
	e := newEnv(t, func(o *Options) { o.Ready = ready.Load })
	for _, tc := range []struct {
		ready bool
		want  int
	}{{false, http.StatusServiceUnavailable}, {true, http.StatusOK}, {false, http.StatusServiceUnavailable}} {
		ready.Store(tc.ready)
		if resp, body := e.do(t, http.MethodGet, "/healthz"); resp.StatusCode != tc.want {
			t.Errorf("ready=%v: /healthz %d %q, want %d", tc.ready, resp.StatusCode, body, tc.want)
		}
	}
}

type routesResponse struct {
	Routes []RouteInfo `json:"routes"`
}

func (e *env) routeList(t *testing.T) map[string]RouteInfo {
	t.Helper()
	resp, body := e.do(t, http.MethodGet, "/routes")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("/routes: %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var rr routesResponse
	if err := json.Unmarshal(body, &rr); err != nil {
		t.Fatalf("/routes is not JSON: %v: %s", err, body)
	}
	out := make(map[string]RouteInfo)
	var names []string
	for _, r := range rr.Routes {
		out[r.Name] = r
		names = append(names, r.Name)
	}
	if got := strings.Join(names, ","); got != "*.wild.test,app.test,secure.test" {
		t.Fatalf("route names %s", got)
	}
	return out
}

func TestRoutes(t *testing.T) {
	e := newEnv(t, nil)
	routes := e.routeList(t)
	tests := []struct {
		name   string
		url    string
		addr   string
		scheme string
		weight int
	}{
		{"app.test", "http://" + e.beAddr, e.beAddr, "http", 1},
		{"*.wild.test", "http://" + e.beAddr + "?weight=3", e.beAddr, "http", 3},
		{"secure.test", "tls://127.0.0.1:1", "127.0.0.1:1", "tls", 1},
	}
	for _, tc := range tests {
		r := routes[tc.name]
		if r.Balance == "" {
			t.Errorf("%s: empty balance", tc.name)
		}
		if len(r.Backends) != 1 {
			t.Errorf("%s: %d backends, want 1: %+v", tc.name, len(r.Backends), r.Backends)
			continue
		}
		b := r.Backends[0]
		want := BackendInfo{URL: tc.url, Addr: tc.addr, Scheme: tc.scheme, Weight: tc.weight, Up: b.Up}
		if b != want || b.Draining || b.Active != 0 {
			t.Errorf("%s: backend %+v, want %+v", tc.name, b, want)
		}
	}
}

// TestRoutesLookup checks that table.Lookup finds a wildcard route by its
// own "*.x" name and that a scheme-less lookup is told apart from the
// default route's pool, the two assumptions poolBackends relies on.
func TestRoutesLookup(t *testing.T) {
	routes := []balancer.RouteSpec{
		{Name: "*.apps.test", Backends: []string{"http://127.0.0.1:81", "tls://127.0.0.1:82"}},
		{Name: "fallback.test", Backends: []string{"http://127.0.0.1:83"}},
		{Name: "tlsonly.test", Backends: []string{"tls://127.0.0.1:84"}},
	}
	table, err := balancer.NewTable(context.Background(), routes, "fallback.test", balancer.TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		route    string
		wantOK   bool
		wantURLs []string
	}{
		{"*.apps.test", true, []string{"http://127.0.0.1:81", "tls://127.0.0.1:82"}},
		{"fallback.test", true, []string{"http://127.0.0.1:83"}},
		{"tlsonly.test", true, []string{"tls://127.0.0.1:84"}},
	}
	specs := table.Routes()
	byURL := backendsByURL(table)
	urlsOf := func(bes []*balancer.Backend) string {
		var urls []string
		for _, b := range bes {
			urls = append(urls, b.Spec.Raw)
		}
		return strings.Join(urls, " ")
	}
	for i, tc := range tests {
		want := strings.Join(tc.wantURLs, " ")
		bes, ok := poolBackends(table, specs[i])
		if ok != tc.wantOK || urlsOf(bes) != want {
			t.Errorf("poolBackends(%s) = %s %v, want %s %v", tc.route, urlsOf(bes), ok, want, tc.wantOK)
		}
		// The fallback must agree with the pools.
		if got := urlsOf(specBackends(byURL, specs[i])); got != want {
			t.Errorf("specBackends(%s) = %s, want %s", tc.route, got, want)
		}
	}
	// A spec whose URLs the pools do not hold is not attributed to them.
	stray := balancer.RouteSpec{Name: "tlsonly.test", Backends: []string{"tls://127.0.0.1:84", "http://127.0.0.1:99"}}
	if _, ok := poolBackends(table, stray); ok {
		t.Error("poolBackends accepted pools that lack one of the route's URLs")
	}
	if got := urlsOf(specBackends(byURL, stray)); got != "tls://127.0.0.1:84" {
		t.Errorf("specBackends(stray) = %s", got)
	}
	infos := routeInfos(table)
	for i, tc := range tests {
		var urls []string
		for _, b := range infos[i].Backends {
			urls = append(urls, b.URL)
		}
		if infos[i].Name != tc.route || strings.Join(urls, " ") != strings.Join(tc.wantURLs, " ") {
			t.Errorf("routeInfos[%d] = %s %v, want %s %v", i, infos[i].Name, urls, tc.route, tc.wantURLs)
		}
	}
}

func TestDrain(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name     string
		method   string
		query    string
		status   int
		draining bool // expected state of the backend afterwards
	}{
		{"get refused", http.MethodGet, "?addr=" + e.beAddr + "&on=1", http.StatusMethodNotAllowed, false},
		{"bad addr", http.MethodPost, "?addr=app.test:80&on=1", http.StatusBadRequest, false},
		{"missing on", http.MethodPost, "?addr=" + e.beAddr, http.StatusBadRequest, false},
		{"unknown addr", http.MethodPost, "?addr=127.0.0.9:1&on=1", http.StatusNotFound, false},
		{"drain", http.MethodPost, "?addr=" + e.beAddr + "&on=1", http.StatusOK, true},
		{"drain again", http.MethodPost, "?addr=" + e.beAddr + "&on=1", http.StatusOK, true},
		{"undrain", http.MethodPost, "?addr=" + e.beAddr + "&on=0", http.StatusOK, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.do(t, tc.method, "/backends/drain"+tc.query)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, body, tc.status)
			}
			if tc.status == http.StatusOK {
				var got struct {
					Draining bool `json:"draining"`
					Backends int  `json:"backends"`
				}
				if err := json.Unmarshal(body, &got); err != nil || got.Draining != tc.draining || got.Backends != 2 {
					t.Errorf("reply %s (%v)", body, err)
				}
			}
			// Two URLs (app.test and *.wild.test) name the same address.
			for _, b := range e.router.Load().Backends() {
				if b.Addr.String() == e.beAddr && b.Draining() != tc.draining {
					t.Errorf("%s: Draining() = %v, want %v", b.Spec.Raw, b.Draining(), tc.draining)
				}
			}
			for name, r := range e.routeList(t) {
				if name != "secure.test" && r.Backends[0].Draining != tc.draining {
					t.Errorf("/routes %s: draining %v, want %v", name, r.Backends[0].Draining, tc.draining)
				}
			}
		})
	}
}

func TestNewAddr(t *testing.T) {
	e := newEnv(t, nil) // for a valid engine and router
	tests := []struct {
		addr        string
		allowPublic bool
		wantErr     string // "" for success
	}{
		{"127.0.0.1:0", false, ""},
		{"localhost:0", false, ""},
		{"0.0.0.0:0", false, "not loopback"},
		{":0", false, "not loopback"},
		{"[::]:0", false, "not loopback"},
		{"192.0.2.1:0", false, "not loopback"},
		{"admin.example:0", false, "not loopback"},
		{"127.0.0.1", false, "missing port"},
		{"0.0.0.0:0", true, ""},
		{e.srv.Addr(), false, "address already in use"}, // bind errors surface in New
	}
	for _, tc := range tests {
		t.Run(tc.addr+"/"+strconv.FormatBool(tc.allowPublic), func(t *testing.T) {
			s, err := New(Options{Addr: tc.addr, AllowPublic: tc.allowPublic, Engine: e.eng, Router: e.router})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if _, _, err := net.SplitHostPort(s.Addr()); err != nil || strings.HasSuffix(s.Addr(), ":0") {
					t.Errorf("Addr() = %q", s.Addr())
				}
				// Shutdown without Serve must release the socket.
				if err := s.Shutdown(context.Background()); err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
				if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
					c.Close()
					t.Errorf("%s still accepts after Shutdown", s.Addr())
				}
				return
			}
			if err == nil {
				_ = s.Shutdown(context.Background())
				t.Fatalf("New(%q) succeeded, want error containing %q", tc.addr, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q lacks %q", err, tc.wantErr)
			}
		})
	}
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"no engine", Options{Addr: "127.0.0.1:0", Router: e.router}},
		{"no router", Options{Addr: "127.0.0.1:0", Engine: e.eng}},
	} {
		if _, err := New(tc.opts); err == nil {
			t.Errorf("%s: New succeeded", tc.name)
		}
	}
}

func TestShutdownStopsServing(t *testing.T) {
	e := newEnv(t, nil)
	if resp, _ := e.do(t, http.MethodGet, "/healthz"); resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz %d before shutdown", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := c.Get(e.base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("/healthz answered after Shutdown")
	}
}

// Package admin serves portier's operator endpoints over plain HTTP:
// Prometheus metrics, pprof, a readiness probe, the route table and backend
// draining. It runs on net/http's own goroutines, never on an event loop, and
// reads the engine's counters only when scraped.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/portier/portier/accesslog"
	"github.com/portier/portier/balancer"
	"github.com/portier/portier/engine"
	"github.com/portier/portier/routetop"
)

// RedisStatus is the state of the Redis route source.
type RedisStatus struct {
	Connected     bool
	LastSync      time.Time // zero: never synced
	Routes        int       // routes loaded by the last sync
	Skipped       int       // invalid entries skipped by the last sync
	Notifications bool      // keyspace notifications active (else polling only)
}

// Options configures New.
type Options struct {
	// Addr is the listen address, e.g. "127.0.0.1:9090". A host that is not
	// loopback (including an empty host, meaning every interface) is refused
	// unless AllowPublic: pprof and drain must not be exposed by accident.
	Addr        string
	AllowPublic bool
	Engine      *engine.Engine   // required: counters for /metrics
	Router      *balancer.Router // required: current route table
	// Health reports backend health; optional.
	Health func() []balancer.BackendState
	// Redis reports the Redis route source; nil when Redis is not configured.
	Redis func() RedisStatus
	// AccessLog, when set, has its dropped and written counters exported.
	AccessLog *accesslog.Log
	// RouteStats, when set, has the counters of routes with metrics: true
	// exported; RouteTop, the busiest routes of the last window.
	RouteStats *balancer.RouteStatsSet
	RouteTop   *routetop.Top
	// LogDropped, when set, counts the process log's dropped lines.
	LogDropped func() uint64
	// Ready gates /healthz (200 only when it returns true); nil means ready.
	Ready  func() bool
	Logger *slog.Logger // default slog.Default()
}

// Server is the admin HTTP server.
type Server struct {
	opts  Options
	ln    net.Listener
	srv   *http.Server
	csrf  string // the status page's drain forms carry it
	rates rates  // the status page's connection and request rates
}

// New validates opts and binds the listening socket, so that a bad or busy
// address fails at start rather than in the background. Call Serve to serve.
func New(opts Options) (*Server, error) {
	if opts.Engine == nil {
		return nil, errors.New("admin: no engine")
	}
	if opts.Router == nil {
		return nil, errors.New("admin: no router")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := checkAddr(opts.Addr, opts.AllowPublic); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("admin: listen %s: %w", opts.Addr, err)
	}
	s := &Server{opts: opts, ln: ln, csrf: newCSRFToken()}
	s.srv = &http.Server{
		// Browsers' cross-site POSTs (a page elsewhere aiming at the
		// loopback admin) are refused; curl and the status page are not.
		Handler:           http.NewCrossOriginProtection().Handler(s.routes()),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// No WriteTimeout: /debug/pprof/profile and trace stream for as
		// many seconds as asked.
		ErrorLog: slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// checkAddr refuses listen addresses reachable from other hosts unless
// allowPublic. Host names other than "localhost" are refused too: what they
// resolve to can change.
func checkAddr(addr string, allowPublic bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("admin: address %q: %w", addr, err)
	}
	if allowPublic {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Unmap().IsLoopback() {
		return nil
	}
	return fmt.Errorf("admin: address %q is not loopback; set allow_public to expose the admin endpoints (pprof, drain)", addr)
}

// Addr returns the bound address, e.g. "127.0.0.1:41234".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve starts serving in its own goroutine and returns at once.
func (s *Server) Serve() {
	go func() {
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.opts.Logger.Error("admin server stopped", "addr", s.Addr(), "err", err)
		}
	}()
}

// Shutdown stops accepting and waits for active requests until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	// Shutdown only closes listeners Serve has registered; close ours in
	// case Serve never ran (or has not reached Serve yet).
	if cerr := s.ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("admin: shutdown: %w", err)
	}
	return nil
}

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(NewRegistry(s.opts), promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(s.opts.Logger.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	// pprof on this mux explicitly: importing net/http/pprof also registers
	// on http.DefaultServeMux, which portier never serves.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	for _, name := range []string{"allocs", "block", "goroutine", "heap", "mutex", "threadcreate"} {
		mux.Handle("/debug/pprof/"+name, pprof.Handler(name))
	}
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /routes", s.routeList)
	mux.HandleFunc("POST /backends/drain", s.drain)
	mux.HandleFunc("GET /{$}", s.status)
	mux.HandleFunc("POST /status/drain", s.statusDrain)
	return mux
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if s.opts.Ready != nil && !s.opts.Ready() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// RouteInfo is one route in the /routes response.
type RouteInfo struct {
	Name     string        `json:"name"`
	Balance  string        `json:"balance"`
	Backends []BackendInfo `json:"backends"`
}

// BackendInfo is one backend of a route in the /routes response.
type BackendInfo struct {
	URL      string `json:"url"`
	Addr     string `json:"addr"`
	Scheme   string `json:"scheme"`
	Weight   int    `json:"weight"`
	Up       bool   `json:"up"`
	Draining bool   `json:"draining"`
	Active   int64  `json:"active"`
}

func (s *Server) routeList(w http.ResponseWriter, _ *http.Request) {
	out := struct {
		Routes []RouteInfo `json:"routes"`
	}{Routes: []RouteInfo{}}
	if t := s.opts.Router.Load(); t != nil {
		out.Routes = routeInfos(t)
	}
	writeJSON(w, http.StatusOK, out)
}

// routeInfos lists t's routes with the live state of their backends.
func routeInfos(t *balancer.Table) []RouteInfo {
	var byRaw map[string]*balancer.Backend // built only if a lookup misses
	specs := t.Routes()
	infos := make([]RouteInfo, 0, len(specs))
	for _, r := range specs {
		infos = append(infos, routeInfo(t, r, &byRaw))
	}
	return infos
}

// routeInfo is r with the live state of its backends. *byRaw is built on
// first need (backendsByURL) and reused by the caller's next calls.
func routeInfo(t *balancer.Table, r balancer.RouteSpec, byRaw *map[string]*balancer.Backend) RouteInfo {
	info := RouteInfo{Name: r.Name, Balance: r.Balance.String(), Backends: []BackendInfo{}}
	bes, ok := poolBackends(t, r)
	if !ok {
		if *byRaw == nil {
			*byRaw = backendsByURL(t)
		}
		bes = specBackends(*byRaw, r)
	}
	for _, b := range bes {
		info.Backends = append(info.Backends, BackendInfo{
			URL: b.Spec.Raw, Addr: b.AddrText, Scheme: b.Spec.Scheme.String(), Weight: b.Spec.Weight,
			Up: b.Up(), Draining: b.Draining(), Active: b.Active(),
		})
	}
	return info
}

// poolBackends collects r's backends from the table's pools, looking the
// name up per scheme ("*.x" matches its own wildcard entry). ok is false when
// a lookup does not land on r's own pool: Lookup falls back to the default
// route, which belongs to another name, when r has no backend of a scheme.
func poolBackends(t *balancer.Table, r balancer.RouteSpec) (bes []*balancer.Backend, ok bool) {
	found := 0
	for _, sch := range []balancer.Scheme{balancer.SchemeHTTP, balancer.SchemeTLS, balancer.SchemeQUIC} {
		p := t.Lookup(sch, []byte(r.Name))
		if p == nil || p.Name != r.Name {
			continue
		}
		bes = append(bes, p.Backends...)
		found += len(p.Backends)
	}
	// Every URL of the route is in exactly one of its pools (URLs are
	// deduplicated per table), so a full match has len(r.Backends) backends.
	return bes, found == len(r.Backends) && found > 0
}

// backendsByURL indexes t's backends by URL; the table builds one Backend
// per distinct URL.
func backendsByURL(t *balancer.Table) map[string]*balancer.Backend {
	m := make(map[string]*balancer.Backend)
	for _, b := range t.Backends() {
		m[b.Spec.Raw] = b
	}
	return m
}

// specBackends finds r's backends by their URLs, in r's order: the fallback
// when poolBackends cannot attribute pools to r.
func specBackends(byURL map[string]*balancer.Backend, r balancer.RouteSpec) []*balancer.Backend {
	bes := make([]*balancer.Backend, 0, len(r.Backends))
	for _, raw := range r.Backends {
		if b := byURL[raw]; b != nil {
			bes = append(bes, b)
		}
	}
	return bes
}

func (s *Server) drain(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	text, err := backendAddrText(q.Get("addr"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var on bool
	switch q.Get("on") {
	case "1", "true":
		on = true
	case "0", "false":
	default:
		writeError(w, http.StatusBadRequest, "on: want 1 or 0")
		return
	}
	n := s.setDrain(text, on)
	if n == 0 {
		writeError(w, http.StatusNotFound, "no backend with address "+text)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Addr     string `json:"addr"`
		Draining bool   `json:"draining"`
		Backends int    `json:"backends"`
	}{text, on, n})
}

// backendAddrText turns an admin request's backend address into the form
// of Backend.AddrText: "ip:port" with an IPv4-mapped address unmapped, or
// "unix:/path" for a unix-socket backend.
func backendAddrText(text string) (string, error) {
	if strings.HasPrefix(text, "unix:/") {
		return text, nil
	}
	addr, err := netip.ParseAddrPort(text)
	if err != nil {
		return "", fmt.Errorf("addr: want IP:PORT or unix:/path: %v", err)
	}
	return netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port()).String(), nil
}

// setDrain sets the drain flag of every backend whose AddrText is text and
// returns how many there are.
func (s *Server) setDrain(text string, on bool) int {
	t := s.opts.Router.Load()
	n := 0
	if t != nil {
		for _, b := range t.Backends() {
			if b.AddrText == text { // "ip:port" (Addr.String()) or "unix:/path"
				b.SetDrain(on)
				n++
			}
		}
	}
	if n > 0 {
		s.opts.Logger.Info("backend drain set via admin", "addr", text, "drain", on, "backends", n)
	}
	return n
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, "encode: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{msg})
}

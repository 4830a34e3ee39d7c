package balancer

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// CheckKind selects the active health check of a backend.
type CheckKind uint8

const (
	CheckTCP  CheckKind = iota // connect, then close
	CheckHTTP                  // GET Path over plain HTTP/1.1, expect a status
	CheckNone                  // no active check; passive failures only
	CheckTLS                   // TLS handshake (as a client; no certificate check), for tls:// backends
)

// ParseCheckKind parses "tcp", "http", "tls" or "none".
func ParseCheckKind(s string) (CheckKind, error) {
	switch s {
	case "tls":
		return CheckTLS, nil
	case "tcp":
		return CheckTCP, nil
	case "http":
		return CheckHTTP, nil
	case "none":
		return CheckNone, nil
	}
	return 0, fmt.Errorf("%w %q (want tcp, http, tls or none)", ErrUnknownCheck, s)
}

// String returns the name ParseCheckKind accepts.
func (k CheckKind) String() string {
	switch k {
	case CheckTCP:
		return "tcp"
	case CheckHTTP:
		return "http"
	case CheckNone:
		return "none"
	case CheckTLS:
		return "tls"
	}
	return "check(" + strconv.Itoa(int(k)) + ")"
}

// ErrUnknownCheck is returned by ParseCheckKind for an unknown name.
var ErrUnknownCheck = errors.New("unknown health check")

// HealthCheck configures the health of a route's backends. Zero fields take
// defaults (see WithDefaults).
type HealthCheck struct {
	Kind     CheckKind
	Path     string // HTTP checks: request path, default "/"
	Expect   int    // HTTP checks: status wanted; 0 accepts any 2xx or 3xx
	Interval time.Duration
	Timeout  time.Duration
	Rise     int // good checks that bring a down backend up
	Fall     int // failed checks (or connects) that take an up backend down
}

// Package defaults for HealthCheck fields.
const (
	DefaultInterval = 2 * time.Second
	DefaultTimeout  = time.Second
	DefaultRise     = 2
	DefaultFall     = 3
	DefaultPath     = "/"
)

// WithDefaults fills the zero fields of h from d, then from the package
// defaults. Kind counts as zero when it is CheckTCP (the zero value), so a
// route inherits d's kind unless it asks for another.
func (h HealthCheck) WithDefaults(d HealthCheck) HealthCheck {
	pkg := HealthCheck{Path: DefaultPath, Interval: DefaultInterval, Timeout: DefaultTimeout, Rise: DefaultRise, Fall: DefaultFall}
	for _, src := range []HealthCheck{d, pkg} {
		if h.Kind == CheckTCP {
			h.Kind = src.Kind
		}
		if h.Path == "" {
			h.Path = src.Path
		}
		if h.Expect <= 0 {
			h.Expect = max(src.Expect, 0)
		}
		if h.Interval <= 0 {
			h.Interval = src.Interval
		}
		if h.Timeout <= 0 {
			h.Timeout = src.Timeout
		}
		if h.Rise <= 0 {
			h.Rise = src.Rise
		}
		if h.Fall <= 0 {
			h.Fall = src.Fall
		}
	}
	return h
}

// HealthOptions configures NewHealth.
type HealthOptions struct {
	// Defaults fill the zero fields of every route's HealthCheck.
	Defaults HealthCheck
	// Logger receives "backend down" and "backend up"; nil uses slog.Default().
	Logger *slog.Logger
	// OnChange is told when the local health of an address changes (not when
	// the fleet's view does). It runs on a checker goroutine, never on an
	// event loop, and may block briefly.
	OnChange func(addr string, up bool)
}

// Health runs active health checks and holds the runtime state of backends
// across table rebuilds: tables built with the same *Health share health,
// drain and active counts per (scheme, address).
type Health struct {
	opts HealthOptions
	log  *slog.Logger

	mu       sync.Mutex
	states   map[stateKey]*backendState // tracked, plus any built since the last Track
	tracked  map[stateKey]*backendState
	checkers map[*backendState]context.CancelFunc
	fleet    map[string]bool // addresses the fleet reports down
	runCtx   context.Context // nil unless Run is running
	wg       sync.WaitGroup

	// Passive changes of backends without a checker (passive.go).
	pmu      sync.Mutex
	ppending map[*backendState]struct{}
	pwake    chan struct{}
}

// NewHealth returns a Health; checks start when Run runs and Track names the
// tables.
func NewHealth(opts HealthOptions) *Health {
	h := &Health{
		opts:     opts,
		log:      opts.Logger,
		states:   make(map[stateKey]*backendState),
		tracked:  make(map[stateKey]*backendState),
		checkers: make(map[*backendState]context.CancelFunc),
		fleet:    make(map[string]bool),
		ppending: make(map[*backendState]struct{}),
		pwake:    make(chan struct{}, 1),
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	return h
}

// state returns the shared state for key, creating it with cfg.
func (h *Health) state(key stateKey, cfg *probeConfig) *backendState {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s, ok := h.states[key]; ok {
		return s
	}
	s := newState(key, h, h.log, cfg)
	s.fleetDown.Store(h.fleet[s.addr])
	h.states[key] = s
	return s
}

// Track makes t the table whose backends are checked: addresses new in t
// start being checked, addresses no longer in t stop. Each (scheme, address)
// is checked once however many routes name it. Call it after every table
// built with h is stored; nil stops all checks.
func (h *Health) Track(t *Table) {
	want := make(map[stateKey]*backendState)
	drain := make(map[*backendState]bool)
	if t != nil {
		for _, b := range t.backends {
			if b.st.h != h {
				continue // built without h (or with another Health)
			}
			want[b.st.key] = b.st
			drain[b.st] = drain[b.st] || b.Spec.Drain
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s, cancel := range h.checkers {
		if want[s.key] != s || s.cfg.Load().Kind == CheckNone {
			cancel()
			delete(h.checkers, s)
		}
	}
	for s, d := range drain {
		s.mu.Lock()
		s.specDrain = d
		s.mu.Unlock()
		s.fleetDown.Store(h.fleet[s.addr])
	}
	h.tracked = want
	h.states = maps.Clone(want)
	if h.runCtx != nil {
		for _, s := range want {
			h.startLocked(s)
		}
	}
}

// startLocked starts the checker of s unless it runs or s has no active
// check (passive changes then go to the one passive goroutine). h.mu is held.
func (h *Health) startLocked(s *backendState) {
	if _, ok := h.checkers[s]; ok {
		return
	}
	if s.cfg.Load().Kind == CheckNone {
		h.passiveChanged(s) // report what changed while nobody looked
		return
	}
	ctx, cancel := context.WithCancel(h.runCtx)
	h.checkers[s] = cancel
	s.checkers.Add(1)
	h.wg.Add(1)
	go h.check(ctx, s)
}

// TrackAdded starts checking the backends a Table.Update built (added),
// without the full pass of Track; addresses no route uses any more are
// stopped at the next Track.
func (h *Health) TrackAdded(added []*Backend) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, b := range added {
		st := b.st
		if st.h != h {
			continue
		}
		if h.tracked[st.key] != st {
			h.tracked[st.key] = st
			h.states[st.key] = st
		}
		st.mu.Lock()
		st.specDrain = st.specDrain || b.Spec.Drain
		st.mu.Unlock()
		st.fleetDown.Store(h.fleet[st.addr])
		if h.runCtx != nil {
			h.startLocked(st)
		}
	}
}

// Run runs the checks of the tracked tables until ctx is done, then stops
// them and returns. Run it once at a time.
func (h *Health) Run(ctx context.Context) {
	h.mu.Lock()
	h.runCtx = ctx
	h.wg.Add(1)
	go h.runPassive(ctx)
	for _, s := range h.tracked {
		h.startLocked(s)
	}
	h.mu.Unlock()
	<-ctx.Done()
	h.mu.Lock()
	h.runCtx = nil
	for s, cancel := range h.checkers {
		cancel()
		delete(h.checkers, s)
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// SetFleetDown records that another proxy of the fleet found addr ("ip:port")
// down (or up again). Backends of both schemes at addr follow it.
func (h *Health) SetFleetDown(addr string, down bool) {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		addr = netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()).String()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if down {
		h.fleet[addr] = true
	} else {
		delete(h.fleet, addr)
	}
	for _, s := range h.states {
		if s.addr == addr && s.fleetDown.Swap(down) != down {
			h.log.Info("backend fleet view changed", "addr", addr, "scheme", s.key.scheme.String(), "fleet_down", down)
		}
	}
}

// BackendState is the runtime state of one (address, scheme) for the admin API.
type BackendState struct {
	Addr      string // "ip:port"
	Scheme    Scheme
	Up        bool // local checks pass (Backend.Up also needs !FleetDown)
	FleetDown bool // another proxy of the fleet reports it down
	Draining  bool // a URL says drain=1 or SetDrain(true)
	Active    int64
	LastCheck time.Time // zero before the first active check
	LastError string    // of the last active check; "" when it passed
	// ConnectFailures counts failed connects to the address (each retry).
	ConnectFailures int64
}

// States returns the state of every tracked backend address, sorted by
// address and scheme.
func (h *Health) States() []BackendState {
	h.mu.Lock()
	out := make([]BackendState, 0, len(h.tracked))
	for _, s := range h.tracked {
		s.mu.Lock()
		bs := BackendState{
			Addr: s.addr, Scheme: s.key.scheme,
			Up: s.localUp(), FleetDown: s.fleetDown.Load(),
			Draining: s.specDrain || s.drain.Load(), Active: s.active.Load(),
			LastCheck: s.lastCheck, LastError: s.lastErr, ConnectFailures: s.failures.Load(),
		}
		s.mu.Unlock()
		out = append(out, bs)
	}
	h.mu.Unlock()
	slices.SortFunc(out, func(a, b BackendState) int {
		if c := strings.Compare(a.Addr, b.Addr); c != 0 {
			return c
		}
		return int(a.Scheme) - int(b.Scheme)
	})
	return out
}

// check is the checker goroutine of one state: it probes on a jittered
// interval, counts rise and fall, and reports passive changes handed over by
// the event loops.
func (h *Health) check(ctx context.Context, s *backendState) {
	defer h.wg.Done()
	defer s.checkerStopped()
	// Jitter the first check over a whole interval so that a fleet of
	// backends added at once is not probed in lockstep.
	t := time.NewTimer(rand.N(s.cfg.Load().Interval) + 1)
	defer t.Stop()
	var goods, bads int
	prevDown := s.down.Load()
	s.reconcile() // changes made while no checker ran
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
			if d := s.down.Load(); d != 0 && prevDown == 0 {
				goods = 0 // a passive down needs Rise fresh good checks
			}
			prevDown = s.down.Load()
			s.reconcile()
			if s.cfg.Load().Kind == CheckNone {
				t.Reset(h.passiveWait(s))
			}
			continue
		case <-t.C:
		}
		cfg := s.cfg.Load()
		if cfg.Kind == CheckNone {
			if d := s.down.Load(); d != 0 && d != downHeld && nanotime() >= d && s.down.CompareAndSwap(d, 0) {
				s.reason.Store(&reasonTimeout)
			}
			prevDown = s.down.Load()
			s.reconcile()
			t.Reset(h.passiveWait(s))
			continue
		}
		if d := s.down.Load(); d != 0 && prevDown == 0 {
			goods = 0
		}
		err := probe(ctx, s, cfg)
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.lastCheck = time.Now()
		s.lastErr = ""
		if err != nil {
			s.lastErr = err.Error()
		}
		s.mu.Unlock()
		d := s.down.Load()
		if err != nil {
			goods, bads = 0, bads+1
			if bads >= cfg.Fall && s.localUp() && s.down.CompareAndSwap(d, downHeld) {
				msg := err.Error()
				s.reason.Store(&msg)
			}
		} else {
			goods, bads = goods+1, 0
			if d != 0 && goods >= cfg.Rise && s.down.CompareAndSwap(d, 0) {
				s.fails.Store(0)
				s.reason.Store(&reasonChecksOK)
			}
		}
		prevDown = s.down.Load()
		s.reconcile()
		// ±10% jitter keeps checks of many backends spread out.
		iv := cfg.Interval
		t.Reset(iv - iv/10 + rand.N(iv/5+1))
	}
}

// passiveWait is how long a CheckNone checker sleeps: until the passive
// deadline, or an interval when there is none.
func (h *Health) passiveWait(s *backendState) time.Duration {
	if d := s.down.Load(); d != 0 && d != downHeld {
		if w := time.Duration(d - nanotime()); w > 0 {
			return w + time.Millisecond
		}
		return time.Millisecond
	}
	return s.cfg.Load().Interval
}

// proxyV2Local is a PROXY v2 header with the LOCAL command: the connection
// comes from the proxy itself, as health checks do.
var proxyV2Local = []byte("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00")

// probe runs one active check. HTTP checks apply to http:// backends only:
// tls:// backends get a TCP check (the proxy holds no keys).
func probe(ctx context.Context, s *backendState, cfg *probeConfig) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if s.key.scheme == SchemeQUIC {
		return probeQUIC(ctx, s.addr)
	}
	var d net.Dialer
	network, address := "tcp", s.addr
	if s.key.path != "" {
		network, address = "unix", s.key.path
	}
	c, err := d.DialContext(ctx, network, address)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Close()
	httpCheck := cfg.Kind == CheckHTTP && s.key.scheme == SchemeHTTP
	tlsCheck := cfg.Kind == CheckTLS && s.key.scheme == SchemeTLS
	if !httpCheck && !tlsCheck {
		return nil // TCP; an http check of a tls backend or the reverse is a TCP check too
	}
	if dl, ok := ctx.Deadline(); ok {
		if err := c.SetDeadline(dl); err != nil {
			return fmt.Errorf("set deadline: %w", err)
		}
	}
	if tlsCheck {
		return probeTLS(ctx, c, cfg)
	}
	var req []byte
	switch cfg.proxy {
	case ProxyV1:
		req = append(req, "PROXY UNKNOWN\r\n"...)
	case ProxyV2:
		req = append(req, proxyV2Local...)
	}
	req = fmt.Appendf(req, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: portier-health\r\nConnection: close\r\n\r\n",
		cfg.Path, hostHeader(cfg.host, s.key.addr.Port()))
	if _, err := c.Write(req); err != nil {
		return fmt.Errorf("send request: %w", err)
	}
	line, err := bufio.NewReaderSize(c, 256).ReadSlice('\n')
	if err != nil {
		return fmt.Errorf("read status: %w", err)
	}
	code, ok := statusCode(line)
	if !ok {
		return fmt.Errorf("malformed status line %q", strings.TrimRight(string(line), "\r\n"))
	}
	if cfg.Expect != 0 && code != cfg.Expect || cfg.Expect == 0 && (code < 200 || code > 399) {
		want := "2xx or 3xx"
		if cfg.Expect != 0 {
			want = strconv.Itoa(cfg.Expect)
		}
		return fmt.Errorf("status %d, want %s", code, want)
	}
	return nil
}

// hostHeader is the Host header value for host and port (brackets around an
// IPv6 literal, no port when it is HTTP's default). A unix socket has neither:
// its checks name "localhost", as curl --unix-socket does.
func hostHeader(host string, port uint16) string {
	if host == "" {
		return "localhost"
	}
	if strings.IndexByte(host, ':') >= 0 {
		host = "[" + host + "]"
	}
	if port == 80 {
		return host
	}
	return host + ":" + strconv.Itoa(int(port))
}

// statusCode parses "HTTP/1.x NNN ...".
func statusCode(line []byte) (int, bool) {
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' {
		return 0, false
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, false
		}
		code = code*10 + int(c-'0')
	}
	if len(line) > 12 && line[12] != ' ' && line[12] != '\r' && line[12] != '\n' {
		return 0, false
	}
	return code, true
}

// probeTLS completes a TLS handshake as a client: the backend's TLS stack
// answers, not just its kernel. portier holds no certificates, so the
// server's is not verified: this checks liveness, not identity. The SNI is
// the backend's host name when it has one.
func probeTLS(ctx context.Context, c net.Conn, cfg *probeConfig) error {
	switch cfg.proxy {
	case ProxyV1:
		if _, err := io.WriteString(c, "PROXY UNKNOWN\r\n"); err != nil {
			return fmt.Errorf("send PROXY header: %w", err)
		}
	case ProxyV2:
		if _, err := c.Write(proxyV2Local); err != nil {
			return fmt.Errorf("send PROXY header: %w", err)
		}
	}
	conf := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
	if _, err := netip.ParseAddr(cfg.host); err != nil {
		conf.ServerName = cfg.host
	}
	tc := tls.Client(c, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("tls handshake: %w", err)
	}
	_ = tc.Close()
	return nil
}

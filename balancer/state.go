package balancer

import (
	"log/slog"
	"math"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// stateKey identifies the runtime state of a backend: one per scheme and
// address, however many URLs (weights, options) name it.
type stateKey struct {
	scheme Scheme
	addr   netip.AddrPort
	path   string // unix socket path (addr is zero)
}

// downHeld in backendState.down means "down until the active checks see
// Rise good results"; any other non-zero value is a monotonic deadline after
// which a passively downed backend is tried again.
const downHeld = math.MaxInt64

// clockBase anchors nanotime. It is set once at start-up and never changed.
var clockBase = time.Now()

// nanotime is a monotonic clock in nanoseconds, always > 0 so that 0 can mean
// "up" in backendState.down. It does not allocate.
func nanotime() int64 { return int64(time.Since(clockBase)) + 1 }

// probeConfig is what the checker of a state needs from the route that
// configured it.
type probeConfig struct {
	HealthCheck
	host  string        // Host header for HTTP checks
	proxy ProxyProtocol // PROXY header the backend expects
}

// Reasons stored in backendState.reason for passive state changes. They are
// never modified.
var (
	reasonPassive  = "consecutive connect failures"
	reasonRecover  = "connect succeeded"
	reasonTimeout  = "passive fail timeout expired"
	reasonChecksOK = "checks passed"
)

// backendState is the mutable runtime state behind a Backend: health, drain
// and active connections. The event loops touch it only through atomics.
type backendState struct {
	key    stateKey
	addr   string       // key.addr as "ip:port", or "unix:" + key.path
	h      *Health      // nil: per-table state without active checks
	log    *slog.Logger // for per-table state (h == nil)
	cfg    atomic.Pointer[probeConfig]
	active atomic.Int64

	down      atomic.Int64 // 0: up; downHeld; or a nanotime deadline
	fleetDown atomic.Bool
	drain     atomic.Bool
	fails     atomic.Int32 // consecutive passive connect failures
	failures  atomic.Int64 // connect failures ever (status page)
	reason    atomic.Pointer[string]
	reported  atomic.Bool // the local health last logged and reported (true: up)
	checkers  atomic.Int32
	wake      chan struct{} // pokes the checker after a passive change

	mu        sync.Mutex // guards the fields below (checker and States only)
	lastCheck time.Time
	lastErr   string
	specDrain bool // some backend of the tracked table drains by its URL
}

func newState(key stateKey, h *Health, log *slog.Logger, cfg *probeConfig) *backendState {
	s := &backendState{key: key, addr: key.addr.String(), h: h, log: log, wake: make(chan struct{}, 1)}
	if key.path != "" {
		s.addr = "unix:" + key.path
	}
	s.cfg.Store(cfg)
	s.reported.Store(true)
	return s
}

// localUp reports the health seen by this proxy: checks and passive failures,
// not the fleet's view.
func (s *backendState) localUp() bool {
	d := s.down.Load()
	return d == 0 || (d != downHeld && nanotime() >= d)
}

// activeChecks reports whether a checker goroutine runs active checks for s,
// which then decides when a downed backend comes back.
func (s *backendState) activeChecks() bool {
	return s.checkers.Load() > 0 && s.cfg.Load().Kind != CheckNone
}

func (s *backendState) connectFailed() {
	s.failures.Add(1)
	n := s.fails.Add(1)
	cfg := s.cfg.Load()
	if int(n) < cfg.Fall {
		return
	}
	d := s.down.Load()
	if d != 0 && (d == downHeld || nanotime() < d) {
		return // already down
	}
	next := int64(downHeld)
	if !s.activeChecks() {
		next = nanotime() + int64(cfg.Interval)
	}
	if s.down.CompareAndSwap(d, next) {
		s.reason.Store(&reasonPassive)
		s.changed()
	}
}

func (s *backendState) connectSucceeded() {
	// Read before writing: the common case (no failures) must not dirty the
	// cache line shared by all event loops.
	if s.fails.Load() != 0 {
		s.fails.Store(0)
	}
	// A success proves a passively downed backend works; one held down by
	// the active checks waits for them.
	if d := s.down.Load(); d != 0 && d != downHeld && s.down.CompareAndSwap(d, 0) {
		s.reason.Store(&reasonRecover)
		s.changed()
	}
}

// changed hands a passive state change to whoever reports it. With a
// *Health that is the checker goroutine (the event loop must not block on
// OnChange; a checker that starts later reports what it finds); without one
// the caller logs it at once (rare: only on transitions).
func (s *backendState) changed() {
	if s.h != nil {
		if s.checkers.Load() == 0 {
			s.h.passiveChanged(s)
			return
		}
		select {
		case s.wake <- struct{}{}:
		default:
		}
		return
	}
	s.reconcile()
}

// reconcile logs and reports the local health if it differs from what was
// last reported. The CAS makes each transition reported exactly once.
func (s *backendState) reconcile() {
	up := s.localUp()
	if s.reported.Load() == up || !s.reported.CompareAndSwap(!up, up) {
		return
	}
	reason := ""
	if r := s.reason.Load(); r != nil {
		reason = *r
	}
	log := s.log
	if s.h != nil {
		log = s.h.log
	}
	if up {
		log.Info("backend up", "addr", s.addr, "scheme", s.key.scheme.String(), "reason", reason)
	} else {
		log.Warn("backend down", "addr", s.addr, "scheme", s.key.scheme.String(), "reason", reason,
			"fall", strconv.Itoa(s.cfg.Load().Fall))
	}
	// A unix socket is this host's own: the fleet does not share its health.
	if s.h != nil && s.h.opts.OnChange != nil && s.key.path == "" {
		s.h.opts.OnChange(s.addr, up)
	}
}

// checkerStopped runs when a checker goroutine exits: a backend it held down
// gets a passive deadline so that it cannot stay down forever unchecked.
func (s *backendState) checkerStopped() {
	if s.checkers.Add(-1) > 0 {
		return
	}
	s.down.CompareAndSwap(downHeld, nanotime()+int64(s.cfg.Load().Interval))
}

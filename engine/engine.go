// Package engine runs portier's event loops: it accepts connections, reads
// their first bytes until the parser finds a name, dials a backend without
// blocking and then forwards bytes both ways under flow control.
//
// Each loop is one goroutine locked to an OS thread that owns a gnet netpoll
// poller (epoll, edge-triggered), its own SO_REUSEPORT listening sockets and
// every connection it accepted. Nothing on a loop blocks: no DNS, no Redis, no
// locks. See docs/design.md for why the loops use gnet's poller directly rather
// than gnet's engine.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portier/portier/accesslog"
	"github.com/portier/portier/balancer"
	"github.com/portier/portier/eventlog"
	"github.com/portier/portier/routetop"
)

// ListenerSpec describes one listening address.
type ListenerSpec struct {
	Name    string
	Address string          // "127.0.0.1:8080", "[::1]:8443"; port 0 picks a free one
	Scheme  balancer.Scheme // SchemeHTTP routes by Host, SchemeTLS by SNI
	// AcceptProxy: every connection starts with a PROXY protocol header (v1
	// or v2) from a load balancer in front; it is accepted only from
	// TrustedProxies and the address it announces is the client's.
	AcceptProxy    bool
	TrustedProxies []netip.Prefix
	// NoForward turns off forwarding headers of an http listener (FwdXFF,
	// FwdProto, FwdPort, FwdForwarded); by default all are added to every request.
	NoForward uint8
}

// trusted reports whether a is in the listener's trusted proxy ranges.
func (s *ListenerSpec) trusted(a netip.Addr) bool {
	for _, p := range s.TrustedProxies {
		if p.Contains(a.Unmap()) || p.Contains(a) {
			return true
		}
	}
	return false
}

// Options configures an Engine. Zero values take the documented defaults.
type Options struct {
	Listeners        []ListenerSpec
	Router           *balancer.Router
	Loops            int           // event loops; 0 means one per CPU
	HandshakeTimeout time.Duration // first bytes must name a route within this (default 5s)
	ConnectTimeout   time.Duration // backend connect (default 3s)
	IdleTimeout      time.Duration // no byte either way (default 300s)
	MaxHeaderBytes   int           // request head / ClientHello limit (default 16 KiB)
	Retries          int           // further backends tried after a failed connect (default 2; <0: none)
	Logger           *slog.Logger  // default slog.Default(); the loops' lines go through the event log
	// LogQueue is each loop's event log queue (default 1024 lines); LogBurst
	// how many lines of one kind a loop logs per second before it
	// summarises the rest (default 10; <0: no limit).
	LogQueue, LogBurst int

	MaxConnections      int // open client connections overall; 0: unlimited
	MaxConnectionsPerIP int // open client connections per client address; 0: unlimited
	// PerIPv6Prefix is the IPv6 prefix length counted as one client
	// address by MaxConnectionsPerIP (default 64).
	PerIPv6Prefix int

	// AccessLog, if set, gets one record per client connection when it ends.
	AccessLog *accesslog.Log

	QUIC QUICOptions // quic listeners

	// RouteTop, if set, is told each routed connection's name and bytes
	// when it ends (top routes by traffic).
	RouteTop *routetop.Top

	// The keep-alive pool of http:// backend connections (routes may
	// override both): idle connections kept per backend address and loop
	// (default 32), and how long one may stay idle (default 15s).
	PoolMaxIdle     int
	PoolIdleTimeout time.Duration
	// DrainGrace is how long a kept-alive http client connection that is
	// idle when Shutdown starts may still send a request (answered with
	// Connection: close) before it is closed (default 1s).
	DrainGrace time.Duration
}

func (o *Options) setDefaults() {
	if o.Loops <= 0 {
		o.Loops = runtime.GOMAXPROCS(0)
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 5 * time.Second
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 3 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 300 * time.Second
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = 16 << 10
	}
	if o.Retries < 0 {
		o.Retries = 0
	} else if o.Retries == 0 {
		o.Retries = 2
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.QUIC.setDefaults()
	if o.PoolMaxIdle <= 0 {
		o.PoolMaxIdle = DefaultPoolMaxIdle
	}
	if o.PoolIdleTimeout <= 0 {
		o.PoolIdleTimeout = DefaultPoolIdleTimeout
	}
	if o.DrainGrace <= 0 {
		o.DrainGrace = DefaultDrainGrace
	}
}

// Engine is a set of event loops serving the same listeners.
type Engine struct {
	opts  Options
	loops []*loop
	addrs []netip.AddrPort // bound address per listener spec
	stats Stats
	perIP *ipCounts // nil without max_connections_per_ip
	// limitedLoops counts loops that stopped accepting at max_connections.
	limitedLoops atomic.Int32
	// events carries the loops' log lines to one writer goroutine.
	events *eventlog.Log
	q      engineQUIC

	wg       sync.WaitGroup
	stopTick chan struct{}
	closed   atomic.Bool
	draining atomic.Bool

	drainStart atomic.Int64 // unix nanoseconds when Shutdown began
}

// New validates opts and binds every listener on every loop. Call Start to serve.
func New(opts Options) (*Engine, error) {
	opts.setDefaults()
	if len(opts.Listeners) == 0 {
		return nil, errors.New("engine: no listeners")
	}
	if opts.Router == nil {
		return nil, errors.New("engine: no router")
	}
	e := &Engine{opts: opts, stopTick: make(chan struct{})}
	e.events = eventlog.New(opts.Logger.Handler(), eventlog.Options{Queue: opts.LogQueue, Burst: opts.LogBurst})
	if opts.MaxConnectionsPerIP > 0 {
		e.perIP = newIPCounts(opts.PerIPv6Prefix)
	}
	if opts.QUIC.MaxFlowsPerIP > 0 {
		e.q.perIP = newIPCounts(opts.PerIPv6Prefix)
	}
	e.stats.Listeners = make([]ListenerStats, len(opts.Listeners))
	for i, l := range opts.Listeners {
		e.stats.Listeners[i].Name = l.Name
	}
	for i := 0; i < opts.Loops; i++ {
		l, err := newLoop(e, i)
		if err != nil {
			e.closeLoops()
			return nil, err
		}
		e.loops = append(e.loops, l)
	}
	for i, spec := range opts.Listeners {
		ap, err := netip.ParseAddrPort(spec.Address)
		if err != nil {
			host, port, serr := net.SplitHostPort(spec.Address)
			if serr != nil {
				e.closeLoops()
				return nil, fmt.Errorf("listener %s: address %q: %w", spec.Name, spec.Address, serr)
			}
			ips, rerr := net.DefaultResolver.LookupNetIP(context.Background(), "ip", host)
			if rerr != nil || len(ips) == 0 {
				e.closeLoops()
				return nil, fmt.Errorf("listener %s: resolve %q: %w", spec.Name, host, rerr)
			}
			ap, err = netip.ParseAddrPort(net.JoinHostPort(ips[0].Unmap().String(), port))
			if err != nil {
				e.closeLoops()
				return nil, fmt.Errorf("listener %s: address %q: %w", spec.Name, spec.Address, err)
			}
		}
		// Loop 0 binds first so that port 0 resolves to one port shared by all loops.
		for _, l := range e.loops {
			bound, err := l.listen(i, spec, ap)
			if err != nil {
				e.closeLoops()
				return nil, fmt.Errorf("listener %s: %w", spec.Name, err)
			}
			ap = bound
		}
		e.addrs = append(e.addrs, ap)
	}
	return e, nil
}

// Addrs returns the bound address of each listener, in Options.Listeners order.
func (e *Engine) Addrs() []netip.AddrPort { return e.addrs }

// Stats returns the engine's live counters.
func (e *Engine) Stats() *Stats { return &e.stats }

// Start runs the loops in their own goroutines and returns at once.
func (e *Engine) Start() {
	for _, l := range e.loops {
		e.wg.Add(1)
		go func(l *loop) {
			defer e.wg.Done()
			defer close(l.exited)
			l.run()
		}(l)
	}
	// The poller blocks in epoll_wait without a timeout, so a ticker wakes
	// each loop to expire deadlines.
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-e.stopTick:
				return
			case <-t.C:
				for _, l := range e.loops {
					l.trigger(l.sweepTask)
				}
			}
		}
	}()
}

// Shutdown stops accepting and lets open connections finish until ctx ends,
// then closes what is left. The listening sockets are closed at once (after
// taking the connections already queued), so a new portier bound to the
// same ports with SO_REUSEPORT receives every new connection; an http
// client's next request on a kept-alive connection is not forwarded (the
// connection closes after the current answer and the client reconnects).
func (e *Engine) Shutdown(ctx context.Context) error {
	if e.closed.Load() || e.draining.Load() {
		return e.Close()
	}
	e.drainStart.Store(time.Now().UnixNano()) // before draining is seen
	if !e.draining.CompareAndSwap(false, true) {
		return e.Close()
	}
	// A loop that has exited (its poller failed) never runs the task: skip
	// it, and never wait past ctx.
	stopped := make([]chan struct{}, len(e.loops))
	for i, l := range e.loops {
		done := make(chan struct{})
		stopped[i] = done
		l.trigger(func(any) error {
			l.stopListening()
			close(done)
			return nil
		})
	}
	for i, l := range e.loops {
		select {
		case <-stopped[i]:
		case <-l.exited:
		case <-ctx.Done():
			_ = e.Close()
			return ctx.Err()
		}
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	// QUIC flows keep their listener (their datagrams arrive on it) and
	// end when idle.
	for e.stats.Open.Load() > 0 || e.q.open.Load() > 0 {
		select {
		case <-ctx.Done():
			_ = e.Close()
			return ctx.Err()
		case <-t.C:
		}
	}
	return e.Close()
}

// Draining reports whether Shutdown has begun.
func (e *Engine) Draining() bool { return e.draining.Load() }

// Close stops accepting, closes every connection and waits for the loops to exit.
func (e *Engine) Close() error {
	if !e.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(e.stopTick)
	for _, l := range e.loops {
		l.trigger(l.stopTask)
	}
	e.wg.Wait()
	e.closeLoops()
	return nil
}

func (e *Engine) closeLoops() {
	for _, l := range e.loops {
		l.release()
	}
	e.events.Close() // after the loops: their last lines are written
}

// tick is how often each loop expires deadlines; timeouts are this coarse.
const tick = 100 * time.Millisecond

// Loops reports how many event loops run.
func (e *Engine) Loops() int { return len(e.loops) }

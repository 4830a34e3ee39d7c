package engine

import (
	"net/netip"
	"sync/atomic"

	"github.com/portier/portier/balancer"
)

// ipCounts counts open connections per client address for
// max_connections_per_ip without a lock or a map: a count-min sketch of two
// rows of counters, each address hashed to one counter per row with
// independent hashes. An address's count is the smaller of its two counters,
// which is exact unless both of its counters are shared with other busy
// addresses (then it over-counts, never under-counts). 2 x 64Ki counters use
// 512 KiB whatever the number of clients. IPv6 clients are counted per
// prefix (default /64): one host owns a whole /64 and could otherwise use
// 2^64 addresses.
type ipCounts struct {
	rows   [2][1 << 16]atomic.Int32
	v6bits int
}

func newIPCounts(v6bits int) *ipCounts {
	if v6bits <= 0 || v6bits > 128 {
		v6bits = 64
	}
	return &ipCounts{v6bits: v6bits}
}

// key is the address a client is counted under.
func (s *ipCounts) key(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() && s.v6bits < 128 {
		if p, err := a.WithZone("").Prefix(s.v6bits); err == nil {
			return p.Addr()
		}
	}
	return a
}

func (s *ipCounts) slots(a netip.Addr) (uint32, uint32) {
	h := balancer.HashAddr(s.key(a))
	return uint32(h) & 0xffff, uint32(h>>32) & 0xffff
}

// acquire counts one more connection from a unless that would exceed limit.
// It counts first, then reads both counters again and takes its count back
// when over the limit: of the connections admitted at once, the one whose
// reads come last sees every other's count in both rows, so together they
// never exceed the limit (loops admitting the same client at once may all
// be refused, never all admitted). Deciding on the values the two Adds
// returned is not enough: each row can show a different racer first.
func (s *ipCounts) acquire(a netip.Addr, limit int32) bool {
	i, j := s.slots(a)
	s.rows[0][i].Add(1)
	s.rows[1][j].Add(1)
	if min(s.rows[0][i].Load(), s.rows[1][j].Load()) > limit {
		s.rows[0][i].Add(-1)
		s.rows[1][j].Add(-1)
		return false
	}
	return true
}

func (s *ipCounts) release(a netip.Addr) {
	i, j := s.slots(a)
	s.rows[0][i].Add(-1)
	s.rows[1][j].Add(-1)
}

// admit applies max_connections_per_ip to a client whose address is known
// (after its PROXY header, on listeners that take one). It reports false
// when the client was refused.
func (l *loop) admit(c *conn) bool {
	o := &l.e.opts
	if o.MaxConnectionsPerIP > 0 {
		if !l.e.perIP.acquire(c.remote.Addr(), int32(o.MaxConnectionsPerIP)) {
			l.e.stats.Limited[LimitPerIP].Add(1)
			l.reject(c, rejLimit, nil, errMaxPerIP)
			return false
		}
		c.flags |= fCounted
	}
	return true
}

// max_connections works like HAProxy's maxconn: at the limit a loop stops
// accepting (its listening sockets leave the poller) and new connections
// wait in the kernel's backlog; the first connection to close anywhere
// re-arms the paused loops. Nobody is accepted just to be refused, and a
// flood cannot hold slots with refused connections.

// takeSlot reserves one of max_connections for the connection about to be
// accepted (counted in Stats.Open). At the limit it pauses this loop's
// accepting and reports false.
func (l *loop) takeSlot() bool {
	limit := int64(l.e.opts.MaxConnections)
	if limit <= 0 {
		return true
	}
	open := &l.e.stats.Open
	for {
		n := open.Load()
		if n >= limit {
			l.limitAccept()
			return false
		}
		if open.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// giveSlot returns a slot taken for an accept that found nothing (or a
// connection that could not be registered).
func (l *loop) giveSlot() {
	if l.e.opts.MaxConnections > 0 {
		l.e.stats.Open.Add(-1)
		l.e.slotFreed()
	}
}

// limitAccept pauses this loop's listeners until a slot frees.
func (l *loop) limitAccept() {
	if l.limited.Load() {
		return
	}
	l.e.stats.Limited[LimitTotal].Add(1)
	l.limited.Store(true)
	l.e.limitedLoops.Add(1)
	l.armListeners()
	// A connection that closed between the check and the flag saw no
	// paused loop: look again (both sides are sequentially consistent).
	if l.e.stats.Open.Load() < int64(l.e.opts.MaxConnections) {
		l.unlimit()
	}
}

// unlimit runs on the loop: accept again if a slot is free.
func (l *loop) unlimit() {
	l.resumeQueued.Store(false)
	if !l.limited.Load() || l.e.stats.Open.Load() >= int64(l.e.opts.MaxConnections) {
		return
	}
	l.limited.Store(false)
	l.e.limitedLoops.Add(-1)
	l.armListeners()
}

// slotFreed wakes every loop paused by max_connections; it costs one atomic
// load while none is.
func (e *Engine) slotFreed() {
	if e.limitedLoops.Load() == 0 {
		return
	}
	for _, l := range e.loops {
		if l.limited.Load() && l.resumeQueued.CompareAndSwap(false, true) {
			l.trigger(l.unlimitTask)
		}
	}
}

// armListeners adds this loop's listening sockets to the poller, or removes
// them, as the accept pauses (out of descriptors, max_connections) require.
func (l *loop) armListeners() {
	want := l.acceptPaused == 0 && !l.limited.Load()
	if want == l.lnArmed {
		return
	}
	l.lnArmed = want
	for _, ln := range l.lns {
		if ln.fd < 0 {
			continue
		}
		if want {
			l.pa.FD = ln.fd
			_ = l.poller.AddRead(&l.pa, false)
		} else {
			_ = l.poller.Delete(ln.fd)
		}
	}
}

type limitError string

func (e limitError) Error() string { return string(e) }

const errMaxPerIP = limitError("max_connections_per_ip reached for this client address")

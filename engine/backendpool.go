package engine

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/portier/portier/balancer"
)

// Backend keep-alive pool. Each loop keeps, per backend address (ip:port or
// unix socket path), the idle
// connections to http:// backends whose last answer ended cleanly, and
// hands one to the next request routed to that backend (from any client
// connection of the loop). Like nginx's upstream keepalive and HAProxy's
// http-reuse, this saves the backend connect and teardown on both ends,
// which is most of the cost of a client that opens a connection per request.
//
// A connection is pooled only when nothing about it is uncertain: every
// request sent was complete and has its complete answer (framed by
// Content-Length or chunked), neither side said close, no Upgrade was
// asked for, no PROXY header was sent (it names one client), and the
// backend is up and not draining; source=client connections (bound to one
// client's address) are never pooled either. An idle pooled connection stays
// registered for reading: the backend closing it (or sending anything)
// removes it at once.
//
// Which requests may use one (docs/design.md, "Backend keep-alive pool"):
// only a request portier can replay, i.e. one complete request of an
// idempotent method held in full. If the pooled connection turns out dead
// before the first answer byte, the request is resent over a fresh
// connection, invisibly to the client. Any other request gets a fresh
// connection.

// Pool defaults.
const (
	DefaultPoolMaxIdle     = 32
	DefaultPoolIdleTimeout = 15 * time.Second
	DefaultDrainGrace      = time.Second
)

// maxSpareBuckets bounds the emptied buckets a loop keeps for reuse.
const maxSpareBuckets = 64

// idleBucket holds the idle connections to one backend address, most
// recently parked last (reused first, so the oldest expire).
type idleBucket struct {
	conns []*conn
	b     *balancer.Backend // the backend the last connection was parked for (health, drain)
}

// poolable reports whether connections of backend b in pool p may be kept.
func poolable(p *balancer.Pool, b *balancer.Backend) bool {
	return p != nil && !p.Reuse.Never && b.Spec.Proxy == balancer.ProxyNone && b.Spec.Scheme == balancer.SchemeHTTP &&
		b.Spec.Source != balancer.SourceClient
}

func (l *loop) maxIdle(p *balancer.Pool) int {
	if p.Reuse.MaxIdle > 0 {
		return p.Reuse.MaxIdle
	}
	return l.e.opts.PoolMaxIdle
}

func (l *loop) idleTimeout(p *balancer.Pool) int64 {
	if p.Reuse.IdleTimeout > 0 {
		return int64(p.Reuse.IdleTimeout)
	}
	return int64(l.e.opts.PoolIdleTimeout)
}

// takePooled returns an idle connection to b for client c, or nil when c's
// request may not use one or none is idle.
func (l *loop) takePooled(c *conn, b *balancer.Backend) *conn {
	if c.h == nil || c.flags&(fReplay|fFresh) != fReplay || c.first == nil || !poolable(c.pool, b) {
		return nil
	}
	q := l.idle[b.AddrText]
	for q != nil && len(q.conns) > 0 {
		bc := q.conns[len(q.conns)-1]
		if bc.flags&fReadReady != 0 {
			// The backend closed it (or spoke) and the event is not
			// handled yet: it is of no use.
			l.closeConn(bc)
			continue
		}
		l.unpool(bc)
		l.e.stats.PoolReuses.Add(1)
		bc.flags |= fReused
		return bc
	}
	l.e.stats.PoolMisses.Add(1)
	return nil
}

// park puts bc, detached from its client after complete answers, into the
// idle pool of its backend. It reports false (and the caller closes bc)
// when the pool is full or the backend should get no more requests.
func (l *loop) park(bc *conn, p *balancer.Pool) bool {
	b := bc.backend
	if l.e.draining.Load() || !b.Up() || b.Draining() {
		return false
	}
	q := l.idle[b.AddrText]
	if q == nil {
		if n := len(l.spareBuckets); n > 0 {
			q = l.spareBuckets[n-1]
			l.spareBuckets[n-1] = nil
			l.spareBuckets = l.spareBuckets[:n-1]
		} else {
			q = &idleBucket{}
		}
		l.idle[b.AddrText] = q
	}
	if len(q.conns) >= l.maxIdle(p) {
		return false
	}
	q.conns = append(q.conns, bc)
	q.b = b
	bc.state = stPooled
	bc.flags &^= fReused
	bc.active = l.idleTimeout(p) // the expiry of a pooled connection
	if l.poolMin == 0 || bc.active < l.poolMin {
		l.poolMin = bc.active
	}
	l.setList(bc, listPooled)
	l.e.stats.PoolIdle.Add(1)
	return true
}

// unpool takes bc out of its bucket and the expiry list.
func (l *loop) unpool(bc *conn) {
	l.setList(bc, listNone)
	bc.state = stForward
	l.e.stats.PoolIdle.Add(-1)
	q := l.idle[bc.backend.AddrText]
	for i, x := range q.conns {
		if x == bc {
			last := len(q.conns) - 1
			copy(q.conns[i:], q.conns[i+1:])
			q.conns[last] = nil
			q.conns = q.conns[:last]
			break
		}
	}
	if len(q.conns) == 0 {
		// An emptied bucket is kept for the next one made (with clients
		// that open a connection per request, a backend's bucket empties
		// and fills all the time), but not in the map: a loop that once
		// pooled for many backends does not keep a bucket for each.
		delete(l.idle, bc.backend.AddrText)
		if len(l.spareBuckets) < maxSpareBuckets {
			q.b = nil
			l.spareBuckets = append(l.spareBuckets, q)
		}
	}
}

// pooledEvent handles an event on an idle pooled connection: a backend that
// closes it, resets it or sends anything unasked makes it useless.
func (l *loop) pooledEvent(bc *conn) {
	if bc.flags&fReadReady == 0 {
		return
	}
	n, err := sysRead(bc.fd, l.buf[:1])
	for n < 0 && err == unix.EINTR {
		n, err = sysRead(bc.fd, l.buf[:1])
	}
	if n < 0 && err == unix.EAGAIN {
		bc.flags &^= fReadReady
		return
	}
	l.closeConn(bc)
}

// sweepPool runs every tick: it closes pooled connections past their idle
// timeout and, once a second or while shutting down, those whose backend
// went down or drains.
func (l *loop) sweepPool() {
	// The list is in parking order; a connection parked later than one not
	// yet expired by the shortest timeout in use cannot be expired either.
	for c := l.pooledList.head; c != nil; {
		age := l.now - c.since
		if age < l.poolMin {
			break
		}
		next := c.next
		if age >= c.active {
			l.closeConn(c)
		}
		c = next
	}
	l.poolTicks++
	if l.poolTicks < 10 && !l.e.draining.Load() {
		return
	}
	l.poolTicks = 0
	for _, q := range l.idle {
		if l.e.draining.Load() || !q.b.Up() || q.b.Draining() {
			for len(q.conns) > 0 {
				l.closeConn(q.conns[len(q.conns)-1])
			}
		}
	}
}

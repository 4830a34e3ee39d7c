package engine

import (
	"errors"
	"time"

	"github.com/portier/portier/balancer"
)

// Deadline lists: intrusive, doubly linked, one per fixed timeout, so adding,
// removing and expiring are O(1) and allocate nothing.
const (
	listNone uint8 = iota
	listHandshake
	listConnect
	listIdle
	listLinger
	listPooled
)

// list is a deadline list of connections (listNone is 0, as remove leaves it).
type list = deadlineList[conn, *conn]

func (c *conn) deadlineLinks() (*links[conn], *uint8) { return &c.links, &c.list }

func (l *loop) listOf(id uint8) *list {
	switch id {
	case listHandshake:
		return &l.handshakes
	case listConnect:
		return &l.connects
	case listIdle:
		return &l.idles
	case listLinger:
		return &l.lingers
	case listPooled:
		return &l.pooledList
	}
	return nil
}

// setList moves c to list id (listNone removes it).
func (l *loop) setList(c *conn, id uint8) {
	if c.list != listNone {
		l.listOf(c.list).remove(c)
	}
	if id != listNone {
		l.listOf(id).push(c, l.now)
	}
}

// sweep runs every tick on the loop: refresh the clock, expire deadlines,
// re-arm listeners paused after EMFILE.
func (l *loop) sweep() {
	l.now = time.Now().UnixNano()
	o := &l.e.opts
	for c := l.handshakes.head; c != nil && l.now-c.since >= int64(o.HandshakeTimeout); c = l.handshakes.head {
		if c.ln.spec.Scheme == balancer.SchemeHTTP {
			l.reject(c, rejTimeout, nil, nil)
		} else {
			l.logRejected(c, rejTimeout, nil, nil, 0, 0)
			l.e.stats.Rejected.Add(1)
			l.e.stats.Rejects[ReasonTimeout].Add(1)
			c.outcome, c.reason = OutcomeRejected, rejTimeout
			l.closeConn(c)
		}
	}
	for c := l.connects.head; c != nil && l.now-c.since >= int64(o.ConnectTimeout); c = l.connects.head {
		l.connectFailed(c, errConnectTimeout)
	}
	for c := l.idles.head; c != nil && l.now-c.since >= int64(o.IdleTimeout); c = l.idles.head {
		c.outcome = OutcomeIdleTimeout
		l.closePair(c)
	}
	for c := l.lingers.head; c != nil && l.now-c.since >= int64(lingerTimeout); c = l.lingers.head {
		l.closeConn(c)
	}
	l.quicSweep()
	l.sweepPool()
	if l.e.draining.Load() && l.now-l.e.drainStart.Load() >= int64(o.DrainGrace) {
		l.closeIdleHTTP()
	}
	l.ev.Tick(time.Unix(0, l.now))
	if l.acceptPaused > 0 {
		l.acceptPaused--
		if l.acceptPaused == 0 {
			l.armListeners()
		}
	}
}

var errConnectTimeout = errors.New("connect timeout")

// closeIdleHTTP runs while shutting down, once the drain grace has passed:
// kept-alive http connections between requests (every answer complete) and
// quiet for the grace too are closed, as nginx and HAProxy do on a graceful
// stop; waiting for them would hold the shutdown until its timeout. A
// request that was on its way meanwhile got an answer saying close. The
// client opens a new connection (to the new process, in a restart) for its
// next request.
func (l *loop) closeIdleHTTP() {
	grace := int64(l.e.opts.DrainGrace)
	// The list is in order of last activity: the rest was active since.
	for c := l.idles.head; c != nil && l.now-c.since >= grace; {
		next := c.next
		if idleHTTP(c) {
			c.outcome = OutcomeShutdown
			l.closePair(c)
		}
		c = next
	}
}

package engine

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	gerrors "github.com/panjf2000/gnet/v2/pkg/errors"
	"github.com/panjf2000/gnet/v2/pkg/netpoll"
	"github.com/panjf2000/gnet/v2/pkg/queue"
	"golang.org/x/sys/unix"

	"github.com/portier/portier/accesslog"
	"github.com/portier/portier/eventlog"
	"github.com/portier/portier/internal/rawsock"
	"github.com/portier/portier/parser"
	"github.com/portier/portier/proxyproto"
	"github.com/portier/portier/routetop"
)

const (
	readBufSize      = 64 << 10 // one read; also the most a connection holds in user space per direction
	readsPerEvent    = 4        // reads per wakeup before other connections get a turn
	maxFreeConns     = 4096
	maxFreeBufs      = 64
	lingerTimeout    = 2 * time.Second
	acceptPauseTicks = 2 // after EMFILE, listeners rest this many ticks
)

// loop owns a poller and every connection accepted on it; only its goroutine
// touches them.
type loop struct {
	id     int
	e      *Engine
	poller *netpoll.Poller
	conns  []*conn // indexed by file descriptor
	lns    []*conn // this loop's listening sockets
	buf    []byte  // shared read buffer
	now    int64   // unix nanoseconds, refreshed every tick

	free    []*conn
	bufFree [][]byte

	// watched counts clients registered with the poller (watch); tests
	// read it to see that connection-per-request clients are not.
	watched atomic.Int64

	// Deadline lists. Each holds connections in the order their fixed
	// timeout started, so expiry only looks at the head.
	handshakes, connects, idles, lingers list

	ready      []*conn // connections with more to read after their read budget
	readySpare []*conn
	readyQueue bool

	acceptPaused int  // ticks left before listeners are re-armed after EMFILE
	lnArmed      bool // the listening sockets are in the poller
	// limited: accepting paused at max_connections; resumeQueued: an
	// unlimitTask is on its way. Both are read by other loops.
	limited, resumeQueued atomic.Bool

	pipe [2]int // for splice(2) (bulk.go): made with the loop, -1 if it could not be; always empty between calls
	epfd int    // the poller's epoll descriptor (epollFD)
	gen  uint16 // generation of the latest registered socket

	hello parser.ClientHello
	fr    parser.RequestFramer // checks a client's first bytes before dialling
	out   []byte               // rewritten client bytes on their way to a backend
	drops [][2]int             // lines of the head being rewritten that are dropped

	httpFree []*httpConn
	rec      accesslog.Record    // scratch for the access log (copied by Log)
	alog     *accesslog.Producer // this loop's access log queue; nil without one
	top      *routetop.Producer  // this loop's route-traffic queue; nil without route metrics
	ev       *eventlog.Producer  // this loop's event log queue
	evt      eventlog.Event      // scratch event (copied by Log)
	pp       proxyproto.Header

	// The backend keep-alive pool (backendpool.go).
	idle map[string]*idleBucket // by Backend.AddrText
	// spareBuckets are emptied idle buckets, kept so that parking does not
	// allocate (backendpool.go).
	spareBuckets []*idleBucket
	pooledList   list  // every pooled connection, in parking order
	poolMin      int64 // the shortest idle timeout of a connection parked on this loop
	poolTicks    int

	sa     rawsock.Sockaddr // a backend's address, for connect
	src    rawsock.Sockaddr // a client's address, for source=client's bind
	rsa    unix.RawSockaddrAny
	rsaLen uint32
	pa     netpoll.PollAttachment

	sweepTask, stopTask, unlimitTask queue.Func
	tasks                            taskQueue // functions run on the loop (trigger)

	exited chan struct{} // closed when run has returned

	q *quicLoop // nil without quic listeners
}

func newLoop(e *Engine, id int) (*loop, error) {
	p, err := netpoll.OpenPoller()
	if err != nil {
		return nil, err
	}
	epfd, err := epollFD(p)
	if err != nil {
		_ = p.Close()
		return nil, err
	}
	l := &loop{id: id, e: e, poller: p, epfd: epfd, buf: make([]byte, readBufSize), now: time.Now().UnixNano(),
		ev: e.events.Producer(), lnArmed: true, exited: make(chan struct{})}
	if err := l.tasks.init(epfd); err != nil {
		_ = p.Close()
		return nil, err
	}
	// The splice pipe is made with the loop, not on first use, so that a
	// loop's own descriptors are fixed from its start. Without one, bulk
	// bytes are read and written like any others.
	if unix.Pipe2(l.pipe[:], unix.O_NONBLOCK|unix.O_CLOEXEC) != nil {
		l.pipe = [2]int{-1, -1}
	}
	if e.opts.AccessLog != nil {
		l.alog = e.opts.AccessLog.Producer()
	}
	if e.opts.RouteTop != nil {
		l.top = e.opts.RouteTop.Producer()
	}
	l.handshakes.init(listHandshake)
	l.connects.init(listConnect)
	l.idles.init(listIdle)
	l.lingers.init(listLinger)
	l.pooledList.init(listPooled)
	l.idle = make(map[string]*idleBucket)
	l.drops = make([][2]int, 0, 16)
	l.sweepTask = func(any) error { l.sweep(); return nil }
	l.unlimitTask = func(any) error { l.unlimit(); return nil }
	l.stopTask = func(any) error {
		l.closeAll()
		return gerrors.ErrEngineShutdown
	}
	return l, nil
}

func (l *loop) run() {
	// Not locked to its OS thread: a locked goroutine that blocks or yields
	// hands its P to another thread and back; see docs/design.md.
	err := l.wait()
	if err != nil && !errors.Is(err, gerrors.ErrEngineShutdown) {
		l.logLoop(slog.LevelError, kindLoopStopped, "event loop stopped", "", err)
	}
}

// release closes the poller and any listening socket left; called after run returned.
func (l *loop) release() {
	l.quicCloseAll()
	if l.pipe[0] >= 0 {
		_ = unix.Close(l.pipe[0])
		_ = unix.Close(l.pipe[1])
	}
	for _, ln := range l.lns {
		if ln.fd >= 0 {
			_ = unix.Close(ln.fd)
			ln.fd = -1
		}
	}
	_ = l.poller.Close()
	_ = unix.Close(l.tasks.efd)
}

func (l *loop) closeAll() {
	l.quicCloseAll()
	for _, ln := range l.lns {
		if ln.fd >= 0 {
			l.conns[ln.fd] = nil
			_ = unix.Close(ln.fd)
			ln.fd = -1
		}
	}
	for _, c := range l.conns {
		if c != nil && c.kind == kindClient {
			if c.outcome == OutcomeForwarded {
				c.outcome = OutcomeShutdown
			}
			l.closeConn(c)
		}
	}
	for _, c := range l.conns {
		if c != nil {
			l.closeConn(c)
		}
	}
}

func (l *loop) setConn(fd int, c *conn) {
	if fd >= len(l.conns) {
		n := 2 * len(l.conns)
		if n < 1024 {
			n = 1024
		}
		for n <= fd {
			n *= 2
		}
		grown := make([]*conn, n)
		copy(grown, l.conns)
		l.conns = grown
	}
	l.conns[fd] = c
}

func (l *loop) onEvent(token int, ev netpoll.IOEvent) {
	fd := token & (1<<genShift - 1)
	if l.q != nil && l.quicEvent(fd) {
		return
	}
	if fd >= len(l.conns) {
		return
	}
	c := l.conns[fd]
	if c == nil || int(c.gen) != token>>genShift {
		return // an event of a closed socket whose descriptor number was reused
	}
	if ev&unix.EPOLLERR != 0 {
		c.flags |= fConnErr
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.flags |= fReadReady
		if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			c.flags |= fHup
		}
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.flags |= fWriteReady
	}
	switch c.state {
	case stListen:
		l.accept(c)
	case stHandshake:
		if c.flags&fReadReady != 0 {
			l.handshakeRead(c)
		}
	case stConnecting:
		if c.flags&fWriteReady != 0 {
			l.connected(c)
		}
	case stForward:
		if c.flags&fWriteReady != 0 && c.pend != nil {
			l.flush(c)
			if c.state != stForward {
				return
			}
		}
		if c.flags&fReadReady != 0 {
			l.pump(c)
		}
	case stLinger:
		l.lingerRead(c)
	case stPooled:
		l.pooledEvent(c)
	case stWaitPeer:
		// The client waits for its backend to connect; its bytes stay in the
		// socket (flow control) until then.
	}
}

// getBuf returns a buffer for bytes a peer could not take yet.
func (l *loop) getBuf() []byte {
	if n := len(l.bufFree); n > 0 {
		b := l.bufFree[n-1]
		l.bufFree = l.bufFree[:n-1]
		return b[:0]
	}
	return make([]byte, 0, readBufSize)
}

func (l *loop) putBuf(b []byte) {
	if len(l.bufFree) < maxFreeBufs && cap(b) == readBufSize {
		l.bufFree = append(l.bufFree, b[:0])
	}
}

func (l *loop) newConn(fd int, kind uint8) *conn {
	var c *conn
	if n := len(l.free); n > 0 {
		c = l.free[n-1]
		l.free = l.free[:n-1]
	} else {
		c = new(conn)
	}
	c.fd = fd
	c.kind = kind
	l.setConn(fd, c)
	return c
}

// scheduleRead queues c to read again after other connections had their turn.
func (l *loop) scheduleRead(c *conn) {
	if c.flags&fQueued != 0 {
		return
	}
	c.flags |= fQueued
	l.ready = append(l.ready, c)
	l.readyQueue = true // run by wait after this batch
}

func (l *loop) runReady() {
	l.readyQueue = false
	batch := l.ready
	l.ready = l.readySpare[:0]
	for i, c := range batch {
		batch[i] = nil
		if c.flags&fQueued == 0 { // closed meanwhile
			continue
		}
		c.flags &^= fQueued
		if c.state == stForward {
			l.pump(c)
		}
	}
	l.readySpare = batch[:0]
}

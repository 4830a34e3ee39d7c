package engine

import (
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/valyala/bytebufferpool"
	"golang.org/x/sys/unix"

	"github.com/portier/portier/balancer"
	"github.com/portier/portier/parser"
	"github.com/portier/portier/proxyproto"
)

// accept takes one pending connection; it reports whether more may be
// pending. One per event: the level-triggered listener reports the next one
// at the poller's next look (which follows every batch anyway), so a short
// batch does not end with an accept4 that only returns EAGAIN.
func (l *loop) accept(ln *conn) bool {
	if !l.takeSlot() {
		return false // at max_connections: the rest wait in the backlog
	}
	var fd int
	var remote netip.AddrPort
	for {
		var err error
		fd, remote, err = l.accept4(ln.fd)
		if err == nil {
			break
		}
		switch err {
		case unix.EINTR, unix.ECONNABORTED:
			continue
		case unix.EAGAIN:
		case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
			l.pauseAccept(err)
		default:
			l.logLoop(slog.LevelError, kindAcceptFailed, "accept failed", ln.ln.spec.Name, err)
		}
		l.giveSlot()
		return false
	}
	c := l.newConn(fd, kindClient)
	c.state = stHandshake
	c.ln = ln.ln
	c.remote = remote
	if err := l.stamp(c); err != nil {
		l.logLoop(slog.LevelError, kindAcceptFailed, "epoll add failed", ln.ln.spec.Name, err)
		l.conns[fd] = nil
		sysClose(fd)
		c.reset()
		l.free = append(l.free, c)
		l.giveSlot()
		return true
	}
	if len(ln.ln.spec.TrustedProxies) > 0 && ln.ln.spec.trusted(remote.Addr()) {
		c.flags |= fTrusted
	}
	l.e.stats.Accepted.Add(1)
	if l.e.opts.MaxConnections <= 0 { // else counted by takeSlot
		l.e.stats.Open.Add(1)
	}
	ls := &l.e.stats.Listeners[ln.ln.idx]
	ls.Accepted.Add(1)
	ls.Open.Add(1)
	if l.e.opts.AccessLog != nil {
		c.log = &connLog{wall: time.Now()}
	}
	l.setList(c, listHandshake)
	// Read at once, and register only if it must hear of more (see watch).
	c.flags |= fUnwatched | fReadReady
	gen := c.gen
	if c.ln.spec.AcceptProxy || l.admit(c) {
		l.handshakeRead(c)
	}
	if l.conns[fd] == c && c.gen == gen && c.flags&fUnwatched != 0 && wantsInput(c) && !l.watch(c) {
		l.closeConn(c)
	}
	return true
}

// stopListening closes this loop's listening sockets after taking the
// connections already queued on them, so that none is reset. From then on
// the kernel gives new connections to other sockets bound to the same port
// (a new portier, with SO_REUSEPORT).
func (l *loop) stopListening() {
	for _, ln := range l.lns {
		if ln.fd < 0 {
			continue
		}
		_ = l.poller.Delete(ln.fd)
		for i := 0; i < 1024 && l.accept(ln); i++ {
		}
		l.conns[ln.fd] = nil
		_ = unix.Close(ln.fd)
		ln.fd = -1
	}
}

// pauseAccept stops accepting for a few ticks when descriptors or memory run
// out: a level-triggered listener would otherwise wake the loop in a spin.
func (l *loop) pauseAccept(err error) {
	if l.acceptPaused == 0 {
		l.logLoop(slog.LevelWarn, kindAcceptPaused, "accept paused: out of resources", "", err)
	}
	l.acceptPaused = acceptPauseTicks
	l.armListeners()
}

// handshakeRead buffers a client's first bytes and examines them.
func (l *loop) handshakeRead(c *conn) {
	limit := l.e.opts.MaxHeaderBytes
	if c.first == nil {
		c.first = bytebufferpool.Get()
	}
	for c.flags&fReadReady != 0 {
		// Read at most one byte past the limit: enough to tell it was exceeded.
		room := limit + 1 - len(c.first.B)
		if room <= 0 {
			break
		}
		if room > len(l.buf) {
			room = len(l.buf)
		}
		n, err := sysRead(c.fd, l.buf[:room])
		if n > 0 {
			c.first.B = append(c.first.B, l.buf[:n]...)
			if n < room && c.flags&fHup == 0 {
				c.flags &^= fReadReady
			}
			continue
		}
		if n == 0 {
			c.flags = c.flags&^fReadReady | fReadEOF
			break
		}
		if err == unix.EAGAIN {
			c.flags &^= fReadReady
			break
		}
		if err == unix.EINTR {
			continue
		}
		l.closeConn(c) // reset by the client before it said anything useful
		return
	}
	if len(c.first.B) == 0 && c.flags&fReadEOF == 0 {
		return // read at accept before the client spoke: nothing to examine yet
	}
	l.examine(c)
}

// examine parses the buffered first bytes: route, wait for more, or reject.
func (l *loop) examine(c *conn) {
	if c.ln.spec.AcceptProxy && c.flags&fProxied == 0 && !l.acceptProxyHeader(c) {
		return
	}
	data := c.first.B
	if c.ln.spec.Scheme != balancer.SchemeTLS {
		l.examineHTTP(c, data)
		return
	}
	err := parser.ParseClientHello(data, l.e.opts.MaxHeaderBytes, &l.hello)
	switch {
	case err == nil:
		// Until the backend's first byte, nothing was agreed: the
		// ClientHello can go to another backend. An SSLv2-format one has no
		// SNI and goes to the default route, if there is one.
		c.flags |= fReplay
		if l.e.opts.AccessLog != nil {
			l.noteName(c, l.hello.ServerName, true)
		}
		l.route(c, l.hello.ServerName)
	case errors.Is(err, parser.ErrNeedMore):
		l.needMore(c, len(data))
	case errors.Is(err, parser.ErrTooLarge):
		l.reject(c, rejTooLarge, nil, err)
	case errors.Is(err, parser.ErrNotThisProtocol):
		l.fr.Reset()
		if _, _, herr := l.fr.Next(data, l.e.opts.MaxHeaderBytes); !errors.Is(herr, parser.ErrNotThisProtocol) {
			l.reject(c, rejPlainHTTPOnTLS, nil, err)
			return
		}
		l.reject(c, rejNotProtocol, nil, err)
	default:
		l.reject(c, rejMalformed, nil, err)
	}
}

// needMore handles first bytes that are not complete yet: over the limit,
// closed by the client, or waiting for more.
func (l *loop) needMore(c *conn, n int) {
	switch {
	case n > l.e.opts.MaxHeaderBytes:
		l.reject(c, rejTooLarge, nil, nil)
	case c.flags&fReadEOF != 0 && n == 0:
		l.closeConn(c) // connected and left: a probe, nothing to answer
	case c.flags&fReadEOF != 0:
		l.reject(c, rejTruncated, nil, nil)
	}
}

// noteName keeps what the access log reports about the client's request.
// It allocates (the name outlives the buffer), which is why it only runs
// with an access log.
func (l *loop) noteName(c *conn, name []byte, tlsListener bool) {
	c.log.name = string(name)
	if !tlsListener {
		return
	}
	if p, _, _ := parser.NextProtocol(l.hello.ALPN); len(p) > 0 {
		switch string(p) { // the common ones without an allocation
		case "h2":
			c.log.alpn = "h2"
		case "http/1.1":
			c.log.alpn = "http/1.1"
		default:
			c.log.alpn = string(p)
		}
	}
}

// route picks the pool for name and starts connecting to a backend.
func (l *loop) route(c *conn, name []byte) {
	pool := l.e.opts.Router.Load().Lookup(c.ln.spec.Scheme, name)
	if pool == nil {
		if len(name) == 0 {
			l.reject(c, rejNoName, nil, nil)
		} else {
			l.reject(c, rejUnknownName, name, nil)
		}
		return
	}
	if len(pool.ALPN) > 0 && c.ln.spec.Scheme == balancer.SchemeTLS {
		pool = l.alpnPool(pool)
	}
	c.pool = pool
	c.tries = 0
	if c.ln.spec.Scheme == balancer.SchemeHTTP && c.h == nil {
		c.h = l.getHTTP()
	}
	c.state = stWaitPeer
	l.setList(c, listNone)
	l.connectNext(c)
}

// acceptProxyHeader consumes the PROXY header a load balancer in front sends
// first. It reports whether examining the bytes after it can go on.
func (l *loop) acceptProxyHeader(c *conn) bool {
	if !c.ln.spec.trusted(c.remote.Addr()) {
		l.drop(c, "PROXY header expected from a trusted proxy; peer not in trusted_proxies", nil)
		return false
	}
	n, err := proxyproto.Parse(c.first.B, &l.pp)
	switch {
	case err == nil:
	case errors.Is(err, proxyproto.ErrNeedMore):
		if c.flags&fReadEOF != 0 {
			l.drop(c, "connection closed inside its PROXY header", nil)
		}
		return false
	default:
		l.drop(c, "missing or malformed PROXY header", err)
		return false
	}
	c.flags |= fProxied
	if !l.pp.Local {
		c.remote = l.pp.Src
		c.local = l.pp.Dst
		// The L4 balancer in front adds no X-Forwarded-For: whether the
		// client's own forwarding headers are trusted depends on the client.
		c.flags &^= fTrusted
		if c.ln.spec.trusted(c.remote.Addr()) {
			c.flags |= fTrusted
		}
	}
	c.first.B = append(c.first.B[:0], c.first.B[n:]...)
	return l.admit(c)
}

// drop closes a client without an answer (it spoke no protocol we could
// answer in) and logs why.
func (l *loop) drop(c *conn, reason string, cause error) {
	l.e.stats.Rejected.Add(1)
	l.e.stats.Rejects[ReasonProxyHeader].Add(1)
	c.outcome = OutcomeRejected
	l.logRejectedReason(c, uint8(ReasonProxyHeader), reason, nil, cause, 0, 0)
	l.closeConn(c)
}

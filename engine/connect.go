package engine

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portier/portier/balancer"
	"github.com/portier/portier/parser"
	"github.com/portier/portier/proxyproto"
)

// connectNext dials the pool's next backend, trying up to Retries more after
// failures before answering the client that no backend is reachable.
func (l *loop) connectNext(c *conn) {
	var hash uint64
	if c.pool.Algorithm == balancer.SourceHash {
		hash = balancer.HashAddr(c.remote.Addr())
	}
	for c.tries <= l.e.opts.Retries {
		b := c.pool.Pick(hash, c.failed)
		if b == nil {
			break
		}
		c.tries++
		bc, err := l.dial(c, b)
		if err != nil {
			l.dialFailed(c, b, err)
			continue
		}
		b.Acquire()
		bc.backend = b
		bc.active = nanotime() // connect start, for the latency histogram
		bc.peer = c
		c.peer = bc
		c.backend = b
		return
	}
	l.reject(c, rejNoBackend, nil, nil)
}

// dial starts a non-blocking connect to b for client c on the loop;
// completion arrives as EPOLLOUT.
func (l *loop) dial(c *conn, b *balancer.Backend) (*conn, error) {
	fam, sa, salen := l.backendSockaddr(b)
	fd, err := sysSocket(fam)
	if err != nil {
		if err == unix.EMFILE || err == unix.ENFILE {
			l.pauseAccept(err)
		}
		return nil, err
	}
	if fam != unix.AF_UNIX {
		sysNoDelay(fd)
	}
	if err := l.bindSource(fd, fam, c.remote, b); err != nil {
		sysClose(fd)
		return nil, err
	}
	if err := sysConnect(fd, sa, salen); err != nil && err != unix.EINPROGRESS {
		sysClose(fd)
		return nil, err
	}
	bc := l.newConn(fd, kindBackend)
	if err := l.register(bc); err != nil {
		l.conns[fd] = nil
		sysClose(fd)
		bc.reset()
		l.free = append(l.free, bc)
		return nil, err
	}
	bc.state = stConnecting
	l.setList(bc, listConnect)
	return bc, nil
}

// connected completes a backend's connect and starts forwarding.
func (l *loop) connected(bc *conn) {
	// The event is this socket's (its generation matched), so EPOLLOUT
	// without an error means the connect completed: no getpeername.
	if bc.flags&fConnErr != 0 {
		soerr, err := unix.GetsockoptInt(bc.fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil {
			err = unix.ECONNREFUSED
			if soerr != 0 {
				err = unix.Errno(soerr)
			}
		}
		l.connectFailed(bc, err)
		return
	}
	c := bc.peer
	bc.backend.ConnectSucceeded()
	l.e.stats.ConnectLatency.Observe(time.Duration(nanotime() - bc.active))
	l.setList(bc, listNone)
	bc.state = stForward
	c.state = stForward
	l.setList(c, listIdle)
	l.e.stats.Forwarded.Add(1)

	first := c.first
	c.bytesUp += int64(len(first.B))
	var ok bool
	out := l.out[:0]
	if pp := c.backend.Spec.Proxy; pp != balancer.ProxyNone {
		out = l.proxyHeader(c, pp, first.B, out)
	}
	if c.h != nil {
		out, ok = l.upHTTP(c, bc, first.B, out)
	} else {
		out = append(out, first.B...)
		ok = l.send(bc, out)
	}
	l.out = out[:0]
	if !ok || c.fd < 0 || c.peer != bc {
		return // closed, or replaying to another backend
	}
	if c.flags&fReplay == 0 {
		putFirst(first)
		c.first = nil
	} // else kept until the backend answers, to replay if it fails first
	if c.flags&fReadEOF != 0 {
		// The client half-closed with its request: pass the FIN on.
		if bc.pend == nil {
			l.passFIN(bc)
		}
	} else if c.flags&fReadReady != 0 {
		l.pump(c)
	}
	if bc.fd >= 0 && bc.state == stForward && bc.flags&fReadReady != 0 {
		l.pump(bc)
	}
}

func (l *loop) connectFailed(bc *conn, err error) {
	l.retryElsewhere(bc.peer, bc, "backend connect failed", err)
}

// retryElsewhere gives up c's backend connection bc and connects c to
// another backend (or answers that none is reachable).
func (l *loop) retryElsewhere(c, bc *conn, msg string, err error) {
	l.backendFailed(c, bc.backend, msg, err)
	l.closeConn(bc) // also unlinks c.peer
	c.backend = nil
	l.connectNext(c)
}

// backendFailed counts a failure of backend b for client c, tells b's
// passive health, makes c's next pick avoid b, and logs why.
func (l *loop) backendFailed(c *conn, b *balancer.Backend, msg string, err error) {
	l.e.stats.ConnectFailures.Add(1)
	b.ConnectFailed()
	c.failed = b
	l.logBackendFailed(c, b, msg, err)
}

// proxyHeader renders the PROXY protocol header announcing c's client to its
// backend into a loop buffer. For v2 it re-reads the name and ALPN from the
// buffered first bytes (the loop's parser state belongs to whoever parsed last).
func (l *loop) proxyHeader(c *conn, pp balancer.ProxyProtocol, first, out []byte) []byte {
	if !c.local.IsValid() {
		c.local = l.localAddr(c.fd)
	}
	if pp == balancer.ProxyV1 {
		return proxyproto.AppendV1(out, c.remote, c.local)
	}
	var name, alpn []byte
	if c.ln.spec.Scheme == balancer.SchemeTLS {
		if parser.ParseClientHello(first, l.e.opts.MaxHeaderBytes, &l.hello) == nil {
			name = l.hello.ServerName
			// The backend negotiates ALPN; announce the client's first preference.
			alpn, _, _ = parser.NextProtocol(l.hello.ALPN)
		}
	} else if c.h.pre > 0 {
		name = c.h.fr.Head.Host // the first head, framed when routed
	} else {
		l.fr.Reset()
		if _, _, err := l.fr.Next(first, l.e.opts.MaxHeaderBytes); err == nil {
			name = l.fr.Head.Host
		}
	}
	return proxyproto.AppendV2(out, c.remote, c.local, name, alpn)
}

var errClosedBeforeAnswer = errors.New("closed the connection before answering")

// canReplay reports whether backend connection bc may be given up for
// another backend: it has not sent a byte back, only its client's first
// bytes went to it, and retries are left. A backend that dies with
// connections in its accept queue resets them this way after portier's
// connect succeeded.
func (l *loop) canReplay(bc *conn) bool {
	c := bc.peer
	return bc.kind == kindBackend && c != nil && c.first != nil && c.flags&fReplay != 0 &&
		c.bytesDown == 0 && c.state == stForward && c.tries <= l.e.opts.Retries
}

// replay sends c's first bytes to another backend after bc failed before
// answering, as if its connect had failed: the client never notices.
func (l *loop) replay(c, bc *conn, cause error) {
	c.bytesUp = 0
	if c.h != nil {
		l.putHTTP(c.h)
		c.h = l.getHTTP()
	}
	c.state = stWaitPeer
	l.setList(c, listNone)
	l.retryElsewhere(c, bc, "backend failed before answering; trying another", cause)
}

// dropReplay frees the first bytes kept for a replay once one is no longer possible.
func (l *loop) dropReplay(c *conn) {
	putFirst(c.first)
	c.first = nil
}

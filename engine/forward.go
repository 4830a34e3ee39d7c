package engine

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/portier/portier/accesslog"
)

// pump moves bytes from src to its peer until src has nothing more, the peer
// cannot take more (its pend is set: src is then not read, which is the flow
// control), or src's read budget for this turn is spent.
func (l *loop) pump(src *conn) {
	dst := src.peer
	if dst == nil && src.h != nil {
		l.detachedRead(src)
		return
	}
	for i := 0; ; i++ {
		if dst == nil || dst.pend != nil || src.flags&fReadReady == 0 || src.flags&fReadEOF != 0 {
			return
		}
		if src.h != nil && (src.h.mode == httpAwait101 || src.h.mode == httpStopped) {
			return // no client bytes until the backend has answered
		}
		if i == readsPerEvent {
			l.scheduleRead(src)
			return
		}
		var n int
		var err error
		want, spliced := len(l.buf), false
		if src.flags&fBulk != 0 {
			if k := spliceable(src, dst, want); k > 0 {
				want = k
				n, err, spliced = l.spliceIn(src, k)
			}
		}
		if !spliced {
			want = len(l.buf)
			n, err = sysRead(src.fd, l.buf)
		}
		if n > 0 {
			if src.kind == kindBackend && dst.first != nil {
				l.dropReplay(dst) // the backend answered
			} else if src.first != nil {
				l.dropReplay(src) // more than the first bytes go out now
			}
			// A short read drained the socket; new bytes raise a new edge. After
			// a hang-up we read on to the EOF since no further edge will come.
			if n < want && src.flags&fHup == 0 {
				src.flags &^= fReadReady
			}
			l.touch(src, n)
			if n >= bulkMin {
				src.flags |= fBulk
			} else {
				src.flags &^= fBulk
			}
			if spliced {
				var ok bool
				switch {
				case src.h != nil: // a request body: the framer skips it
					src.h.fr.Skip(n)
					ok = l.spliceOut(dst, n)
				case dst.h != nil:
					ok = l.downSpliced(dst, src, n)
				default:
					ok = l.spliceOut(dst, n)
				}
				if !ok {
					return
				}
				continue
			}
			if src.h != nil && src.h.mode == httpFraming {
				var ok bool
				l.out, ok = l.upHTTP(src, dst, l.buf[:n], l.out[:0])
				l.out = l.out[:0]
				if !ok || dst.fd < 0 {
					return
				}
				continue
			}
			if h := dst.h; h != nil {
				if h.mode == httpAwait101 {
					l.backendAnswered(dst, l.buf[:n])
				}
				if h.mode == httpFraming || h.mode == httpStopped {
					if !l.downHTTP(dst, src, l.buf[:n]) {
						return
					}
					continue
				}
			}
			if !l.send(dst, l.buf[:n]) {
				return
			}
			if dst.h != nil && dst.h.mode == httpTunnel && dst.h.carry != nil {
				l.resumeTunnel(dst)
				if src.fd < 0 {
					return
				}
			}
			continue
		}
		if n == 0 {
			if l.canReplay(src) {
				l.replay(dst, src, errClosedBeforeAnswer)
				return
			}
			if src.kind == kindBackend && dst.h != nil && idleHTTP(dst) && dst.h.mode == httpFraming {
				// The backend closed a kept-alive connection between
				// requests (its idle timeout): the client's connection
				// stays; its next request gets another backend connection.
				l.closeConn(src)
				return
			}
			src.flags = src.flags&^fReadReady | fReadEOF
			if src.kind == kindClient && idleHTTP(src) {
				// Every answer is out and nothing is half-sent: the backend
				// connection goes back to the pool (or closes) and the
				// client's closes (no half-close, no waiting for the
				// backend's FIN), as HAProxy does.
				l.stopHTTP(src, nil, nil)
				l.answersDone(src)
				return
			}
			if dst.pend == nil {
				l.passFIN(dst)
			}
			return
		}
		switch err {
		case unix.EAGAIN:
			src.flags &^= fReadReady
			return
		case unix.EINTR:
			continue
		}
		l.socketFailed(src, err)
		return
	}
}

// socketFailed ends c's pair after a read or write error, unless c is a
// backend that failed before answering and its client can be replayed.
func (l *loop) socketFailed(c *conn, err error) {
	if l.canReplay(c) {
		l.replay(c.peer, c, err)
		return
	}
	l.closePair(c)
}

// send writes b to dst and keeps what the socket cannot take in dst.pend.
// It reports false when the pair was closed. A short write means the
// socket's buffer is full: it is not written again just to collect EAGAIN.
func (l *loop) send(dst *conn, b []byte) bool {
	if len(b) == 0 {
		return true
	}
	for {
		w, err := sysWrite(dst.fd, b)
		if w > 0 {
			b = b[w:]
			break
		}
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			break
		}
		l.socketFailed(dst, err)
		return false
	}
	if len(b) > 0 {
		dst.flags &^= fWriteReady
		dst.pend = append(l.getBuf(), b...)
		dst.pendOff = 0
		l.armWrite(dst)
	}
	return true
}

// flush writes dst's pending bytes; once they are out, reading its peer resumes.
func (l *loop) flush(dst *conn) {
	for dst.pendOff < len(dst.pend) {
		w, err := sysWrite(dst.fd, dst.pend[dst.pendOff:])
		if w > 0 {
			dst.pendOff += w
			if dst.pendOff < len(dst.pend) {
				dst.flags &^= fWriteReady // short: the buffer is full again
				return
			}
			continue
		}
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			dst.flags &^= fWriteReady
			return
		}
		l.socketFailed(dst, err)
		return
	}
	l.putBuf(dst.pend)
	dst.pend = nil
	dst.pendOff = 0
	src := dst.peer
	if src == nil {
		l.afterAnswers(dst) // an http client whose backend connection was given back
		return
	}
	if src.flags&fReadEOF != 0 {
		l.passFIN(dst)
		return
	}
	if src.h != nil && src.h.mode == httpStopped && !src.h.hold {
		l.shutWrite(dst) // dst is the backend: the last request it gets is out
		return
	}
	l.pump(src)
}

// passFIN passes the end of dst's peer's stream on to dst, once every byte
// before it reached dst.
func (l *loop) passFIN(dst *conn) {
	if dst.kind == kindBackend && l.holdFIN(dst) {
		return
	}
	if dst.h != nil && (dst.h.mode == httpStopped || dst.h.mode == httpAwait101) {
		l.finishStopped(dst)
		return
	}
	if p := dst.peer; p != nil && dst.flags&fReadEOF != 0 && p.flags&(fReadEOF|fWriteShut) == fReadEOF|fWriteShut {
		// Both directions are over with this FIN: close sends it, without
		// a shutdown first (dst's input was read to its end, so no RST).
		l.closePair(dst)
		return
	}
	l.shutWrite(dst)
	l.maybeDone(dst)
}

// shutWrite passes a FIN on: the peer's reader sees EOF once every byte before it arrived.
func (l *loop) shutWrite(c *conn) {
	if c.flags&fWriteShut == 0 {
		c.flags |= fWriteShut
		if err := sysShutdownWrite(c.fd); err != nil && err != unix.ENOTCONN {
			l.closePair(c)
		}
	}
}

// maybeDone closes the pair once both directions have ended and been passed on.
func (l *loop) maybeDone(c *conn) {
	p := c.peer
	if p == nil {
		return
	}
	if c.flags&p.flags&(fReadEOF|fWriteShut) == fReadEOF|fWriteShut {
		l.closePair(c)
	}
}

// touch records activity for the idle timeout, at most one list move per tick.
func (l *loop) touch(src *conn, n int) {
	client := src
	if src.kind == kindBackend {
		client = src.peer
		client.bytesDown += int64(n)
	} else {
		client.bytesUp += int64(n)
	}
	if client.list == listIdle && client.since != l.now {
		l.idles.remove(client)
		l.idles.push(client, l.now)
	}
}

func (l *loop) closePair(c *conn) {
	if p := c.peer; p != nil {
		l.closeConn(p)
	}
	l.closeConn(c)
}

// closeConn closes one socket and recycles its conn.
func (l *loop) closeConn(c *conn) {
	if c.fd < 0 {
		return
	}
	if c.list != listNone {
		l.setList(c, listNone)
	}
	if c.first != nil {
		putFirst(c.first)
	}
	if c.pend != nil {
		l.putBuf(c.pend)
	}
	if c.peer != nil {
		c.peer.peer = nil
	}
	if c.h != nil {
		l.putHTTP(c.h)
	}
	if c.state == stPooled {
		l.unpool(c)
	}
	if c.flags&fInflight != 0 {
		c.backend.Release()
	}
	if c.flags&fCounted != 0 {
		l.e.perIP.release(c.remote.Addr())
	}
	if c.kind == kindClient {
		l.ended(c)
	}
	l.conns[c.fd] = nil
	// Closing the descriptor also removes it from the epoll set.
	sysClose(c.fd)
	c.reset()
	if len(l.free) < maxFreeConns {
		l.free = append(l.free, c)
	}
}

// ended accounts for a client connection that is closing. The open counts
// drop last: whoever waits for them to reach zero (Shutdown, then the
// access log's Close) finds the connection's record already queued.
func (l *loop) ended(c *conn) {
	ls := &l.e.stats.Listeners[c.ln.idx]
	o := c.outcome
	if o == OutcomeForwarded && c.reason == nil && c.state != stForward && c.bytesDown == 0 && c.backend == nil {
		o = OutcomeClosedEarly
	}
	ls.Outcomes[o].Add(1)
	ls.BytesUp.Add(c.bytesUp)
	ls.BytesDown.Add(c.bytesDown)
	if p := c.pool; p != nil { // routed: counted per route whatever the outcome
		if p.Stats != nil {
			p.Stats.Ended(c.bytesUp, c.bytesDown)
		}
		if t := l.top; t != nil {
			t.Observe(p.Name, c.bytesUp, c.bytesDown)
		}
	}
	if al := l.alog; al != nil && c.log != nil {
		r := &l.rec
		*r = accesslog.Record{
			Start:     c.log.wall,
			Duration:  time.Since(c.log.wall),
			Listener:  c.ln.spec.Name,
			Client:    c.remote,
			Name:      c.log.name,
			ALPN:      c.log.alpn,
			BytesUp:   c.bytesUp,
			BytesDown: c.bytesDown,
			Outcome:   o.String(),
		}
		if c.backend != nil {
			r.Backend = c.backend.AddrText
		}
		if c.reason != nil {
			r.Reason = c.reason.code.String()
		}
		al.Log(r) // never blocks; a full queue counts a dropped line
	}
	ls.Open.Add(-1)
	l.e.stats.Open.Add(-1)
	l.e.slotFreed()
}

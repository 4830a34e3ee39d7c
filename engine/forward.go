package engine

import (
	"golang.org/x/sys/unix"
)

// pump moves bytes from src to its peer until src has nothing more, the peer
// cannot take more (its pend is set: src is then not read, which is the flow
// control), or src's read budget for this turn is spent.
func (l *loop) pump(src *conn) {
	dst := src.peer
	for i := 0; ; i++ {
		if dst == nil || dst.pend != nil || src.flags&fReadReady == 0 || src.flags&fReadEOF != 0 {
			return
		}
		if i == readsPerEvent {
			l.scheduleRead(src)
			return
		}
		n, err := unix.Read(src.fd, l.buf)
		if n > 0 {
			// A short read drained the socket; new bytes raise a new edge. After
			// a hang-up we read on to the EOF since no further edge will come.
			if n < len(l.buf) && src.flags&fHup == 0 {
				src.flags &^= fReadReady
			}
			l.touch(src, n)
			if !l.send(dst, l.buf[:n]) {
				return
			}
			continue
		}
		if n == 0 {
			src.flags = src.flags&^fReadReady | fReadEOF
			if dst.pend == nil {
				l.shutWrite(dst)
			}
			l.maybeDone(src)
			return
		}
		switch err {
		case unix.EAGAIN:
			src.flags &^= fReadReady
			return
		case unix.EINTR:
			continue
		}
		l.closePair(src)
		return
	}
}

// send writes b to dst and keeps what the socket cannot take in dst.pend.
// It reports false when the pair was closed.
func (l *loop) send(dst *conn, b []byte) bool {
	for len(b) > 0 {
		w, err := unix.Write(dst.fd, b)
		if w > 0 {
			b = b[w:]
			continue
		}
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			break
		}
		l.closePair(dst)
		return false
	}
	if len(b) > 0 {
		dst.flags &^= fWriteReady
		dst.pend = append(l.getBuf(), b...)
		dst.pendOff = 0
	}
	return true
}

// flush writes dst's pending bytes; once they are out, reading its peer resumes.
func (l *loop) flush(dst *conn) {
	for dst.pendOff < len(dst.pend) {
		w, err := unix.Write(dst.fd, dst.pend[dst.pendOff:])
		if w > 0 {
			dst.pendOff += w
			continue
		}
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			dst.flags &^= fWriteReady
			return
		}
		l.closePair(dst)
		return
	}
	l.putBuf(dst.pend)
	dst.pend = nil
	dst.pendOff = 0
	src := dst.peer
	if src.flags&fReadEOF != 0 {
		l.shutWrite(dst)
		l.maybeDone(dst)
		return
	}
	l.pump(src)
}

// shutWrite passes a FIN on: the peer's reader sees EOF once every byte before it arrived.
func (l *loop) shutWrite(c *conn) {
	if c.flags&fWriteShut == 0 {
		c.flags |= fWriteShut
		if err := unix.Shutdown(c.fd, unix.SHUT_WR); err != nil && err != unix.ENOTCONN {
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
	if c.kind == kindClient {
		l.e.stats.Open.Add(-1)
	}
	l.conns[c.fd] = nil
	// Closing the descriptor also removes it from the epoll set.
	_ = unix.Close(c.fd)
	c.reset()
	if len(l.free) < maxFreeConns {
		l.free = append(l.free, c)
	}
}

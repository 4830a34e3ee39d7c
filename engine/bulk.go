package engine

import (
	"golang.org/x/sys/unix"

	"github.com/portier/portier/parser"
)

// Bulk forwarding: once a read of a direction is large, the bytes that need
// not be looked at go socket -> pipe -> socket with splice(2) and never
// through user space: everything on opaque connections (TLS passthrough,
// tunnels), and on http listeners the body bytes of requests and answers
// that their framer need not see (docs/design.md has the measurements, and the rejected
// alternative of filling reads before writing). The loop's one pipe is empty
// between calls: what the destination cannot take is read out of it into the
// destination's pend, the same flow control as for a short write.

// bulkMin: a read this large marks its direction as bulk; a smaller one
// (say the next small request of a kept-alive connection) ends that.
const bulkMin = 8 << 10

// spliceable returns how many of src's next bytes, at most max, may bypass
// user space on their way to dst: all of them when neither side is http; on
// an http listener, the body bytes the framer of their direction need not
// see (a Content-Length body's rest or a chunk's data). Heads and chunk lines
// are read, since they are followed and may be rewritten.
func spliceable(src, dst *conn, max int) int {
	var fr *parser.RequestFramer
	switch {
	case src.h == nil && dst.h == nil:
		return max
	case src.kind == kindBackend && dst.h != nil: // an answer
		h := dst.h
		if h.lost || !h.inBody || len(h.rcarry) > 0 || h.mode != httpFraming && h.mode != httpStopped {
			return 0
		}
		fr = &h.rfr
	case src.kind == kindClient && src.h != nil: // a request
		h := src.h
		if h.mode != httpFraming || h.pre > 0 || len(h.carry) > 0 || h.cutErr != nil {
			return 0
		}
		fr = &h.fr
	default:
		return 0
	}
	return int(min(fr.Unseen(), int64(max)))
}

// spliceIn moves up to max bytes from src into the loop's pipe; its results
// read like read(2)'s. ok is false when no pipe can be had.
func (l *loop) spliceIn(src *conn, max int) (n int, err error, ok bool) {
	if l.pipe[0] < 0 {
		return 0, nil, false
	}
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(src.fd), 0, uintptr(l.pipe[1]), 0,
			uintptr(max), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		if e == unix.EINTR {
			continue
		}
		if e == unix.EINVAL {
			return 0, nil, false // a socket type splice cannot read: read it instead
		}
		if e != 0 {
			return -1, e, true
		}
		l.e.stats.Spliced.Add(int64(r))
		return int(r), nil, true
	}
}

// spliceOut moves the n bytes in the loop's pipe to dst; what dst cannot
// take is read into its pend (flow control as for a short write), so the
// pipe is empty again. It reports false when the pair was closed.
func (l *loop) spliceOut(dst *conn, n int) bool {
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(l.pipe[0]), 0, uintptr(dst.fd), 0,
			uintptr(n), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		if e == unix.EINTR {
			continue
		}
		if e != 0 && e != unix.EAGAIN {
			l.drainPipe(n)
			l.socketFailed(dst, e)
			return false
		}
		if e == 0 {
			n -= int(r)
		}
		if n == 0 {
			return true
		}
		// Short or EAGAIN: dst's buffer is full; keep the rest in user space.
		dst.flags &^= fWriteReady
		dst.pend = l.getBuf()[:n]
		dst.pendOff = 0
		for got := 0; got < n; {
			m, _ := sysRead(l.pipe[0], dst.pend[got:])
			if m <= 0 {
				dst.pend = dst.pend[:got]
				break
			}
			got += m
		}
		l.armWrite(dst)
		return true
	}
}

// drainPipe discards n bytes left in the loop's pipe.
func (l *loop) drainPipe(n int) {
	for n > 0 {
		m, _ := sysRead(l.pipe[0], l.buf[:min(n, len(l.buf))])
		if m <= 0 {
			return
		}
		n -= m
	}
}

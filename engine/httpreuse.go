package engine

import (
	"github.com/valyala/bytebufferpool"

	"github.com/portier/portier/parser"
)

// The answer side of an http listener, and what happens when a client stops
// using its backend connection: the connection goes back to the pool (or is
// closed) once every answer owed is complete, never with a FIN while one is
// still owed, and the client connection goes on (its next request routed
// afresh) or closes after an answer that said so.

// downHTTP passes backend bytes fresh to the http client c. It follows the
// answers to know when each ends, and rewrites the head of the last answer
// owed to say "Connection: close" when the client connection closes after it
// (the client asked for it, or portier is shutting down); the body is never
// touched. Bytes of an answer head (or chunk line) split across reads are
// held until complete. It reports false when bc is not to be read further
// (the pair closed, or bc was given back).
func (l *loop) downHTTP(c, bc *conn, fresh []byte) bool {
	h := c.h
	if h.lost {
		return l.send(c, fresh)
	}
	data := fresh
	if len(h.rcarry) > 0 {
		h.rcarry = append(h.rcarry, fresh...)
		data = h.rcarry
	}
	out := l.out[:0]
	rewrote, sent, pos, done := false, 0, 0, false
	for pos < len(data) && !h.lost {
		if h.inBody {
			_, n, err := h.rfr.Next(data[pos:], 0)
			if err == parser.ErrNeedMore {
				break // a chunk line continues in the next read
			}
			if err != nil {
				h.lost = true
				break
			}
			pos += n
			if h.rfr.AtBoundary() {
				h.inBody = false
				done = l.answered(c, bc)
			}
			continue
		}
		if h.pending == 0 {
			h.lost = true // bytes nobody asked for
			break
		}
		var rh parser.ResponseHead
		err := parser.ParseResponseHead(data[pos:], l.e.opts.MaxHeaderBytes, &rh)
		if err == parser.ErrNeedMore {
			break
		}
		if err != nil || rh.Status == 101 {
			h.lost = true // 101: the connection becomes a tunnel
			break
		}
		final := rh.Status >= 200
		if final && rh.Close {
			h.noReuse = true
		}
		if final && h.pending == 1 && (h.closing || rh.Close || l.e.draining.Load()) {
			// The client connection closes after this answer: say so.
			if !rh.Close {
				out = append(out, data[sent:pos]...)
				out = parser.AppendCloseHead(out, data[pos:], &rh)
				sent = pos + rh.HeadLen
				rewrote = true
			}
			h.closing = true
		}
		pos += rh.HeadLen
		switch {
		case !final: // interim: the final answer follows
		case h.heads&1 != 0 || rh.BodyKind == parser.BodyNone || rh.BodyKind == parser.BodyLength && rh.ContentLength == 0:
			done = l.answered(c, bc)
		case rh.BodyKind == parser.BodyUntilClose:
			h.lost = true
		default:
			h.rfr.BeginBody(rh.BodyKind, rh.ContentLength)
			h.inBody = true
		}
	}
	if h.lost || len(data)-pos > l.e.opts.MaxHeaderBytes {
		// Not followable: everything passes unchanged from now on.
		h.lost = true
		pos = len(data)
	}
	ok := true
	if rewrote {
		out = append(out, data[sent:pos]...)
		ok = l.send(c, out)
		l.out = out[:0]
	} else if pos > 0 {
		ok = l.send(c, data[:pos])
	}
	if !ok {
		return false
	}
	l.keep(&h.rcarry, data[pos:])
	return l.downDone(c, bc, done)
}

// downSpliced follows n body bytes of bc's answer that wait in the loop's
// pipe (spliceable said the framer need not see them) and passes them on to
// c. It reports what downHTTP reports.
func (l *loop) downSpliced(c, bc *conn, n int) bool {
	h := c.h
	h.rfr.Skip(n)
	done := false
	if h.rfr.AtBoundary() {
		h.inBody = false
		done = l.answered(c, bc)
	}
	if !l.spliceOut(c, n) {
		return false
	}
	return l.downDone(c, bc, done)
}

// downDone ends downHTTP and downSpliced once the bytes are passed on: done
// says an answer ended and none is owed. It reports false when bc is not to
// be read further.
func (l *loop) downDone(c, bc *conn, done bool) bool {
	h := c.h
	if h.lost && h.mode == httpStopped && h.hold {
		// The answers can no longer be waited for: the backend gets the FIN.
		h.hold = false
		if bc.pend == nil {
			l.shutWrite(bc)
		}
		return bc.fd >= 0
	}
	if done && !h.lost && (h.closing || h.mode == httpStopped && h.hold) {
		l.answersDone(c)
		return false
	}
	return true
}

// answered counts the end of an answer. Once none is owed, the backend no
// longer counts the connection among its active requests. It reports
// whether none is owed.
func (l *loop) answered(c, bc *conn) bool {
	h := c.h
	h.answered()
	if h.pending > 0 {
		return false
	}
	if bc.flags&fInflight != 0 {
		bc.flags &^= fInflight
		bc.backend.Release()
	}
	return true
}

// answersDone runs when every answer owed to c is complete and c stops using
// its backend connection: that goes back to the pool (or is closed), and c
// goes on once the answers are out.
func (l *loop) answersDone(c *conn) {
	l.detach(c)
	if c.pend == nil {
		l.afterAnswers(c)
	}
}

// detach separates c from its backend connection and pools it when nothing
// about it is uncertain, else closes it.
func (l *loop) detach(c *conn) {
	bc := c.peer
	if bc == nil {
		return
	}
	h := c.h
	reuse := !h.lost && !h.noReuse && h.pending == 0 && !h.inBody && len(h.rcarry) == 0 &&
		(h.fr.AtBoundary() || h.switching) && bc.pend == nil && bc.state == stForward &&
		bc.flags&(fReadEOF|fHup|fWriteShut) == 0 && poolable(c.pool, bc.backend)
	c.peer, bc.peer = nil, nil
	if !reuse || !l.park(bc, c.pool) {
		l.closeConn(bc)
	}
}

// afterAnswers decides what a client whose backend connection was given back
// does once every answer reached it: close (it asked to, it is done, or a
// later request was rejected), or route its next request.
func (l *loop) afterAnswers(c *conn) {
	h := c.h
	switch {
	case h.switching:
		l.reroute(c)
	case h.closing && h.reject == nil && h.fr.AtBoundary() && len(h.carry) == 0 && !l.e.draining.Load() &&
		!sentMore(c):
		// The client asked for the close and sent nothing after its
		// request: close now, no lingering (nginx's lingering_close
		// heuristic). The FIN follows the answer's last byte. A
		// draining connection lingers: its client may be sending.
		c.outcome = OutcomeForwarded
		l.closeConn(c)
	case h.reject != nil || h.closing || c.flags&fReadEOF != 0 || h.mode == httpStopped:
		l.finishStopped(c)
	case c.flags&fReadReady != 0:
		l.detachedRead(c)
	}
}

// reroute sends a request for another route, held in carry while the
// previous answers completed, through routing as if it were a new
// connection's first bytes.
func (l *loop) reroute(c *conn) {
	h := c.h
	c.first = bytebufferpool.Get()
	c.first.B = append(c.first.B[:0], h.carry...)
	c.bytesUp -= int64(len(h.carry)) // counted again when they go out
	l.restart(c)
	l.examine(c)
}

// detachedRead handles bytes from a kept-alive client whose backend closed
// the connection between requests: they are a new request, read and routed
// like a new connection's first bytes.
func (l *loop) detachedRead(c *conn) {
	h := c.h
	if h.mode != httpFraming || h.closing || c.pend != nil || c.state != stForward {
		return
	}
	l.restart(c)
	l.handshakeRead(c)
}

// restart puts a client between requests back into the state of a new
// connection that is reading its first request.
func (l *loop) restart(c *conn) {
	l.putHTTP(c.h)
	c.h = nil
	c.flags &^= fReplay | fFresh | fExamined
	c.scan = 0
	c.state = stHandshake
	l.setList(c, listHandshake)
}

// holdFIN keeps the backend's write side open when the client ended its side
// between requests or with answers owed: the answers are passed on, then
// the backend connection is given back and the client's closed. (A Go
// backend cancels a request whose client sent a FIN.) It reports false when
// the FIN must be passed on (the answers cannot be followed, or a request
// is cut short).
func (l *loop) holdFIN(bc *conn) bool {
	c := bc.peer
	if c == nil || c.h == nil {
		return false
	}
	h := c.h
	if h.lost || !h.fr.AtBoundary() && !h.switching ||
		h.mode != httpFraming && !(h.mode == httpStopped && h.hold) {
		return false
	}
	if h.mode == httpFraming {
		l.stopHTTP(c, nil, nil)
	}
	if h.pending == 0 {
		l.answersDone(c)
	}
	return true
}

package engine

import (
	"bytes"
	"errors"
	"net/netip"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/portier/portier/balancer"
	"github.com/portier/portier/parser"
)

// Forwarding headers an http listener adds to every request (ListenerSpec.NoForward
// turns them off one by one).
const (
	FwdXFF       uint8 = 1 << iota // X-Forwarded-For: client address
	FwdProto                       // X-Forwarded-Proto: http
	FwdPort                        // X-Forwarded-Port: the port the client connected to
	FwdForwarded                   // Forwarded (RFC 7239): for, host, proto
)

// HTTP connection modes: how client bytes are handled after the first head.
const (
	httpFraming  uint8 = iota // every request head is rewritten, bodies are verified
	httpAwait101              // an Upgrade request was sent: wait for the backend's answer
	httpTunnel                // the backend switched protocols: opaque bytes both ways
	httpStopped               // forward nothing more; close once the backend's answer is out
)

// httpConn is the request-framing state of a client of an http listener.
type httpConn struct {
	fr    parser.RequestFramer
	carry []byte // client bytes not yet forwarded: an incomplete head, or bytes after an Upgrade
	mode  uint8
	// reject, once the backend's answer is out, is sent to the client before closing
	// (a later request that broke the framing rules).
	reject *rejection
	// pre: the first head (that many bytes of the first bytes) was framed
	// by fr when the connection was routed; it is forwarded without being
	// parsed again.
	pre int
	// cutErr: the first bytes ended with a malformed request after complete
	// ones; it is answered once their answers are out.
	cutErr error
	// downAtHead is the client's bytesDown when the latest head was sent:
	// equal now means the backend has not begun to answer it.
	downAtHead int64

	// The backend's answers are followed (never changed) to know when it
	// has finished the last one: the connection is then idle between
	// requests, which matters when shutting down.
	sent    int                  // requests sent
	pending int                  // requests sent whose final answer has not ended
	heads   uint64               // bit i: the i-th pending request is a HEAD (its answer has no body)
	rfr     parser.RequestFramer // follows an answer's body
	rcarry  []byte               // an answer head or chunk line split across reads
	inBody  bool
	lost    bool // answers could not be followed: never taken for idle
}

func (l *loop) getHTTP() *httpConn {
	if n := len(l.httpFree); n > 0 {
		h := l.httpFree[n-1]
		l.httpFree = l.httpFree[:n-1]
		return h
	}
	return new(httpConn)
}

func (l *loop) putHTTP(h *httpConn) {
	if h.carry != nil {
		l.putBuf(h.carry)
	}
	if h.rcarry != nil {
		l.putBuf(h.rcarry)
	}
	*h = httpConn{}
	if len(l.httpFree) < maxFreeConns {
		l.httpFree = append(l.httpFree, h)
	}
}

// examineHTTP frames a client's buffered first bytes before any backend is
// dialled: the first request's Host picks the route (the same parser frames
// every later request), and a malformed first request or a smuggling
// attempt in it gets its answer without reaching a backend. Complete
// requests followed by a malformed one are forwarded and answered first; the
// malformed one is answered after them, as when it arrives in a later read.
//
// The bytes are parsed when they arrive first (so that another protocol is
// told at once) and then only once they may hold the end of the head, the
// limit or the client's EOF: in between, a read costs a search of its own
// bytes for a line feed, not a parse of everything buffered.
func (l *loop) examineHTTP(c *conn, data []byte) {
	from := int(c.scan)
	c.scan = uint32(max(len(data)-2, 0))
	if c.flags&fExamined != 0 && len(data) <= l.e.opts.MaxHeaderBytes && c.flags&fReadEOF == 0 && !headMayEnd(data, from) {
		return
	}
	c.flags |= fExamined
	// The first head is framed by the framer that will follow the
	// connection, so that it is not parsed again when it is forwarded; the
	// rest of the first bytes is checked with the loop's framer.
	h := l.getHTTP()
	f := &h.fr
	// One complete request of an idempotent method may be replayed to
	// another backend if the first one fails before answering (as nginx's
	// proxy_next_upstream does); a POST may already have had its effect.
	heads, replayable := 0, true
	var name []byte
	good := 0 // bytes up to the last request boundary
	var bad error
	for rest := data; len(rest) > 0; {
		step, n, err := f.Next(rest, l.e.opts.MaxHeaderBytes)
		if err != nil {
			if !errors.Is(err, parser.ErrNeedMore) {
				bad = err
			}
			break
		}
		rest = rest[n:]
		if step == parser.StepTunnel {
			replayable = false
			break
		}
		if step == parser.StepHead {
			heads++
			if heads == 1 {
				name = f.Head.Host // aliases data, which outlives the framer's next head
				h.pre = n
				l.fr = h.fr
				f = &l.fr
			}
			m := string(f.Head.Method)
			replayable = replayable && m != "POST" && m != "PATCH" && m != "LOCK" && !f.Head.Upgrade
		}
		if f.AtBoundary() {
			good = len(data) - len(rest)
		}
	}
	switch {
	case bad != nil && good == 0: // the first request itself
		l.putHTTP(h)
		l.reject(c, requestRejection(bad), nil, bad)
		return
	case heads == 0:
		l.putHTTP(h)
		l.needMore(c, len(data))
		return
	}
	if heads == 1 && replayable && f.AtBoundary() {
		c.flags |= fReplay
	}
	if bad != nil {
		// Only the complete requests go out; the rest of the client's
		// bytes is never read.
		c.first.B = c.first.B[:good]
	}
	if l.e.opts.AccessLog != nil {
		l.noteName(c, name, false)
	}
	c.h = h
	l.route(c, name)
	if bad != nil && c.h != nil && c.state == stWaitPeer {
		c.h.cutErr = bad
	}
}

// headMayEnd reports whether data, searched from index from on, has a line
// feed followed by an empty line (CRLF or a bare LF): the end of a head, or
// something the framer will refuse.
func headMayEnd(data []byte, from int) bool {
	for i := from; i < len(data); {
		j := bytes.IndexByte(data[i:], '\n')
		if j < 0 {
			return false
		}
		p := i + j
		if p+1 < len(data) && data[p+1] == '\n' || p+2 < len(data) && data[p+1] == '\r' && data[p+2] == '\n' {
			return true
		}
		i = p + 1
	}
	return false
}

// upHTTP forwards client bytes of an http listener to the backend bc: request
// heads rewritten with forwarding headers, bodies verbatim as the framer
// verifies them. out holds bytes to send first (a PROXY header) and is a loop
// buffer the caller owns. It reports false when the pair was closed.
func (l *loop) upHTTP(c, bc *conn, fresh, out []byte) ([]byte, bool) {
	h := c.h
	data := fresh
	var body []byte // the rest of a fresh read when it is all body: sent without a copy
	if len(h.carry) > 0 {
		h.carry = append(h.carry, fresh...)
		data = h.carry
	}
	rest := data
	for len(rest) > 0 && h.mode == httpFraming {
		atHead := h.fr.AtBoundary()
		var step parser.Step
		var n int
		var err error
		if h.pre > 0 {
			step, n, h.pre = parser.StepHead, h.pre, 0
		} else {
			step, n, err = h.fr.Next(rest, l.e.opts.MaxHeaderBytes)
		}
		if err != nil {
			if errors.Is(err, parser.ErrNeedMore) {
				break
			}
			l.stopHTTP(c, requestRejection(err), err)
			if !atHead {
				// The request's head already went out: its backend must not
				// answer a request cut short, so the pair is torn down now.
				l.abortHTTP(c)
				return out, false
			}
			rest = nil
			break
		}
		switch step {
		case parser.StepHead:
			hd := &h.fr.Head
			if !l.sameRoute(c, hd.Host) || l.e.draining.Load() && h.sent > 0 {
				// Never send a request for another name to this pool's backends
				// (nor a later request while shutting down): let the current answer
				// finish, then close; the client retries on a new connection,
				// which is routed afresh (or reaches the new process).
				l.stopHTTP(c, nil, nil)
				rest = nil
				continue
			}
			out = l.rewriteHead(c, out, rest[:n], hd)
			h.downAtHead = c.bytesDown
			h.sent++
			l.e.stats.Listeners[c.ln.idx].Requests.Add(1)
			if h.pending < 64 {
				if string(hd.Method) == "HEAD" {
					h.heads |= 1 << h.pending
				}
				h.pending++
			} else {
				h.lost = true
			}
			if hd.Upgrade {
				h.mode = httpAwait101
			}
		default: // body or tunnel bytes
			if len(out) == 0 && n == len(rest) && len(h.carry) == 0 {
				body = rest
			} else {
				out = append(out, rest[:n]...)
			}
		}
		rest = rest[n:]
	}
	if h.cutErr != nil && h.mode == httpFraming {
		l.stopHTTP(c, requestRejection(h.cutErr), h.cutErr)
		h.cutErr = nil
	}
	// Keep what could not be forwarded yet: an incomplete head, or bytes
	// that follow an Upgrade request until the backend accepts it.
	l.keep(&h.carry, rest)
	if len(body) > 0 && !l.sendOrdered(bc, body) {
		return out, false
	}
	if len(out) > 0 && !l.sendOrdered(bc, out) {
		return out, false
	}
	if h.mode == httpStopped && bc.pend == nil {
		l.shutWrite(bc)
	}
	return out, true
}

// requestRejection is the answer to a request the framer refused: 431 for a
// head over the limit, 400 for everything else (logged as another protocol,
// a framing violation or a malformed request).
func requestRejection(err error) *rejection {
	switch {
	case errors.Is(err, parser.ErrTooLarge):
		return rejTooLarge
	case errors.Is(err, parser.ErrNotThisProtocol):
		return rejNotProtocol
	case errors.Is(err, parser.ErrFraming):
		return rejBadFraming
	}
	return rejMalformed
}

// sameRoute reports whether a later request's host routes to the pool the
// connection was paired for.
func (l *loop) sameRoute(c *conn, host []byte) bool {
	p := l.e.opts.Router.Load().Lookup(balancer.SchemeHTTP, host)
	return p == c.pool || p != nil && p.Name == c.pool.Name
}

// stopHTTP stops forwarding client bytes: the backend's write side is shut
// once what was sent before is out, and when its answer has been passed on
// the client gets r (if any) and the connection closes.
func (l *loop) stopHTTP(c *conn, r *rejection, cause error) {
	h := c.h
	h.mode = httpStopped
	if r != nil {
		h.reject = r
		l.e.stats.Rejected.Add(1)
		l.e.stats.Rejects[r.code].Add(1)
		l.logRejected(c, r, nil, cause, r.status, 0)
	}
}

// finishStopped runs when the backend of a stopped http client has ended and
// all its bytes reached the client: answer (if a later request was rejected),
// then linger so the client reads everything before the close.
func (l *loop) finishStopped(c *conn) {
	if bc := c.peer; bc != nil {
		l.closeConn(bc)
	}
	if r := c.h.reject; r != nil {
		c.outcome = OutcomeRejected
		c.reason = r
		l.writeAll(c, r.reply)
	}
	l.linger(c)
}

// abortHTTP tears down a pair whose request body broke the framing rules
// after its head was forwarded. The client gets the 400 if its backend had
// not begun to answer; otherwise the connection just closes.
func (l *loop) abortHTTP(c *conn) {
	if c.bytesDown != c.h.downAtHead || c.pend != nil {
		l.closePair(c)
		return
	}
	l.finishStopped(c) // stopHTTP already set the answer; this closes the backend
}

// backendAnswered inspects the first bytes of the backend's answer to an
// Upgrade request: 101 turns the connection into a tunnel; anything else
// means the backend refused, and the connection closes after that answer
// (the framer can no longer tell where the next request starts).
func (l *loop) backendAnswered(c *conn, b []byte) {
	if len(b) >= 12 && (string(b[:12]) == "HTTP/1.1 101" || string(b[:12]) == "HTTP/1.0 101") {
		c.h.mode = httpTunnel
		return
	}
	c.h.mode = httpStopped
	if c.peer != nil && c.peer.pend == nil {
		l.shutWrite(c.peer)
	}
}

// resumeTunnel sends what the client sent after its Upgrade request and
// resumes reading it, once the backend switched protocols.
func (l *loop) resumeTunnel(c *conn) {
	h := c.h
	if len(h.carry) > 0 {
		ok := l.sendOrdered(c.peer, h.carry)
		l.putBuf(h.carry)
		h.carry = nil
		if !ok {
			return
		}
	}
	if c.flags&fReadReady != 0 {
		l.scheduleRead(c)
	}
}

// rewriteHead appends head (one complete request head described by hd) to
// out with the listener's forwarding headers: values from an untrusted client
// are replaced, a trusted proxy's are kept and appended to.
func (l *loop) rewriteHead(c *conn, out, head []byte, hd *parser.FramedHead) []byte {
	on := FwdXFF | FwdProto | FwdPort | FwdForwarded
	on &^= c.ln.spec.NoForward
	trusted := c.flags&fTrusted != 0
	var hasProto, hasPort bool
	at := hd.Start
	for i := 0; i < hd.NDrop; i++ {
		var drop bool
		switch hd.DropKind[i] {
		case parser.FwdXFF:
			drop = on&FwdXFF != 0
		case parser.FwdForwarded:
			drop = on&FwdForwarded != 0
		case parser.FwdRealIP:
			drop = on&FwdXFF != 0 && !trusted
		case parser.FwdProto:
			drop = on&FwdProto != 0 && !trusted
			hasProto = true
		case parser.FwdPort:
			drop = on&FwdPort != 0 && !trusted
			hasPort = true
		}
		if drop {
			d := hd.Drop[i]
			out = append(out, head[at:d[0]]...)
			at = d[1]
		}
	}
	out = append(out, head[at:hd.HeadersEnd]...)
	ip := c.remote.Addr().Unmap()
	if on&FwdXFF != 0 {
		out = append(out, "X-Forwarded-For: "...)
		if trusted && hd.XFF[1] > hd.XFF[0] {
			out = append(out, head[hd.XFF[0]:hd.XFF[1]]...)
			out = append(out, ", "...)
		}
		out = ip.AppendTo(out)
		out = append(out, "\r\n"...)
	}
	if on&FwdProto != 0 && !(trusted && hasProto) {
		out = append(out, "X-Forwarded-Proto: http\r\n"...)
	}
	if on&FwdPort != 0 && !(trusted && hasPort) {
		out = append(out, "X-Forwarded-Port: "...)
		out = strconv.AppendUint(out, uint64(l.localPort(c)), 10)
		out = append(out, "\r\n"...)
	}
	if on&FwdForwarded != 0 {
		out = append(out, "Forwarded: "...)
		if trusted && hd.Forwarded[1] > hd.Forwarded[0] {
			out = append(out, head[hd.Forwarded[0]:hd.Forwarded[1]]...)
			out = append(out, ", "...)
		}
		out = appendForwardedFor(out, ip)
		if len(hd.Host) > 0 {
			// The framer only accepts host characters, none of which needs
			// escaping inside a quoted-string.
			out = append(out, ";host=\""...)
			out = append(out, hd.Host...)
			out = append(out, '"')
		}
		out = append(out, ";proto=http\r\n"...)
	}
	return append(out, head[hd.HeadersEnd:]...)
}

// appendForwardedFor appends RFC 7239's for= parameter: IPv6 addresses are
// bracketed and quoted.
func appendForwardedFor(out []byte, ip netip.Addr) []byte {
	if ip.Is6() {
		out = append(out, "for=\"["...)
		out = ip.AppendTo(out)
		return append(out, "]\""...)
	}
	out = append(out, "for="...)
	return ip.AppendTo(out)
}

// localPort is the port the client connected to (as announced by a trusted
// PROXY header, or the listener's).
func (l *loop) localPort(c *conn) uint16 {
	if c.local.IsValid() {
		return c.local.Port()
	}
	return l.e.addrs[c.ln.idx].Port()
}

// sendOrdered is send for a socket that may still hold pending bytes: new
// bytes queue behind them.
func (l *loop) sendOrdered(dst *conn, b []byte) bool {
	if dst.pend != nil {
		dst.pend = append(dst.pend, b...)
		return true
	}
	return l.send(dst, b)
}

// writeAll writes a short answer to a socket whose pending bytes are out; what
// the socket cannot take is dropped (the answer is small, the socket's buffer empty).
func (l *loop) writeAll(c *conn, b []byte) {
	for len(b) > 0 {
		n, err := sysWrite(c.fd, b)
		if n > 0 {
			b = b[n:]
			continue
		}
		if err != unix.EINTR {
			return
		}
	}
}

// followAnswers reads the backend's bytes on their way to the client c to
// count complete answers. Anything it cannot follow (a body delimited by the
// close, a malformed head, bytes nobody asked for) marks the connection lost:
// it is then never taken for idle.
func (l *loop) followAnswers(c *conn, data []byte) {
	h := c.h
	if h.lost {
		return
	}
	if len(h.rcarry) > 0 {
		h.rcarry = append(h.rcarry, data...)
		data = h.rcarry
	}
	for len(data) > 0 {
		if h.inBody {
			_, n, err := h.rfr.Next(data, 0)
			if err == parser.ErrNeedMore {
				break // a chunk line continues in the next read
			}
			if err != nil {
				h.lost = true
				return
			}
			data = data[n:]
			if h.rfr.AtBoundary() {
				h.inBody = false
				h.answered()
			}
			continue
		}
		if h.pending == 0 {
			h.lost = true
			return
		}
		var rh parser.ResponseHead
		err := parser.ParseResponseHead(data, l.e.opts.MaxHeaderBytes, &rh)
		if err == parser.ErrNeedMore {
			break
		}
		if err != nil || rh.Status == 101 {
			h.lost = true // 101: the connection becomes a tunnel
			return
		}
		data = data[rh.HeadLen:]
		switch {
		case rh.Status < 200: // interim: the final answer follows
		case h.heads&1 != 0 || rh.BodyKind == parser.BodyNone || rh.BodyKind == parser.BodyLength && rh.ContentLength == 0:
			h.answered()
		case rh.BodyKind == parser.BodyUntilClose:
			h.lost = true
			return
		default:
			h.rfr.BeginBody(rh.BodyKind, rh.ContentLength)
			h.inBody = true
		}
	}
	if len(data) > l.e.opts.MaxHeaderBytes {
		h.lost = true
		data = nil
	}
	l.keep(&h.rcarry, data)
}

// keep stores rest, the unprocessed tail of bytes that were either fresh
// or *buf itself, in the pooled buffer *buf (released when rest is empty).
func (l *loop) keep(buf *[]byte, rest []byte) {
	switch {
	case len(rest) == 0:
		if *buf != nil {
			l.putBuf(*buf)
			*buf = nil
		}
	case len(*buf) > 0: // rest is a suffix of *buf
		*buf = (*buf)[:copy(*buf, rest)]
	default:
		if *buf == nil {
			*buf = l.getBuf()
		}
		*buf = append((*buf)[:0], rest...)
	}
}

func (h *httpConn) answered() {
	h.pending--
	h.heads >>= 1
}

// idleHTTP reports whether c is a kept-alive http connection between
// requests: every answer complete, nothing half-sent either way.
func idleHTTP(c *conn) bool {
	h := c.h
	return h != nil && h.mode == httpFraming && !h.lost && h.pending == 0 && !h.inBody &&
		len(h.rcarry) == 0 && h.fr.AtBoundary() && len(h.carry) == 0 &&
		c.pend == nil && c.peer != nil && c.peer.pend == nil
}

package engine

import (
	"bytes"
	"errors"
	"net/netip"
	"slices"
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

	// hold: in httpStopped, wait for the answers owed (the backend's write
	// side stays open: a Go backend cancels a request whose client sent a
	// FIN), then give the backend connection back and go on (afterAnswers).
	hold bool
	// closing: the client's connection closes after the last answer owed,
	// which says Connection: close (the client asked for it, or portier
	// is shutting down); no request after it is forwarded.
	closing bool
	// switching: carry starts with a request for another route, sent
	// once the answers owed are complete.
	switching bool
	// noReuse: something sent or answered over the backend connection
	// (an Upgrade, close semantics) forbids pooling it.
	noReuse bool
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
			if h.closing {
				// After a request that closes the connection nothing more
				// is forwarded (RFC 9112 9.6).
				l.stopHTTP(c, nil, nil)
				rest = nil
				continue
			}
			if !l.sameRoute(c, hd.Host) {
				// Never send a request for another name to this pool's
				// backends: it waits until the answers owed are complete,
				// then is routed afresh (switching).
				h.fr.Reset()
				l.stopHTTP(c, nil, nil)
				h.switching = true
				continue
			}
			if !hd.KeepAlive || l.e.draining.Load() {
				h.closing = true // its answer says close
			}
			// A request's Connection header is the client's business: it is
			// removed (rewriteHead) and the backend connection stays
			// reusable unless the backend's answer says close.
			if hd.Upgrade {
				h.noReuse = true
			}
			if bc.flags&fInflight == 0 {
				bc.backend.Acquire()
				bc.flags |= fInflight
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
	if h.mode == httpStopped {
		if !h.hold && bc.pend == nil {
			l.shutWrite(bc)
		} else if h.hold && h.pending == 0 {
			l.answersDone(c)
			return out, false
		}
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
	// Wait for the answers owed when they can be followed and the
	// request stream is at a boundary; otherwise the backend gets the FIN.
	h.hold = !h.lost
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
	drops := l.drops[:0]
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
			drops = append(drops, hd.Drop[i])
		}
	}
	if !hd.KeepAlive || hd.Minor == 0 {
		// Connection: close and its kind are about the client's connection
		// (RFC 9110 7.6.1); the backend connection stays reusable: an
		// HTTP/1.1 request says nothing, an HTTP/1.0 one asks for
		// keep-alive (a backend that cannot keep it answers with close).
		n := len(drops)
		drops = parser.AppendHopLines(drops, head, hd)
		if n > 0 && len(drops) > n {
			slices.SortFunc(drops, func(a, b [2]int) int { return a[0] - b[0] })
		}
	}
	l.drops = drops
	at := hd.Start
	for _, d := range drops {
		if d[0] < at {
			continue // a forwarding header also named in Connection
		}
		out = append(out, head[at:d[0]]...)
		at = d[1]
	}
	out = append(out, head[at:hd.HeadersEnd]...)
	if hd.Minor == 0 {
		out = append(out, "Connection: keep-alive\r\n"...)
	}
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
		c.pend == nil && (c.peer == nil || c.peer.pend == nil)
}

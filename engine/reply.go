package engine

import (
	"fmt"

	"github.com/valyala/bytebufferpool"
	"golang.org/x/sys/unix"

	"github.com/portier/portier/balancer"
)

func putFirst(b *bytebufferpool.ByteBuffer) { bytebufferpool.Put(b) }

// rejection is how a connection that cannot be forwarded is answered: an
// HTTP status on http listeners, a fatal TLS alert (or a plain close) on tls ones.
type rejection struct {
	status int    // HTTP status
	alert  byte   // TLS alert description; 0: close without an alert
	reason string // for the log line and the HTTP body
	code   Reason // for metrics
	reply  []byte // the rendered HTTP response; never modified
}

func newRejection(code Reason, status int, alert byte, reason string) *rejection {
	r := &rejection{code: code, status: status, alert: alert, reason: reason}
	r.reply = httpReply(r)
	return r
}

// TLS alert descriptions (RFC 8446 6).
const (
	alertDecodeError      = 50
	alertIllegalParameter = 47
	alertInternalError    = 80
	alertUnrecognizedName = 112
)

var (
	rejUnknownName    = newRejection(ReasonUnknownName, 404, alertUnrecognizedName, "no route for this name")
	rejNoName         = newRejection(ReasonNoName, 400, alertUnrecognizedName, "no host name (Host header or SNI) and no default route")
	rejNoBackend      = newRejection(ReasonNoBackend, 502, alertInternalError, "no backend reachable")
	rejMalformed      = newRejection(ReasonMalformed, 400, alertDecodeError, "malformed request")
	rejNotProtocol    = newRejection(ReasonNotProtocol, 400, 0, "not the listener's protocol")
	rejPlainHTTPOnTLS = newRejection(ReasonPlainHTTPOnTLS, 400, 0, "plain HTTP request sent to a TLS port")
	rejTooLarge       = newRejection(ReasonTooLarge, 431, alertIllegalParameter, "request head or ClientHello too large")
	rejTimeout        = newRejection(ReasonTimeout, 408, 0, "no complete request head or ClientHello before the handshake timeout")
	rejTruncated      = newRejection(ReasonTruncated, 400, 0, "client closed before the request head or ClientHello was complete")
	rejBadFraming     = newRejection(ReasonBadFraming, 400, 0, "request framing rejected (ambiguous or invalid message length)")
	rejLimit          = newRejection(ReasonLimit, 503, alertInternalError, "connection limit reached")
)

// httpReply renders a short plain-text response that closes the connection.
func httpReply(r *rejection) []byte {
	body := "portier: " + r.reason + "\n"
	return []byte(fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"+
		"Content-Length: %d\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n%s",
		r.status, statusText(r.status), len(body), body))
}

func statusText(code int) string {
	switch code {
	case 400:
		return "Bad Request"
	case 404:
		return "Not Found"
	case 408:
		return "Request Timeout"
	case 431:
		return "Request Header Fields Too Large"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	}
	return "Error"
}

// reject answers c, logs one line and lingers briefly so the answer is not
// destroyed by a reset for unread input.
func (l *loop) reject(c *conn, r *rejection, name []byte, cause error) {
	l.e.stats.Rejected.Add(1)
	l.e.stats.Rejects[r.code].Add(1)
	c.outcome = OutcomeRejected
	c.reason = r
	status, alert := 0, 0
	if c.ln.spec.Scheme == balancer.SchemeHTTP || r == rejPlainHTTPOnTLS {
		status = r.status
		_, _ = sysWrite(c.fd, r.reply)
	} else if r.alert != 0 {
		alert = int(r.alert)
		// A fatal alert record: content type 21, TLS 1.2 record version, level 2.
		_, _ = sysWrite(c.fd, []byte{21, 3, 3, 0, 2, 2, r.alert})
	}
	l.logRejected(c, r, name, cause, status, alert)

	if c.first != nil {
		putFirst(c.first)
		c.first = nil
	}
	l.linger(c)
}

// linger shuts c's write side and discards its input until it closes (or
// the linger time ends), so that what was written is not destroyed by a
// reset for unread input.
func (l *loop) linger(c *conn) {
	if c.flags&fReadEOF != 0 {
		l.closeConn(c)
		return
	}
	if !l.watch(c) { // lingering needs the client's edges
		l.closeConn(c)
		return
	}
	_ = sysShutdownWrite(c.fd)
	c.flags |= fWriteShut
	c.state = stLinger
	l.setList(c, listLinger)
	l.lingerRead(c)
}

// lingerRead discards input until the client closes; a client that keeps
// sending past the read budget or the linger time is closed.
func (l *loop) lingerRead(c *conn) {
	for i := 0; i < readsPerEvent; i++ {
		n, err := sysRead(c.fd, l.buf)
		if n > 0 {
			continue
		}
		if err == unix.EAGAIN {
			return
		}
		if err == unix.EINTR {
			continue
		}
		break // EOF or error
	}
	l.closeConn(c)
}

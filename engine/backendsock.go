package engine

import (
	"errors"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/portier/portier/balancer"
	"github.com/portier/portier/internal/rawsock"
)

// backendSockaddr fills the loop's kernel sockaddr for b: its IP address and
// port, or its unix socket path (http+unix://, tls+unix://). A unix connect
// is non-blocking too: it completes at once or fails at once (EAGAIN when
// the backend's accept queue is full, which counts as a failed connect).
func (l *loop) backendSockaddr(b *balancer.Backend) (family int, sa unsafe.Pointer, salen uintptr) {
	if b.Spec.IsUnix() {
		sa, salen = l.sa.Unix(b.Spec.Path)
		return unix.AF_UNIX, sa, salen
	}
	return l.sa.Inet(b.Addr)
}

// bindSource binds a backend socket of b (TCP, or a QUIC flow's UDP) to
// the client's address (for TCP the one a trusted PROXY header announced,
// behind accept_proxy) when b says source=client: the backend sees the
// client as the connection's source.
func (l *loop) bindSource(fd, family int, client netip.AddrPort, b *balancer.Backend) error {
	if b.Spec.Source != balancer.SourceClient {
		return nil
	}
	if err := rawsock.BindTransparent(fd, family, client.Addr(), &l.src); err != nil {
		return &sourceError{err} // allocates, on failure only
	}
	return nil
}

// sourceError is a failed bind to the client's address: the host's setup
// (capability, address family), not the backend's health.
type sourceError struct{ err error }

func (e *sourceError) Error() string {
	return "bind to the client's address (source=client): " + e.err.Error()
}

func (e *sourceError) Unwrap() error { return e.err }

func isSourceError(err error) bool {
	var se *sourceError
	return errors.As(err, &se)
}

// dialFailed handles a connect to b that failed before it started: a
// failed bind to the client's address skips b for this client without
// counting against b's health; anything else is the backend's failure.
func (l *loop) dialFailed(c *conn, b *balancer.Backend, err error) {
	if !isSourceError(err) {
		l.backendFailed(c, b, "backend connect failed", err)
		return
	}
	l.e.stats.ConnectFailures.Add(1)
	c.failed = b
	l.logBackendFailed(c, b, "backend connect failed", err)
}

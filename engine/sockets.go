package engine

import (
	"fmt"
	"log/slog"
	"net/netip"
	"unsafe"

	"github.com/panjf2000/gnet/v2/pkg/netpoll"
	"golang.org/x/sys/unix"

	"github.com/portier/portier/balancer"
)

const listenBacklog = 4096

// listen binds spec on this loop with SO_REUSEPORT so every loop accepts on
// the same port and the kernel spreads connections between them.
func (l *loop) listen(idx int, spec ListenerSpec, ap netip.AddrPort) (netip.AddrPort, error) {
	if spec.Scheme == balancer.SchemeQUIC {
		return l.listenQUIC(idx, spec, ap)
	}
	fam, sa := sockaddrOf(ap)
	fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return ap, fmt.Errorf("socket: %w", err)
	}
	fail := func(what string, err error) (netip.AddrPort, error) {
		_ = unix.Close(fd)
		return ap, fmt.Errorf("%s %s: %w", what, ap, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("SO_REUSEADDR", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return fail("SO_REUSEPORT", err)
	}
	if fam == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return fail("IPV6_V6ONLY", err)
		}
	}
	// Accepted sockets inherit TCP_NODELAY from the listener: one syscall here
	// instead of one per connection.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		return fail("TCP_NODELAY", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	if err := unix.Listen(fd, listenBacklog); err != nil {
		return fail("listen", err)
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	ap = addrPortOf(bound)
	// Level-triggered: a listener we stop accepting on (EMFILE,
	// max_connections) is removed from the poller, so no event is lost and
	// none spins. It is recorded only once registered: fail closes fd, and a
	// listener left in l.lns would be closed again by release, perhaps
	// after its number was reused.
	if err := l.poller.AddRead(&netpoll.PollAttachment{FD: fd}, false); err != nil {
		return fail("epoll add", err)
	}
	c := l.newConn(fd, kindListener)
	c.state = stListen
	c.ln = &listener{idx: idx, spec: spec}
	l.lns = append(l.lns, c)
	return ap, nil
}

func sockaddrOf(ap netip.AddrPort) (int, unix.Sockaddr) {
	if a := ap.Addr(); a.Is4() || a.Is4In6() {
		return unix.AF_INET, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}
	}
	return unix.AF_INET6, &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

func addrPortOf(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// rawAddrPort decodes a kernel sockaddr without allocating (unix.Accept4
// allocates a Sockaddr per call).
func rawAddrPort(rsa *unix.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		port := (*[2]byte)(unsafe.Pointer(&p.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), uint16(port[0])<<8|uint16(port[1]))
	case unix.AF_INET6:
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		port := (*[2]byte)(unsafe.Pointer(&p.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(p.Addr).Unmap(), uint16(port[0])<<8|uint16(port[1]))
	}
	return netip.AddrPort{}
}

// accept4 accepts one connection into a non-blocking socket.
func (l *loop) accept4(fd int) (int, netip.AddrPort, error) {
	l.rsaLen = unix.SizeofSockaddrAny
	nfd, _, errno := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(&l.rsa)),
		uintptr(unsafe.Pointer(&l.rsaLen)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if errno != 0 {
		return -1, netip.AddrPort{}, errno
	}
	return int(nfd), rawAddrPort(&l.rsa), nil
}

// register adds a connecting backend's socket to the poller,
// edge-triggered, for writes too (the connect completes with EPOLLOUT).
// Clients join later, and only when they must (watch).
func (l *loop) register(bc *conn) error {
	if err := l.stamp(bc); err != nil {
		return err
	}
	bc.flags |= fOutArmed
	return l.epollCtl(unix.EPOLL_CTL_ADD, bc, unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLET|unix.EPOLLOUT)
}

// stamp gives c the generation its epoll token carries.
func (l *loop) stamp(c *conn) error {
	if c.fd >= 1<<genShift {
		return unix.EMFILE // the epoll token has 22 bits for the descriptor
	}
	l.gen++
	if l.gen == 0 || l.gen >= 1<<(31-genShift) {
		l.gen = 1
	}
	c.gen = l.gen
	return nil
}

// A new client is read at once, before it is registered: clients speak
// first and are usually heard by the time they are accepted, which saves a
// wake-up. It joins the poller (watch) only once it must hear of new bytes:
// a connection-per-request client whose request asked for the close never
// does (its answer closes it), which saves the epoll_ctl and the kernel's
// registration and removal per connection (HAProxy registers such
// connections no more). Registering edge-triggered reports a socket that
// became ready meanwhile, so no edge is lost by joining late.

// watch registers an unwatched client (for reads, and writes once armed);
// false if that failed, which is logged.
func (l *loop) watch(c *conn) bool {
	if c.flags&fUnwatched == 0 {
		return true
	}
	c.flags &^= fUnwatched
	l.watched.Add(1)
	ev := uint32(unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET)
	if c.flags&fOutArmed != 0 {
		ev |= unix.EPOLLOUT
	}
	if err := l.epollCtl(unix.EPOLL_CTL_ADD, c, ev); err != nil {
		l.logLoop(slog.LevelError, kindPollFailed, "epoll add failed", "", err)
		return false
	}
	return true
}

// wantsInput reports whether client c must hear of new bytes or of its
// peer's close. A client of an http listener whose last request, complete,
// asked for the close does not: nothing after that request is forwarded,
// its answer is written whether or not it is still there, and whether it
// sent more is asked once the answer is out (afterAnswers).
func wantsInput(c *conn) bool {
	if c.state != stForward && c.state != stWaitPeer {
		return true
	}
	h := c.h
	return h == nil || h.mode != httpFraming || !h.closing || !h.fr.AtBoundary() || len(h.carry) > 0 ||
		h.cutErr != nil || h.reject != nil
}

// sentMore reports whether client c may have sent bytes that were not read:
// a watched client says so by its edges (fReadReady); for one that was never
// watched, whose edges nobody saw, the kernel is asked.
func sentMore(c *conn) bool {
	if c.flags&fUnwatched == 0 {
		return c.flags&fReadReady != 0
	}
	var n int32
	_, _, e := unix.RawSyscall(unix.SYS_IOCTL, uintptr(c.fd), unix.SIOCINQ, uintptr(unsafe.Pointer(&n)))
	return e != 0 || n > 0
}

// armWrite adds EPOLLOUT to a client that could not take all its bytes.
func (l *loop) armWrite(c *conn) {
	if c.flags&fOutArmed == 0 {
		c.flags |= fOutArmed
		if c.flags&fUnwatched != 0 {
			l.watch(c) // registers with EPOLLOUT
			return
		}
		if err := l.epollCtl(unix.EPOLL_CTL_MOD, c, unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLOUT|unix.EPOLLET); err != nil {
			l.logLoop(slog.LevelError, kindPollFailed, "epoll mod failed", "", err)
		}
	}
}

// localAddr returns the address fd is bound to, without allocating.
func (l *loop) localAddr(fd int) netip.AddrPort {
	l.rsaLen = unix.SizeofSockaddrAny
	_, _, errno := unix.RawSyscall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(&l.rsa)),
		uintptr(unsafe.Pointer(&l.rsaLen)))
	if errno != 0 {
		return netip.AddrPort{}
	}
	return rawAddrPort(&l.rsa)
}

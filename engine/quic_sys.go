package engine

import (
	"fmt"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/portier/portier/balancer"
)

// UDP syscalls of the QUIC path: raw, non-blocking, allocation-free, like sys.go.

// recvFrom reads one datagram and its sender's address into the loop's rsa.
func (l *loop) recvFrom(fd int, b []byte) (int, error) {
	l.rsaLen = unix.SizeofSockaddrAny
	n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		0, uintptr(unsafe.Pointer(&l.rsa)), uintptr(unsafe.Pointer(&l.rsaLen)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// sendTo sends one datagram from fd to the raw sockaddr sa.
func sendTo(fd int, b []byte, sa *unix.RawSockaddrAny, salen uint32) error {
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		0, uintptr(unsafe.Pointer(sa)), uintptr(salen))
	if e != 0 {
		return e
	}
	return nil
}

// sendConnected sends one datagram on a connected socket.
func sendConnected(fd int, b []byte) error {
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// udpSocket binds a non-blocking UDP socket to ap with SO_REUSEPORT, so
// every loop binds the same port and the kernel keeps one client 4-tuple on
// one loop.
func udpSocket(ap netip.AddrPort) (int, netip.AddrPort, error) {
	fam, sa := sockaddrOf(ap)
	fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, ap, fmt.Errorf("socket: %w", err)
	}
	fail := func(what string, err error) (int, netip.AddrPort, error) {
		_ = unix.Close(fd)
		return -1, ap, fmt.Errorf("%s %s: %w", what, ap, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return fail("SO_REUSEPORT", err)
	}
	if fam == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return fail("IPV6_V6ONLY", err)
		}
	}
	// Room for bursts between two loop turns (the kernel doubles it and caps
	// it at net.core.rmem_max).
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	return fd, addrPortOf(bound), nil
}

// quicBackendSocket creates the connected UDP socket through which one flow
// reaches backend b. It is the single place a flow's backend socket is made.
// With source=client it is bound to the client's address first (as the TCP
// dial does, rawsock.BindTransparent), so the backend sees the client as
// the datagrams' source; otherwise the kernel picks portier's own address.
// The port is the kernel's either way.
func (l *loop) quicBackendSocket(b *balancer.Backend, client netip.AddrPort) (int, error) {
	fam, sa, salen := l.sa.Inet(b.Addr)
	r, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(fam), unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if e != 0 {
		return -1, e
	}
	fd := int(r)
	if err := l.bindSource(fd, fam, client, b); err != nil {
		sysClose(fd)
		return -1, err
	}
	if err := sysConnect(fd, sa, salen); err != nil {
		sysClose(fd)
		return -1, err
	}
	return fd, nil
}

package rawsock

import (
	"errors"
	"fmt"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrFamily is returned by BindTransparent when the source address is not
// of the socket's family: an IPv4 client cannot be the source of a
// connection to an IPv6 backend, nor the reverse.
var ErrFamily = errors.New("client address family differs from the backend's")

var one int32 = 1

func setInt1(fd, level, opt int) error {
	_, _, e := unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&one)), 4, 0)
	if e != 0 {
		return e
	}
	return nil
}

// transparentOpt is the socket option that lets a socket of family bind to
// an address the host does not own (and receive packets sent to it).
func transparentOpt(family int) (level, opt int) {
	if family == unix.AF_INET6 {
		return unix.SOL_IPV6, unix.IPV6_TRANSPARENT
	}
	return unix.SOL_IP, unix.IP_TRANSPARENT
}

// BindTransparent binds fd, a fresh socket of family (AF_INET or AF_INET6,
// TCP or UDP), to src with IP_TRANSPARENT / IPV6_TRANSPARENT, so that its
// packets leave with src as their source address: the client's, for
// source=client. Call it before connect(2). The address is stored in sa.
//
// The port is the kernel's choice: with IP_BIND_ADDRESS_NO_PORT the bind
// only records the address and connect(2) picks a port free for the whole
// 4-tuple (client address, port, backend address, port). The client's own
// port is not reused (HAProxy's "usesrc clientip", not "usesrc client"):
// the backend side of a connection portier closed first sits in TIME_WAIT
// under that tuple, so a client that reconnects from the same port at once,
// or two clients behind one NAT announced by a balancer, would get
// EADDRINUSE; and a backend gains nothing from seeing the client's port.
//
// It makes two setsockopt calls and one bind, allocates nothing and never
// blocks. It fails with EPERM without CAP_NET_ADMIN (see CheckTransparent).
func BindTransparent(fd, family int, src netip.Addr, sa *Sockaddr) error {
	src = src.Unmap()
	if src.Is4() != (family == unix.AF_INET) {
		return ErrFamily
	}
	level, opt := transparentOpt(family)
	if err := setInt1(fd, level, opt); err != nil {
		return err
	}
	if err := setInt1(fd, unix.SOL_IP, unix.IP_BIND_ADDRESS_NO_PORT); err != nil {
		return err
	}
	_, p, n := sa.Inet(netip.AddrPortFrom(src, 0))
	if _, _, e := unix.RawSyscall(unix.SYS_BIND, uintptr(fd), uintptr(p), n); e != 0 {
		return e
	}
	return nil
}

// CheckTransparent reports whether this process may bind sockets of the
// given family transparently: it sets IP_TRANSPARENT (IPV6_TRANSPARENT when
// ipv6) on a scratch socket, exactly what BindTransparent will do. The
// kernel allows it with CAP_NET_ADMIN (or CAP_NET_RAW) in the socket's
// network namespace; the error says what to do otherwise.
func CheckTransparent(ipv6 bool) error {
	family, name := unix.AF_INET, "IP_TRANSPARENT"
	if ipv6 {
		family, name = unix.AF_INET6, "IPV6_TRANSPARENT"
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("source=client: socket: %w", err)
	}
	defer unix.Close(fd)
	level, opt := transparentOpt(family)
	if err := setInt1(fd, level, opt); err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("source=client needs the CAP_NET_ADMIN capability (the kernel also accepts "+
				"CAP_NET_RAW), which portier does not have (%s: %w); grant it (systemd: "+
				"AmbientCapabilities=CAP_NET_ADMIN and CapabilityBoundingSet, see deploy/portier.service) "+
				"or remove source=client", name, err)
		}
		return fmt.Errorf("source=client: %s: %w", name, err)
	}
	return nil
}

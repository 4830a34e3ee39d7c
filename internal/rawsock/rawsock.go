// Package rawsock holds the socket helpers that event loops call per
// connection: kernel socket addresses filled in caller-owned storage and the
// transparent bind of source=client. Nothing here allocates or blocks, so a
// loop may call it for every connection: the TCP engine for backend
// connections, and flow sockets (UDP) the same way.
package rawsock

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Sockaddr is storage for one kernel socket address. A loop keeps its own
// (one per address in use at a time) and refills it per call, so building
// an address allocates nothing; the pointer returned by Inet or Unix is
// valid until the next call on the same Sockaddr.
type Sockaddr struct {
	v4 unix.RawSockaddrInet4
	v6 unix.RawSockaddrInet6
	un unix.RawSockaddrUnix
}

// Inet fills s with ap (an IPv4 or v4-mapped address becomes AF_INET) and
// returns the family and the address for connect(2) or bind(2).
func (s *Sockaddr) Inet(ap netip.AddrPort) (family int, sa unsafe.Pointer, salen uintptr) {
	port := ap.Port()
	if a := ap.Addr(); a.Is4() || a.Is4In6() {
		s.v4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.Unmap().As4()}
		p := (*[2]byte)(unsafe.Pointer(&s.v4.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		return unix.AF_INET, unsafe.Pointer(&s.v4), unix.SizeofSockaddrInet4
	}
	s.v6 = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ap.Addr().As16()}
	p := (*[2]byte)(unsafe.Pointer(&s.v6.Port))
	p[0], p[1] = byte(port>>8), byte(port)
	return unix.AF_INET6, unsafe.Pointer(&s.v6), unix.SizeofSockaddrInet6
}

// MaxUnixPath is the longest socket path Unix takes (sun_path is 108 bytes
// with the terminating NUL).
const MaxUnixPath = len(unix.RawSockaddrUnix{}.Path) - 1

// Unix fills s with a socket path (at most MaxUnixPath bytes; the caller
// validated it) and returns the address for connect(2).
func (s *Sockaddr) Unix(path string) (sa unsafe.Pointer, salen uintptr) {
	s.un.Family = unix.AF_UNIX
	n := min(len(path), MaxUnixPath)
	for i := 0; i < n; i++ {
		s.un.Path[i] = int8(path[i])
	}
	s.un.Path[n] = 0
	return unsafe.Pointer(&s.un), unsafe.Offsetof(s.un.Path) + uintptr(n) + 1
}

package rawsock

import (
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestBindTransparent(t *testing.T) {
	if err := CheckTransparent(false); err != nil {
		t.Skipf("SKIPPED: no transparent binds here (tests run as root in CI): %v", err)
	}
	var sa Sockaddr
	for _, tc := range []struct {
		family int
		src    string
	}{
		{unix.AF_INET, "192.0.2.7"},    // TEST-NET-1: not an address of this host
		{unix.AF_INET6, "2001:db8::7"}, // documentation prefix
	} {
		fd, err := unix.Socket(tc.family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		src := netip.MustParseAddr(tc.src)
		if err := BindTransparent(fd, tc.family, src, &sa); err != nil {
			unix.Close(fd)
			t.Fatalf("BindTransparent(%s): %v", src, err)
		}
		// Bound to the foreign address; the port is left to connect.
		got, err := unix.Getsockname(fd)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		var addr netip.Addr
		var port int
		switch a := got.(type) {
		case *unix.SockaddrInet4:
			addr, port = netip.AddrFrom4(a.Addr), a.Port
		case *unix.SockaddrInet6:
			addr, port = netip.AddrFrom16(a.Addr), a.Port
		}
		if addr != src || port != 0 {
			t.Errorf("bound to %v port %d, want %v port 0 (IP_BIND_ADDRESS_NO_PORT)", addr, port, src)
		}
	}

	// The other family is refused before any syscall.
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := BindTransparent(fd, unix.AF_INET6, netip.MustParseAddr("192.0.2.7"), &sa); !errors.Is(err, ErrFamily) {
		t.Errorf("IPv4 source on an IPv6 socket: %v, want ErrFamily", err)
	}
}

// The event loops call BindTransparent per connection: it must not allocate.
func TestBindTransparentAllocs(t *testing.T) {
	if err := CheckTransparent(false); err != nil {
		t.Skipf("SKIPPED: no transparent binds here: %v", err)
	}
	var sa Sockaddr
	src := netip.MustParseAddr("192.0.2.9")
	var failed error
	allocs := testing.AllocsPerRun(100, func() {
		fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if e != 0 {
			failed = e
			return
		}
		if err := BindTransparent(int(fd), unix.AF_INET, src, &sa); err != nil {
			failed = err
		}
		unix.RawSyscall(unix.SYS_CLOSE, fd, 0, 0)
	})
	if failed != nil {
		t.Fatal(failed)
	}
	if allocs != 0 {
		t.Errorf("BindTransparent: %v allocations per call, want 0", allocs)
	}
}

func TestSockaddrUnix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var sa Sockaddr
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if n := testing.AllocsPerRun(100, func() { sa.Unix(path) }); n != 0 {
		t.Errorf("Sockaddr.Unix: %v allocations, want 0", n)
	}
	p, n := sa.Unix(path)
	if _, _, e := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(p), n); e != 0 {
		t.Fatalf("connect %s: %v", path, e)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// The transparent bind also serves flow sockets (UDP): the same call binds
// a datagram socket to a foreign address.
func TestBindTransparentUDP(t *testing.T) {
	if err := CheckTransparent(false); err != nil {
		t.Skipf("SKIPPED: no transparent binds here: %v", err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var sa Sockaddr
	if err := BindTransparent(fd, unix.AF_INET, netip.MustParseAddr("192.0.2.7"), &sa); err != nil {
		t.Fatal(err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := got.(*unix.SockaddrInet4); !ok || a.Addr != [4]byte{192, 0, 2, 7} {
		t.Errorf("UDP socket bound to %+v, want 192.0.2.7", got)
	}
}

// BenchmarkBackendSocket measures what source=client adds to a backend
// socket: socket+close against socket+IP_TRANSPARENT+IP_BIND_ADDRESS_NO_PORT
// +bind+close (docs/design.md quotes the figures).
func BenchmarkBackendSocket(b *testing.B) {
	var sa Sockaddr
	src := netip.MustParseAddr("192.0.2.9")
	for _, transparent := range []bool{false, true} {
		name := "plain"
		if transparent {
			name = "source=client"
			if err := CheckTransparent(false); err != nil {
				b.Skipf("no transparent binds here: %v", err)
			}
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
				if e != 0 {
					b.Fatal(e)
				}
				if transparent {
					if err := BindTransparent(int(fd), unix.AF_INET, src, &sa); err != nil {
						b.Fatal(err)
					}
				}
				unix.RawSyscall(unix.SYS_CLOSE, fd, 0, 0)
			}
		})
	}
}

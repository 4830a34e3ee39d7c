// Command floor is the benchmark's floor: the least a proxy of portier's
// kind can cost on this kernel. One thread, one epoll instance, raw
// syscalls; each listener forwards every connection to one fixed backend,
// one backend connection per client, bytes read -> written both ways with
// nothing parsed. It does flow control (a destination that cannot take more
// stops its source being read) and passes half-closes on, and nothing else:
// no routing, no timeouts, no limits.
//
//	floor -config FILE     (lines "listen-address backend-address")
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

type sock struct {
	fd         int
	peer       *sock
	pend       []byte // bytes for this socket that it could not take yet
	readable   bool   // an EPOLLIN edge not yet read to EAGAIN
	hup        bool   // the peer's FIN was reported: read on to EOF, no new edge will come
	eof        bool   // read returned 0
	shut       bool   // our write side is shut
	connecting bool
}

type floor struct {
	ep       int
	buf      []byte
	socks    []*sock                // by descriptor
	backends map[int]netip.AddrPort // listener fd -> backend
	closing  []int                  // closed after the batch, so no number is reused while its events are pending
}

func main() {
	config := flag.String("config", "", "file of \"listen backend\" lines")
	flag.Parse()
	if err := run(*config); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

func run(config string) error {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	f := &floor{ep: ep, buf: make([]byte, 64<<10), socks: make([]*sock, 1<<16), backends: map[int]netip.AddrPort{}}
	file, err := os.Open(config)
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		if len(fields) != 2 {
			return fmt.Errorf("%s: want \"listen backend\", got %q", config, sc.Text())
		}
		ln, err1 := netip.ParseAddrPort(fields[0])
		be, err2 := netip.ParseAddrPort(fields[1])
		if err1 != nil || err2 != nil {
			return fmt.Errorf("%s: bad addresses in %q", config, sc.Text())
		}
		if err := f.listen(ln, be); err != nil {
			return err
		}
	}
	file.Close()
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := rawEpollWait(ep, events)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if s := f.sock(fd); s != nil {
				f.event(s, ev.Events)
			} else if be, ok := f.backends[fd]; ok {
				f.accept(fd, be)
			}
		}
		for _, fd := range f.closing {
			unix.Close(fd)
		}
		f.closing = f.closing[:0]
	}
}

func (f *floor) listen(ap, be netip.AddrPort) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1) // inherited by accepted sockets
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		return fmt.Errorf("bind %s: %w", ap, err)
	}
	if err := unix.Listen(fd, 4096); err != nil {
		return err
	}
	f.backends[fd] = be
	return unix.EpollCtl(f.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)})
}

func (f *floor) accept(lfd int, be netip.AddrPort) {
	for {
		cfd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			return // EAGAIN, or out of descriptors: the listener reports again
		}
		bfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			unix.Close(cfd)
			return
		}
		_ = unix.SetsockoptInt(bfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		if err := unix.Connect(bfd, &unix.SockaddrInet4{Port: int(be.Port()), Addr: be.Addr().As4()}); err != nil && err != unix.EINPROGRESS {
			unix.Close(cfd)
			unix.Close(bfd)
			continue
		}
		c, b := &sock{fd: cfd}, &sock{fd: bfd, connecting: true}
		c.peer, b.peer = b, c
		f.set(cfd, c)
		f.set(bfd, b)
		for _, s := range []*sock{c, b} {
			_ = unix.EpollCtl(f.ep, unix.EPOLL_CTL_ADD, s.fd, &unix.EpollEvent{
				Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(s.fd)})
		}
	}
}

func (f *floor) event(s *sock, ev uint32) {
	if ev&unix.EPOLLERR != 0 {
		f.closePair(s)
		return
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
		s.readable = true
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
		s.hup = true
	}
	if ev&unix.EPOLLOUT != 0 {
		if s.connecting {
			s.connecting = false
			f.pump(s.peer) // the client may have sent already
			if f.sock(s.fd) != s {
				return
			}
		}
		if len(s.pend) > 0 && !f.flush(s) {
			return
		}
	}
	f.pump(s)
}

// pump reads src until a short read or EAGAIN and writes each read to its peer; a short write
// keeps the rest and stops reading src until it is out (flow control).
func (f *floor) pump(src *sock) {
	dst := src.peer
	for src.readable && !src.eof && !dst.connecting && len(dst.pend) == 0 {
		n, err := rawRead(src.fd, f.buf)
		switch {
		case n > 0:
			w, err := rawWrite(dst.fd, f.buf[:n])
			if err != nil && err != unix.EAGAIN {
				f.closePair(src)
				return
			}
			if w < 0 {
				w = 0
			}
			if w < n {
				dst.pend = append(dst.pend[:0], f.buf[w:n]...)
				return
			}
			if n < len(f.buf) && !src.hup {
				// A short read took all there was: new bytes raise a new
				// edge, so a read only to collect EAGAIN is saved (as portier
				// and HAProxy do). Not once the FIN was reported with the
				// bytes: it raises no edge of its own (an answer and its
				// close in one event, as HTTP/1.0 backends send them).
				src.readable = false
			}
		case n == 0:
			src.eof = true
			f.passFIN(dst)
			return
		case err == unix.EAGAIN:
			src.readable = false
		case err == unix.EINTR:
		default:
			f.closePair(src)
			return
		}
	}
}

// flush writes s.pend; once it is out, s's peer is read again.
func (f *floor) flush(s *sock) bool {
	w, err := rawWrite(s.fd, s.pend)
	if err != nil && err != unix.EAGAIN {
		f.closePair(s)
		return false
	}
	if w > 0 {
		s.pend = s.pend[:copy(s.pend, s.pend[w:])]
	}
	if len(s.pend) > 0 {
		return true
	}
	if s.peer.eof {
		f.passFIN(s)
		return f.sock(s.fd) == s
	}
	f.pump(s.peer)
	return f.sock(s.fd) == s
}

// passFIN shuts dst's write side once its pending bytes are out, and closes
// the pair when both directions have ended.
func (f *floor) passFIN(dst *sock) {
	if len(dst.pend) > 0 {
		return
	}
	if !dst.shut {
		dst.shut = true
		_ = unix.Shutdown(dst.fd, unix.SHUT_WR)
	}
	if dst.eof && dst.peer.shut {
		f.closePair(dst)
	}
}

func (f *floor) closePair(s *sock) {
	for _, x := range []*sock{s, s.peer} {
		if f.sock(x.fd) == x {
			f.socks[x.fd] = nil
			_ = unix.EpollCtl(f.ep, unix.EPOLL_CTL_DEL, x.fd, nil)
			f.closing = append(f.closing, x.fd)
		}
	}
}

func (f *floor) sock(fd int) *sock {
	if fd < len(f.socks) {
		return f.socks[fd]
	}
	return nil
}

func (f *floor) set(fd int, s *sock) {
	for fd >= len(f.socks) {
		f.socks = append(f.socks, make([]*sock, len(f.socks))...)
	}
	f.socks[fd] = s
}

// rawEpollWait blocks in epoll_pwait without telling the scheduler: the
// floor is one goroutine with nothing else to run, so the P it holds has no
// other use, and the scheduler's hand-off of a P stuck in a syscall (sysmon
// retakes it after 20 µs, the thread reacquires it on return) is work a C
// forwarder does not do. A signal (preemption, GC) ends the wait with EINTR.
func rawEpollWait(ep int, events []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), ^uintptr(0), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// rawRead and rawWrite skip the scheduler's syscall bookkeeping: the
// sockets are non-blocking, so the calls return at once (as portier does).
func rawRead(fd int, b []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

func rawWrite(fd int, b []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

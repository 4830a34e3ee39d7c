package engine

import (
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// TestEpollFD: the descriptor taken from gnet's poller is its epoll instance.
func TestEpollFD(t *testing.T) {
	hh := newHandshakeHarness(t, 0)
	link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(hh.l.epfd))
	if err != nil || link != "anon_inode:[eventpoll]" {
		t.Fatalf("epfd %d is %q (%v)", hh.l.epfd, link, err)
	}
}

// TestStaleEventIgnored: an event carrying an earlier generation of a
// reused descriptor number does not reach the new socket; its own does.
func TestStaleEventIgnored(t *testing.T) {
	hh := newHandshakeHarness(t, 0)
	c := hh.client(t)
	defer hh.done(c)
	if err := hh.l.register(c); err != nil {
		t.Fatal(err)
	}
	stale := int(c.fd) | int(c.gen-1)<<genShift
	if c.gen == 1 {
		stale = int(c.fd) | 511<<genShift
	}
	c.state = stConnecting // as a backend whose connect is under way
	c.kind = kindBackend
	if hh.l.onEvent(stale, unix.EPOLLOUT|unix.EPOLLERR); c.flags&(fWriteReady|fConnErr) != 0 {
		t.Fatalf("stale event applied: flags %b", c.flags)
	}
	c.state = stLinger // its own event is dispatched (linger just reads)
	c.kind = kindClient
	hh.l.onEvent(int(epollToken(c)), unix.EPOLLIN)
	if c.flags&fReadReady == 0 && c.fd >= 0 {
		t.Fatal("own event not applied")
	}
}

package engine

import (
	"errors"
	"reflect"
	"unsafe"

	"github.com/panjf2000/gnet/v2/pkg/netpoll"
	"golang.org/x/sys/unix"
)

// Sockets are registered with our own epoll_ctl on the poller's epoll
// descriptor, so that the event data carries a token: the descriptor in the
// low 22 bits and the socket's generation (1..511) above. gnet hands the
// token to onEvent as the "fd", which tells an event that was harvested for
// a socket closed earlier in the same batch from one for the new socket
// that got its number, without a getpeername per connect. Listeners and
// gnet's eventfd keep gnet's registration: their token is the bare
// descriptor (generation 0), which a connection token never equals.
const genShift = 22

// epollToken is the event data of c's registration.
func epollToken(c *conn) int32 { return int32(c.fd | int(c.gen)<<genShift) }

func (l *loop) epollCtl(op int, c *conn, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: epollToken(c)}
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(l.epfd), uintptr(op), uintptr(c.fd),
		uintptr(unsafe.Pointer(&ev)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// epollFD returns the epoll descriptor of a gnet poller, which gnet keeps in
// an unexported first field. The field is checked by name, type and offset,
// so a gnet version that moves it fails here, at start, not at random.
func epollFD(p *netpoll.Poller) (int, error) {
	t := reflect.TypeOf(*p)
	if t.NumField() == 0 {
		return -1, errors.New("engine: gnet's Poller has no fields")
	}
	if f := t.Field(0); f.Name != "fd" || f.Type.Kind() != reflect.Int || f.Offset != 0 {
		return -1, errors.New("engine: gnet's Poller no longer starts with its epoll descriptor")
	}
	return *(*int)(unsafe.Pointer(p)), nil
}

package engine

import (
	"context"
	"net/netip"
	"testing"
	"time"

	gerrors "github.com/panjf2000/gnet/v2/pkg/errors"
	"github.com/panjf2000/gnet/v2/pkg/netpoll"
	"golang.org/x/sys/unix"

	"github.com/portier/portier/balancer"
)

// TestShutdownAfterLoopExited: a loop whose poller stopped never runs the
// stop-listening task; Shutdown must neither wait for it nor past its ctx.
func TestShutdownAfterLoopExited(t *testing.T) {
	p := startProxy(t, nil, "", nil)
	l := p.e.loops[1]
	l.trigger(func(any) error { return gerrors.ErrEngineShutdown }) // the poller's loop ends
	<-l.exited
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.e.Shutdown(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown = %v, want nil (no connection was open)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown ignored its context: still waiting for the exited loop 10 s later")
	}
}

// TestListenFailureClosesOnce: a listening socket that fails to register
// with the poller is closed by listen and not again by release, which would
// close whatever reused its descriptor number.
func TestListenFailureClosesOnce(t *testing.T) {
	table, err := balancer.NewTable(context.Background(), nil, "", balancer.TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{opts: Options{Router: balancer.NewRouter(table)}}
	e.opts.setDefaults()
	e.events = newTestEvents()
	defer e.events.Close()
	l, err := newLoop(e, 0)
	if err != nil {
		t.Fatal(err)
	}
	_ = l.poller.Close() // every epoll_ctl now fails
	if _, err := l.listen(0, ListenerSpec{Name: "web"}, netip.MustParseAddrPort("127.0.0.1:0")); err == nil {
		t.Fatal("listen succeeded with a closed poller")
	}
	// The lowest free numbers: the failed listener's among them.
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	if l.poller, err = netpoll.OpenPoller(); err != nil {
		t.Fatal(err)
	}
	l.release()
	for _, fd := range fds {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			t.Fatalf("descriptor %d, opened after the failed listen, was closed by release: %v", fd, err)
		}
	}
}

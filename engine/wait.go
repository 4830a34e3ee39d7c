package engine

import (
	"errors"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	gerrors "github.com/panjf2000/gnet/v2/pkg/errors"
	"github.com/panjf2000/gnet/v2/pkg/netpoll"
	"github.com/panjf2000/gnet/v2/pkg/queue"
	"golang.org/x/sys/unix"
)

// The loop waits on its poller's epoll descriptor itself instead of in
// gnet's Poller.Polling, which yields (runtime.Gosched) every time its
// zero-timeout poll after a batch finds nothing. cmd/portier gives the
// scheduler one P more than there are loops (so that sysmon leaves a loop
// blocked in epoll_wait alone), and with an idle P each such yield wakes a
// second thread to run the loop's goroutine while the first one parks: two
// futex calls and a context switch per batch. Measured in docs/design.md
// ("A spare P, and a wait without a yield"). Tasks from other goroutines
// (the tick's sweep, shutdown, QUIC datagrams for another loop's flow) come
// through a queue of our own and an eventfd registered on the same epoll
// descriptor; gnet's own eventfd stays registered and is never written.

const (
	waitEvents     = 256 // events taken per epoll_wait
	maxTasksAtOnce = 256 // tasks run per wake-up before the loop's sockets get a turn
	// yieldEvery: the loop yields this often. sysmon takes as long-running
	// a goroutine whose P has not rescheduled for 10 ms, and if it is in a
	// syscall then, takes its P away and goes back to its 20 µs tick, so a
	// loop that never yields would pay a P hand-off and a busy sysmon every
	// 10 ms.
	yieldEvery = 5 * time.Millisecond
)

// taskQueue carries functions to a loop from any goroutine.
type taskQueue struct {
	efd   int
	q     queue.AsyncTaskQueue
	armed atomic.Bool // an eventfd write is on its way: later tasks need none
	one   [8]byte     // the eventfd's increment, 1 in host byte order
}

func (t *taskQueue) init(epfd int) error {
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return os.NewSyscallError("eventfd", err)
	}
	// Edge-triggered: every write is a new edge, so the counter is never
	// read (but for the unlikely overflow in kick).
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(efd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &ev); err != nil {
		_ = unix.Close(efd)
		return os.NewSyscallError("epoll_ctl", err)
	}
	t.efd = efd
	t.q = queue.NewLockFreeQueue()
	t.one = [8]byte{1} // eventfd takes a host-order uint64; amd64 and arm64 are little-endian
	return nil
}

// trigger runs f on the loop at its next wake-up; safe from any goroutine.
func (l *loop) trigger(f queue.Func) {
	task := queue.GetTask()
	task.Exec = f
	l.tasks.q.Enqueue(task)
	l.kick()
}

// kick wakes the loop unless a wake-up is already on its way.
func (l *loop) kick() {
	if !l.tasks.armed.CompareAndSwap(false, true) {
		return
	}
	for {
		_, err := unix.Write(l.tasks.efd, l.tasks.one[:])
		if err != unix.EAGAIN {
			return
		}
		var drain [8]byte // the counter is full: empty it and write again
		_, _ = unix.Read(l.tasks.efd, drain[:])
	}
}

// runTasks runs the queued tasks; ErrEngineShutdown from one ends the loop.
func (l *loop) runTasks() error {
	// Disarmed first: a task queued after the last Dequeue below then
	// writes the eventfd again.
	l.tasks.armed.Store(false)
	for i := 0; i < maxTasksAtOnce; i++ {
		task := l.tasks.q.Dequeue()
		if task == nil {
			return nil
		}
		err := task.Exec(task.Param)
		queue.PutTask(task)
		if errors.Is(err, gerrors.ErrEngineShutdown) {
			return err
		}
	}
	if !l.tasks.q.IsEmpty() {
		l.kick()
	}
	return nil
}

// wait is the loop: wait for events, handle the batch, and wait again,
// without the zero-timeout poll gnet makes first: with a spare P the
// blocking wait keeps its P, and that extra poll after every batch cost
// more than it saved (docs/design.md). Only deferred reads (scheduleRead)
// make the next poll one that does not sleep.
func (l *loop) wait() error {
	events := make([]unix.EpollEvent, waitEvents)
	msec := -1
	yielded := nanotime()
	for {
		n, err := unix.EpollWait(l.epfd, events, msec)
		if err != nil && err != unix.EINTR {
			return os.NewSyscallError("epoll_wait", err)
		}
		chores := false
		for i := 0; i < n; i++ {
			ev := &events[i]
			if int(ev.Fd) == l.tasks.efd {
				chores = true
				continue
			}
			l.onEvent(int(ev.Fd), netpoll.IOEvent(ev.Events))
		}
		if chores {
			if err := l.runTasks(); err != nil {
				return err
			}
		}
		if l.readyQueue {
			l.runReady()
		}
		if l.readyQueue {
			msec = 0
		} else {
			msec = -1
		}
		if now := nanotime(); now-yielded > int64(yieldEvery) {
			yielded = now
			runtime.Gosched()
		}
	}
}

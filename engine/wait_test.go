package engine

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gerrors "github.com/panjf2000/gnet/v2/pkg/errors"
)

// TestTasksRunOnLoop: tasks triggered from many goroutines all run, once
// each, on the loop's goroutine (the counter is not atomic: -race would see
// tasks run concurrently), including a backlog of more than one wake-up's
// worth queued before the loop started; a task returning ErrEngineShutdown
// ends the wait.
func TestTasksRunOnLoop(t *testing.T) {
	hh := newHandshakeHarness(t, 0)
	l := hh.l
	ran := 0
	var seen atomic.Int64 // ran, for this goroutine to watch
	inc := func(any) error { ran++; seen.Store(int64(ran)); return nil }
	const backlog = 3*maxTasksAtOnce + 7 // one eventfd write, four wake-ups' worth
	for i := 0; i < backlog; i++ {
		l.trigger(inc)
	}
	done := make(chan error, 1)
	go func() { done <- l.wait() }()
	// The backlog drains with no further trigger: the loop wakes itself
	// again while tasks are left.
	for deadline := time.Now().Add(10 * time.Second); seen.Load() < backlog; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d queued tasks ran within 10 s", seen.Load(), backlog)
		}
	}

	const producers, each = 8, 500
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				l.trigger(inc)
			}
		}()
	}
	wg.Wait()
	counted := make(chan int, 1)
	l.trigger(func(any) error { counted <- ran; return gerrors.ErrEngineShutdown })
	select {
	case err := <-done:
		if !errors.Is(err, gerrors.ErrEngineShutdown) {
			t.Fatalf("wait returned %v, want ErrEngineShutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the loop did not run its tasks within 10 s")
	}
	// Every task queued before the last one ran before it (one FIFO queue).
	if got, want := <-counted, backlog+producers*each; got != want {
		t.Fatalf("%d tasks ran, want %d", got, want)
	}
}

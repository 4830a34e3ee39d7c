package logq

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// Writer is the process log's io.Writer: Write copies the line into a
// bounded queue and returns at once; one goroutine writes the lines to the
// destination. A stalled destination (a stuck journald, a full pipe) costs
// dropped lines (Dropped), never a blocked caller: the event loops' writer,
// health checkers, the Redis source and the signal handler all log through it.
type Writer struct {
	q   *Queue[[]byte]
	mu  sync.Mutex // the ring has one producer at a time
	r   *Ring[[]byte]
	out *bufio.Writer
	dst io.Writer
}

// NewWriter starts a writer to dst holding up to lines queued lines.
func NewWriter(dst io.Writer, lines int) *Writer {
	w := &Writer{dst: dst, out: bufio.NewWriterSize(dst, 64<<10)}
	w.q = New(Options[[]byte]{Size: lines, Write: w.write, Flush: w.flush})
	w.r = w.q.Ring()
	return w
}

// Write queues a copy of p (one log line); it never blocks on the destination.
func (w *Writer) Write(p []byte) (int, error) {
	b := append([]byte(nil), p...)
	w.mu.Lock()
	w.r.Put(&b)
	w.mu.Unlock()
	return len(p), nil
}

// Dropped returns how many lines were dropped because the queue was full.
func (w *Writer) Dropped() uint64 { return w.q.Dropped() }

func (w *Writer) write(b *[]byte) { _, _ = w.out.Write(*b) }

// flush writes the buffer out; after a failure the buffered lines are
// discarded and later ones get a fresh chance (bufio keeps its first error).
func (w *Writer) flush() {
	if w.out.Flush() != nil {
		w.out.Reset(w.dst)
	}
}

// Close writes what is queued, waiting at most timeout for a slow
// destination (a process must be able to exit with its stderr stalled).
func (w *Writer) Close(timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		w.q.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
	}
}

// Package logq hands log records from event loops to one writer goroutine.
//
// Each producer (an event loop) owns a bounded single-producer ring; putting
// a record copies it into the ring and never blocks, locks or allocates. A
// full ring drops the record and counts it. One writer goroutine drains every
// ring, formats and writes, and flushes once per pass, so a burst costs few
// write syscalls. The writer is woken only when it sleeps: while it is busy
// (or stuck on a stalled pipe) producers do not touch a futex at all.
//
// Both of portier's logs use it: the access log (one record per connection)
// and the engine's event log (rejections, failed connects, ...).
package logq

import (
	"errors"
	"sync"
	"sync/atomic"
)

// Queue is a set of producer rings drained by one writer goroutine.
type Queue[T any] struct {
	size  int
	write func(*T) // formats one record; runs on the writer
	flush func()   // after a pass that wrote records; runs on the writer

	mu    sync.Mutex // serialises Ring (producer registration)
	rings atomic.Pointer[[]*Ring[T]]

	sleeping atomic.Bool   // the writer is (about to be) blocked in select
	wake     chan struct{} // capacity 1
	ctl      chan func()   // run on the writer between records (Do)
	stop     chan struct{}
	done     chan struct{}
	closing  atomic.Bool
	once     sync.Once
	final    func() // after the last drain, on the writer

	lost  atomic.Uint64 // records put after Close began
	wakes atomic.Uint64 // times a producer woke the writer
	cur   T             // the record being written; owned by the writer
}

// Ring is one producer's queue. Put must be called from one goroutine at a time.
type Ring[T any] struct {
	q       *Queue[T]
	buf     []T
	mask    uint64
	tail    atomic.Uint64 // next slot the producer fills
	_       [56]byte      // keep the writer's head off the producer's cache line
	head    atomic.Uint64 // next slot the writer takes
	_       [56]byte
	dropped atomic.Uint64
}

// Options configures New.
type Options[T any] struct {
	// Size is each ring's capacity, rounded up to a power of two (minimum 2).
	Size int
	// Write formats and writes one record on the writer goroutine.
	Write func(*T)
	// Flush runs after each pass of the writer that wrote records.
	Flush func()
	// Final runs once on the writer after Close drained the rings.
	Final func()
}

// New starts the writer goroutine.
func New[T any](o Options[T]) *Queue[T] {
	size := 2
	for size < o.Size {
		size <<= 1
	}
	q := &Queue[T]{size: size, write: o.Write, flush: o.Flush, final: o.Final,
		wake: make(chan struct{}, 1), ctl: make(chan func()), stop: make(chan struct{}), done: make(chan struct{})}
	if q.flush == nil {
		q.flush = func() {}
	}
	empty := []*Ring[T]{}
	q.rings.Store(&empty)
	go q.run()
	return q
}

// Ring registers a new producer ring.
func (q *Queue[T]) Ring() *Ring[T] {
	r := &Ring[T]{q: q, buf: make([]T, q.size), mask: uint64(q.size - 1)}
	q.mu.Lock()
	old := *q.rings.Load()
	rings := append(append(make([]*Ring[T], 0, len(old)+1), old...), r)
	q.rings.Store(&rings)
	q.mu.Unlock()
	return r
}

// Put copies *v into the ring. It never blocks and allocates nothing; when
// the ring is full or the queue closed it drops the record, counts it and
// returns false.
func (r *Ring[T]) Put(v *T) bool {
	q := r.q
	if q.closing.Load() {
		r.dropped.Add(1)
		return false
	}
	t := r.tail.Load()
	if t-r.head.Load() >= uint64(len(r.buf)) {
		r.dropped.Add(1)
		return false
	}
	r.buf[t&r.mask] = *v
	r.tail.Store(t + 1)
	// The writer sets sleeping before its last look at the rings, so either
	// it sees this record or this sees it sleeping (both are seq-cst).
	if q.sleeping.Load() && q.sleeping.CompareAndSwap(true, false) {
		q.wakes.Add(1)
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// Len returns how many records wait in the ring.
func (r *Ring[T]) Len() int { return int(r.tail.Load() - r.head.Load()) }

// Dropped returns how many records this ring dropped.
func (r *Ring[T]) Dropped() uint64 { return r.dropped.Load() }

// Dropped returns how many records every ring dropped.
func (q *Queue[T]) Dropped() uint64 {
	n := q.lost.Load()
	for _, r := range *q.rings.Load() {
		n += r.dropped.Load()
	}
	return n
}

// Wakes returns how many times a producer woke the sleeping writer.
func (q *Queue[T]) Wakes() uint64 { return q.wakes.Load() }

// Pending returns how many records wait in every ring.
func (q *Queue[T]) Pending() int {
	n := 0
	for _, r := range *q.rings.Load() {
		n += r.Len()
	}
	return n
}

// ErrClosed is returned by Do after Close.
var ErrClosed = errors.New("logq: closed")

// Do runs f on the writer goroutine after every record put before Do was
// called has been written, and waits for it. It blocks while the writer is
// stuck on a slow destination.
func (q *Queue[T]) Do(f func()) error {
	ran := make(chan struct{})
	g := func() {
		q.drain()
		f()
		close(ran)
	}
	select {
	case q.ctl <- g:
		<-ran
		return nil
	case <-q.done:
		return ErrClosed
	}
}

// Close stops taking records, writes every record already queued, runs
// Final and stops the writer. Later calls wait for the same end.
func (q *Queue[T]) Close() {
	q.once.Do(func() {
		q.closing.Store(true)
		close(q.stop)
	})
	<-q.done
}

// drain writes what every ring holds; it reports how many records it wrote.
func (q *Queue[T]) drain() int {
	n := 0
	for _, r := range *q.rings.Load() {
		h, t := r.head.Load(), r.tail.Load()
		for ; h != t; h++ {
			// Take the record out first: the slot is free again while the
			// writer formats (or waits on a stalled destination).
			v := &r.buf[h&r.mask]
			q.cur = *v
			var zero T
			*v = zero // drop references (errors, strings) held by the slot
			r.head.Store(h + 1)
			q.write(&q.cur)
			q.cur = zero
			n++
		}
	}
	return n
}

func (q *Queue[T]) run() {
	defer close(q.done)
	for {
		if q.drain() > 0 {
			q.flush()
			select {
			case f := <-q.ctl:
				f()
			default:
			}
			continue
		}
		q.sleeping.Store(true)
		if q.Pending() > 0 {
			q.sleeping.Store(false)
			continue
		}
		select {
		case <-q.wake:
		case f := <-q.ctl:
			f()
		case <-q.stop:
			q.sleeping.Store(false)
			q.drain()
			q.flush()
			if q.final != nil {
				q.final()
			}
			// A Put that passed its closing check just before Close may
			// land after the drain: count it as lost, not written.
			for _, r := range *q.rings.Load() {
				if n := r.Len(); n > 0 {
					q.lost.Add(uint64(n))
					r.head.Store(r.tail.Load())
				}
			}
			return
		}
		q.sleeping.Store(false)
	}
}

// Package routetop finds the routes with the most traffic without a counter
// per route: the event loops hand each ended connection's route name and
// bytes to a bounded queue (package logq, as the logs do: a ring per loop,
// never blocking, no lock, no wake-up of a sleeping reader per connection; a
// full ring drops and counts), and its one reader goroutine counts them per
// window and keeps the top N of the last complete window. Metrics then carry
// at most N route labels however many routes there are.
package routetop

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/portier/portier/logq"
)

// Limits of the configuration.
const (
	MaxN = 100
	// maxNames bounds the distinct names counted in one window; traffic of
	// further names in that window is counted as Other.
	maxNames = 1 << 16
)

// Entry is one route's traffic over a window.
type Entry struct {
	Name      string
	Conns     int64
	BytesUp   int64
	BytesDown int64
}

func (e *Entry) bytes() int64 { return e.BytesUp + e.BytesDown }

type observation struct {
	name     string
	up, down int64
}

// Top counts route traffic per window; see the package comment.
type Top struct {
	n      int
	window time.Duration
	q      *logq.Queue[observation]

	// Owned by the queue's reader goroutine.
	cur      map[string]*Entry
	curOther Entry // traffic of names past maxNames in the current window

	mu      sync.Mutex
	top     []Entry // of the last complete window, most bytes first
	other   Entry   // the rest of that window (Name "")
	lastEnd time.Time
}

// New returns a Top keeping n routes (1..MaxN) over windows of the given
// length; each producer's ring holds queue observations. Its reader
// goroutine runs until Close; Run ends the windows.
func New(n int, window time.Duration, queue int) *Top {
	t := &Top{n: min(max(n, 1), MaxN), window: window, cur: make(map[string]*Entry)}
	t.q = logq.New(logq.Options[observation]{Size: max(queue, 1), Write: t.count})
	return t
}

// Producer is one event loop's queue of observations.
type Producer struct{ r *logq.Ring[observation] }

// Producer returns a new queue for one goroutine (an event loop).
func (t *Top) Producer() *Producer { return &Producer{t.q.Ring()} }

// Observe records an ended connection of route name. It never blocks, takes
// no lock and allocates nothing (name is an existing string); a full ring
// drops the observation and counts it. Call it from one goroutine at a time.
func (p *Producer) Observe(name string, up, down int64) {
	p.r.Put(&observation{name, up, down})
}

// Dropped returns how many observations full rings dropped.
func (t *Top) Dropped() int64 { return int64(t.q.Dropped()) }

// Close stops the reader goroutine.
func (t *Top) Close() { t.q.Close() }

// Window returns the window length.
func (t *Top) Window() time.Duration { return t.window }

// Run ends a window every window length until ctx ends.
func (t *Top) Run(ctx context.Context) {
	tick := time.NewTicker(t.window)
	defer tick.Stop()
	t.run(ctx, tick.C)
}

func (t *Top) run(ctx context.Context, tick <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick:
			// Do drains every ring first: what was queued before the window
			// ended belongs to it.
			if t.q.Do(func() { t.endWindow(now) }) != nil {
				return // closed
			}
		}
	}
}

// count adds one observation to the current window; on the reader goroutine.
func (t *Top) count(o *observation) {
	e := t.cur[o.name]
	if e == nil {
		if len(t.cur) >= maxNames {
			t.curOther.Conns++
			t.curOther.BytesUp += o.up
			t.curOther.BytesDown += o.down
			return
		}
		e = &Entry{Name: o.name}
		t.cur[o.name] = e
	}
	e.Conns++
	e.BytesUp += o.up
	e.BytesDown += o.down
}

// endWindow publishes the current window and starts the next; on the reader.
func (t *Top) endWindow(now time.Time) {
	t.publish(t.cur, t.curOther, now)
	clear(t.cur)
	t.curOther = Entry{}
}

// publish keeps the n entries of cur with the most bytes (then connections,
// then name, for a stable order) and sums the rest into other.
func (t *Top) publish(cur map[string]*Entry, other Entry, now time.Time) {
	all := make([]Entry, 0, len(cur))
	for _, e := range cur {
		all = append(all, *e)
	}
	slices.SortFunc(all, func(a, b Entry) int {
		if a.bytes() != b.bytes() {
			return int(min(max(b.bytes()-a.bytes(), -1), 1))
		}
		if a.Conns != b.Conns {
			return int(min(max(b.Conns-a.Conns, -1), 1))
		}
		return strings.Compare(a.Name, b.Name)
	})
	keep := min(len(all), t.n)
	for _, e := range all[keep:] {
		other.Conns += e.Conns
		other.BytesUp += e.BytesUp
		other.BytesDown += e.BytesDown
	}
	t.mu.Lock()
	t.top, t.other, t.lastEnd = all[:keep:keep], other, now
	t.mu.Unlock()
}

// Snapshot returns the top routes of the last complete window (most bytes
// first), the traffic of every other route in it, and when it ended (zero
// before the first window ends).
func (t *Top) Snapshot() (top []Entry, other Entry, end time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.top), t.other, t.lastEnd
}

// Package routetop finds the routes with the most traffic without a counter
// per route: the event loops hand each ended connection's route name and
// bytes to a bounded queue (never blocking: a full queue drops and counts),
// and one goroutine counts them per window and keeps the top N of the last
// complete window. Metrics then carry at most N route labels however many
// routes there are.
package routetop

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
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
	n       int
	window  time.Duration
	ch      chan observation
	dropped atomic.Int64

	mu      sync.Mutex
	top     []Entry // of the last complete window, most bytes first
	other   Entry   // the rest of that window (Name "")
	lastEnd time.Time
}

// New returns a Top keeping n routes (1..MaxN) over windows of the given
// length, with a queue of queue observations. Run must be running.
func New(n int, window time.Duration, queue int) *Top {
	return &Top{n: min(max(n, 1), MaxN), window: window, ch: make(chan observation, max(queue, 1))}
}

// Observe records an ended connection of route name. It never blocks and
// allocates nothing (name is an existing string); safe on an event loop.
func (t *Top) Observe(name string, up, down int64) {
	select {
	case t.ch <- observation{name, up, down}:
	default:
		t.dropped.Add(1)
	}
}

// Dropped returns how many observations a full queue dropped.
func (t *Top) Dropped() int64 { return t.dropped.Load() }

// Window returns the window length.
func (t *Top) Window() time.Duration { return t.window }

// Run counts until ctx ends.
func (t *Top) Run(ctx context.Context) {
	tick := time.NewTicker(t.window)
	defer tick.Stop()
	t.run(ctx, tick.C)
}

func (t *Top) run(ctx context.Context, tick <-chan time.Time) {
	cur := make(map[string]*Entry)
	var other Entry
	count := func(o observation) {
		e := cur[o.name]
		if e == nil {
			if len(cur) >= maxNames {
				other.Conns++
				other.BytesUp += o.up
				other.BytesDown += o.down
				return
			}
			e = &Entry{Name: o.name}
			cur[o.name] = e
		}
		e.Conns++
		e.BytesUp += o.up
		e.BytesDown += o.down
	}
	for {
		select {
		case <-ctx.Done():
			return
		case o := <-t.ch:
			count(o)
		case now := <-tick:
			// What was queued before the window ended belongs to it.
			for n := len(t.ch); n > 0; n-- {
				count(<-t.ch)
			}
			t.publish(cur, other, now)
			clear(cur)
			other = Entry{}
		}
	}
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

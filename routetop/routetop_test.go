package routetop

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestTopKeepsHeaviest: after a window the snapshot holds the n routes with
// the most bytes, in order, and the rest summed as other.
func TestTopKeepsHeaviest(t *testing.T) {
	top := New(3, time.Hour, 1<<12) // the window is ended by hand
	defer top.Close()
	cur := map[string]*Entry{}
	add := func(name string, up, down int64) {
		e := cur[name]
		if e == nil {
			e = &Entry{Name: name}
			cur[name] = e
		}
		e.Conns++
		e.BytesUp += up
		e.BytesDown += down
	}
	for i := range 100 {
		add(fmt.Sprintf("r%02d.test", i), 10, 0)
	}
	add("big.test", 5000, 5000)
	add("mid.test", 100, 900)
	add("mid.test", 100, 900)
	add("small.test", 600, 0)
	add("r00.test", 0, 400) // 410 in all: below small.test
	top.publish(cur, Entry{Conns: 1, BytesUp: 7}, time.Unix(100, 0))
	got, other, end := top.Snapshot()
	want := []Entry{
		{Name: "big.test", Conns: 1, BytesUp: 5000, BytesDown: 5000},
		{Name: "mid.test", Conns: 2, BytesUp: 200, BytesDown: 1800},
		{Name: "small.test", Conns: 1, BytesUp: 600},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("top %v, want %v", got, want)
	}
	if wantOther := (Entry{Conns: 102, BytesUp: 7 + 1000, BytesDown: 400}); other != wantOther {
		t.Errorf("other %+v, want %+v", other, wantOther)
	}
	if !end.Equal(time.Unix(100, 0)) {
		t.Errorf("end %v", end)
	}
}

// TestTopRun: observations from loop producers reach the snapshot when the
// window ends, an empty window empties it, and a full ring drops and counts
// instead of blocking.
func TestTopRun(t *testing.T) {
	top := New(2, time.Hour, 4)
	defer top.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tick := make(chan time.Time)
	go top.run(ctx, tick)
	// waitWindow waits (without a deadline of its own: the test's applies)
	// until the window ending at sec is published.
	waitWindow := func(sec int64) ([]Entry, Entry) {
		for {
			got, other, end := top.Snapshot()
			if end.Equal(time.Unix(sec, 0)) {
				return got, other
			}
			time.Sleep(time.Millisecond)
		}
	}
	p1, p2 := top.Producer(), top.Producer()
	for range 3 {
		p1.Observe("a.test", 1, 2)
	}
	p2.Observe("b.test", 10, 0)
	tick <- time.Unix(1, 0)
	got, other := waitWindow(1)
	want := []Entry{{Name: "b.test", Conns: 1, BytesUp: 10}, {Name: "a.test", Conns: 3, BytesUp: 3, BytesDown: 6}}
	if fmt.Sprint(got) != fmt.Sprint(want) || other != (Entry{}) {
		t.Errorf("window 1: %v other %v, want %v", got, other, want)
	}
	tick <- time.Unix(2, 0)
	if got, other := waitWindow(2); len(got) != 0 || other != (Entry{}) {
		t.Errorf("empty window 2: %v other %v", got, other)
	}

	// Hold the reader: a ring of 4 then takes 4 and drops 6.
	held, release := make(chan struct{}), make(chan struct{})
	go top.q.Do(func() { close(held); <-release })
	<-held
	for range 10 {
		p1.Observe("c.test", 1, 1)
	}
	if d := top.Dropped(); d != 6 {
		t.Errorf("dropped %d, want 6", d)
	}
	close(release)
	tick <- time.Unix(3, 0)
	if got, _ := waitWindow(3); len(got) != 1 || got[0] != (Entry{Name: "c.test", Conns: 4, BytesUp: 4, BytesDown: 4}) {
		t.Errorf("window 3: %v, want the 4 queued c.test", got)
	}
}

func TestObserveAllocs(t *testing.T) {
	top := New(1, time.Hour, 1)
	defer top.Close()
	p := top.Producer()
	name := "a.test"
	if n := testing.AllocsPerRun(1000, func() { p.Observe(name, 1, 1) }); n != 0 {
		t.Errorf("Observe allocates %v times", n)
	}
}

package logq

import (
	"sync"
	"testing"
	"time"
)

type rec struct {
	producer int
	seq      int
	msg      string
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestOrderAndCount: records of each producer arrive in order, none twice,
// and every record is either written or counted as dropped.
func TestOrderAndCount(t *testing.T) {
	var mu sync.Mutex
	last := map[int]int{}
	written := 0
	var bad []string
	q := New(Options[rec]{Size: 64, Write: func(r *rec) {
		mu.Lock()
		defer mu.Unlock()
		if prev, ok := last[r.producer]; ok && r.seq <= prev {
			bad = append(bad, "out of order")
		}
		last[r.producer] = r.seq
		written++
	}})
	const producers, per = 4, 20000
	var wg sync.WaitGroup
	for p := range producers {
		r := q.Ring()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				v := rec{producer: p, seq: i}
				r.Put(&v)
			}
		}()
	}
	wg.Wait()
	q.Close()
	if len(bad) > 0 {
		t.Fatalf("%d records out of order", len(bad))
	}
	if got := uint64(written) + q.Dropped(); got != producers*per {
		t.Fatalf("written %d + dropped %d = %d, want %d", written, q.Dropped(), got, producers*per)
	}
}

// TestNoWakeWhileBusy: while the writer is busy (here: stuck in a write, as
// on a stalled pipe) producers never signal it; a full ring drops and counts.
func TestNoWakeWhileBusy(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	q := New(Options[rec]{Size: 128, Write: func(r *rec) {
		if r.seq == 0 {
			<-release
		}
	}})
	defer q.Close()
	defer once.Do(func() { close(release) })
	r := q.Ring()
	first := rec{seq: 0}
	r.Put(&first)
	waitFor(t, func() bool { return r.Len() == 0 }, "the writer to take the first record")
	wakes := q.Wakes()
	v := rec{seq: 1}
	for range 1000 {
		r.Put(&v)
	}
	if got := q.Wakes() - wakes; got != 0 {
		t.Errorf("%d wake-ups while the writer was busy, want 0", got)
	}
	if d := r.Dropped(); d != 1000-128 {
		t.Errorf("dropped %d, want %d", d, 1000-128)
	}
	once.Do(func() { close(release) })
	waitFor(t, func() bool { return q.Pending() == 0 }, "the writer to drain")
}

// TestPutAllocs: the hand-off allocates nothing, with room and when full.
// The writer is stuck so its own work cannot count.
func TestPutAllocs(t *testing.T) {
	release := make(chan struct{})
	q := New(Options[rec]{Size: 1024, Write: func(r *rec) {
		if r.seq == 0 {
			<-release
		}
	}})
	defer q.Close()
	defer close(release)
	r := q.Ring()
	first := rec{}
	r.Put(&first)
	waitFor(t, func() bool { return r.Len() == 0 }, "the writer to take the first record")
	v := rec{seq: 1, msg: "hello"}
	if n := testing.AllocsPerRun(500, func() { r.Put(&v) }); n != 0 {
		t.Errorf("Put with room allocates %v times", n)
	}
	for r.Put(&v) {
	}
	if n := testing.AllocsPerRun(500, func() { r.Put(&v) }); n != 0 {
		t.Errorf("Put on a full ring allocates %v times", n)
	}
}

// TestDoAfterQueued: Do runs after the records put before it, and Close
// writes what is queued and refuses later records.
func TestDoAfterQueued(t *testing.T) {
	var got []int
	q := New(Options[rec]{Size: 16, Write: func(r *rec) { got = append(got, r.seq) }})
	r := q.Ring()
	for i := range 10 {
		v := rec{seq: i}
		r.Put(&v)
	}
	var seen int
	if err := q.Do(func() { seen = len(got) }); err != nil {
		t.Fatal(err)
	}
	if seen != 10 {
		t.Errorf("Do ran after %d records, want 10", seen)
	}
	v := rec{seq: 10}
	r.Put(&v)
	q.Close()
	if len(got) != 11 {
		t.Errorf("wrote %d records by Close, want 11", len(got))
	}
	if r.Put(&v) || q.Dropped() != 1 {
		t.Errorf("Put after Close accepted or not counted (dropped %d)", q.Dropped())
	}
	if q.Do(func() {}) != ErrClosed {
		t.Error("Do after Close did not report ErrClosed")
	}
}

// BenchmarkPut: one producer per goroutine, a writer that does nothing.
// wakes/op shows how rarely the writer is signalled.
func BenchmarkPut(b *testing.B) {
	q := New(Options[rec]{Size: 4096, Write: func(*rec) {}})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := q.Ring()
		v := rec{msg: "x"}
		for pb.Next() {
			r.Put(&v)
		}
	})
	b.StopTimer()
	q.Close()
	b.ReportMetric(float64(q.Wakes())/float64(b.N), "wakes/op")
	b.ReportMetric(float64(q.Dropped())/float64(b.N), "dropped/op")
}

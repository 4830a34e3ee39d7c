package redisroutes

import (
	"maps"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
	"github.com/portier/portier/internal/redistest"
)

// deltaRecorder applies what Delta reports on top of the last full publish.
type deltaRecorder struct {
	*recorder
	deltas int
}

func (d *deltaRecorder) delta(set []balancer.RouteSpec, del []string) {
	d.mu.Lock()
	d.deltas++ // under the recorder's lock
	view := maps.Clone(d.last)
	for _, name := range del {
		delete(view, name)
	}
	for _, r := range set {
		view[r.Name] = r.Backends
	}
	d.last = view
	d.mu.Unlock()
	select {
	case d.changed <- struct{}{}:
	default:
	}
}

// TestLiveDeltas: with Options.Delta, keyspace events arrive as deltas (no
// full publish), keys that name the same route are merged, and a resync
// publishes everything again only when it finds a change the deltas missed.
func TestLiveDeltas(t *testing.T) {
	srv := redistest.Start(t)
	redistest.Require(t, "redis-cli")
	c := client(t, srv)
	rpush(t, c, "frontend:a.test", "a", "http://127.0.0.1:9001")
	// The recorder receives the full publishes; Delta applies on top of them.
	d := &deltaRecorder{recorder: newRecorder()}
	var opts Options
	opts.URL = srv.URL()
	opts.Resync = 2 * time.Second
	opts.Delta = func(set []balancer.RouteSpec, del []string) { d.delta(set, del) }
	s, rec, _ := runWith(t, opts, d.recorder)
	rec.wait(t, map[string][]string{"a.test": {"http://127.0.0.1:9001"}}, 3*time.Second)

	steps := []struct {
		name string
		cli  []string
		want map[string][]string
	}{
		{"rpush", []string{"RPUSH", "frontend:a.test", "http://127.0.0.1:9002"},
			map[string][]string{"a.test": {"http://127.0.0.1:9001", "http://127.0.0.1:9002"}}},
		{"new route", []string{"RPUSH", "frontend:b.test", "b", "tls://127.0.0.1:9443"},
			map[string][]string{"a.test": {"http://127.0.0.1:9001", "http://127.0.0.1:9002"}, "b.test": {"tls://127.0.0.1:9443"}}},
		{"second key, same name", []string{"RPUSH", "frontend:B.TEST", "b2", "tls://127.0.0.1:9444"},
			map[string][]string{"a.test": {"http://127.0.0.1:9001", "http://127.0.0.1:9002"}, "b.test": {"tls://127.0.0.1:9444", "tls://127.0.0.1:9443"}}},
		{"del one key of the name", []string{"DEL", "frontend:b.test"},
			map[string][]string{"a.test": {"http://127.0.0.1:9001", "http://127.0.0.1:9002"}, "b.test": {"tls://127.0.0.1:9444"}}},
		{"del last key", []string{"DEL", "frontend:B.TEST"},
			map[string][]string{"a.test": {"http://127.0.0.1:9001", "http://127.0.0.1:9002"}}},
	}
	full, _ := rec.state()
	for _, st := range steps {
		start := time.Now()
		srv.Cli(st.cli...)
		rec.wait(t, st.want, time.Second)
		t.Logf("%s: applied after %v", st.name, time.Since(start))
	}
	if calls, _ := rec.state(); calls != full {
		t.Fatalf("%d full publishes during the changes, want none", calls-full)
	}
	lastSync := s.Status().LastSync
	d.mu.Lock()
	deltas := d.deltas
	d.mu.Unlock()
	if deltas < len(steps) {
		t.Fatalf("%d deltas for %d changes", deltas, len(steps))
	}
	// A resync that finds nothing the deltas missed publishes nothing: the
	// deltas stay overlaid on the table.
	// (Two resyncs: the status changes before the first one decides.)
	for range 2 {
		waitStatus(t, s, "a resync after the deltas", func(st Status) bool { return st.LastSync.After(lastSync) })
		lastSync = s.Status().LastSync
	}
	if calls, _ := rec.state(); calls != full {
		t.Fatalf("%d full publishes at a resync that found nothing new, want none", calls-full)
	}
	// A change the deltas missed (notifications switched off behind the
	// source's back) is published in full by the next resync.
	srv.Cli("CONFIG", "SET", "notify-keyspace-events", "")
	srv.Cli("RPUSH", "frontend:c.test", "c", "http://127.0.0.1:9005")
	want := maps.Clone(steps[len(steps)-1].want)
	want["c.test"] = []string{"http://127.0.0.1:9005"}
	rec.wait(t, want, 5*time.Second)
	if calls, _ := rec.state(); calls != full+1 {
		t.Fatalf("%d full publishes for the missed change, want 1", calls-full)
	}
}

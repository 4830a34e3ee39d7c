package accesslog

import (
	"bufio"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func sample(i int) Record {
	return Record{
		Start:     time.Date(2025, 3, 4, 5, 6, 7, 123000000, time.UTC).Add(time.Duration(i) * time.Second),
		Duration:  1500 * time.Microsecond,
		Listener:  "web",
		Client:    netip.MustParseAddrPort("192.0.2.7:51000"),
		Name:      "app.test",
		ALPN:      "h2",
		Backend:   "127.0.0.1:9001",
		BytesUp:   int64(100 + i),
		BytesDown: 2048,
		Outcome:   "forwarded",
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestJSONLines(t *testing.T) {
	rejected := Record{
		Start: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Duration: 2 * time.Millisecond,
		Listener: "secure", Client: netip.MustParseAddrPort("[2001:db8::1]:443"),
		Name: "nope.test", Outcome: "rejected", Reason: "unknown_name",
	}
	early := Record{Start: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Listener: "web", Outcome: "closed_early"}
	tests := []struct {
		name string
		rec  Record
		want map[string]any
	}{
		{"forwarded", sample(0), map[string]any{
			"msg": "conn", "listener": "web", "client": "192.0.2.7:51000", "name": "app.test", "alpn": "h2",
			"backend": "127.0.0.1:9001", "bytes_up": 100.0, "bytes_down": 2048.0, "duration_ms": 1.5,
			"outcome": "forwarded", "reason": "",
		}},
		{"rejected", rejected, map[string]any{
			"msg": "conn", "listener": "secure", "client": "[2001:db8::1]:443", "name": "nope.test", "alpn": "",
			"backend": "", "bytes_up": 0.0, "bytes_down": 0.0, "duration_ms": 2.0,
			"outcome": "rejected", "reason": "unknown_name",
		}},
		{"no client", early, map[string]any{
			"msg": "conn", "listener": "web", "client": "", "backend": "", "outcome": "closed_early", "duration_ms": 0.0,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "access.log")
			l, err := Open(Options{Path: path})
			if err != nil {
				t.Fatal(err)
			}
			if !l.Log(&tc.rec) {
				t.Fatal("Log returned false on an empty queue")
			}
			if err := l.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			lines := readLines(t, path)
			if len(lines) != 1 {
				t.Fatalf("got %d lines, want 1: %q", len(lines), lines)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
				t.Fatalf("line is not JSON: %v: %s", err, lines[0])
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %#v, want %#v", k, got[k], v)
				}
			}
			for _, k := range []string{"time", "listener", "client", "name", "alpn", "backend", "bytes_up",
				"bytes_down", "duration_ms", "outcome", "reason"} {
				if _, ok := got[k]; !ok {
					t.Errorf("key %q missing: %s", k, lines[0])
				}
			}
			if _, ok := got["level"]; ok {
				t.Errorf("level key present: %s", lines[0])
			}
			ts, err := time.Parse(time.RFC3339Nano, got["time"].(string))
			if err != nil || !ts.Equal(tc.rec.Start) {
				t.Errorf("time = %v (%v), want %v", got["time"], err, tc.rec.Start)
			}
			if l.Written() != 1 || l.Dropped() != 0 {
				t.Errorf("written %d dropped %d, want 1 and 0", l.Written(), l.Dropped())
			}
		})
	}
}

func TestTextFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	l, err := Open(Options{Path: path, Format: "text"})
	if err != nil {
		t.Fatal(err)
	}
	r := sample(0)
	r.Name = "has space.test" // quoted by the text handler
	l.Log(&r)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	if len(lines) != 1 {
		t.Fatalf("got %d lines: %q", len(lines), lines)
	}
	for _, want := range []string{"time=2025-03-04T05:06:07.123Z", "msg=conn", "listener=web", "client=192.0.2.7:51000",
		`name="has space.test"`, "alpn=h2", "backend=127.0.0.1:9001", "bytes_up=100", "bytes_down=2048",
		"duration_ms=1.5", "outcome=forwarded", "reason="} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("line lacks %q: %s", want, lines[0])
		}
	}
	if strings.Contains(lines[0], "level=") {
		t.Errorf("level present: %s", lines[0])
	}
}

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"bad format", Options{Path: filepath.Join(t.TempDir(), "x"), Format: "xml"}, `unknown format "xml"`},
		{"missing dir", Options{Path: filepath.Join(t.TempDir(), "no", "such", "x")}, "accesslog: open"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := Open(tc.opts)
			if err == nil {
				l.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q lacks %q", err, tc.want)
			}
		})
	}
}

// TestOverflowNeverBlocks stalls the writer on a FIFO nobody reads: Log must
// keep returning at once, counting drops, and every record is either written
// or dropped once the reader drains the pipe.
func TestOverflowNeverBlocks(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	// A reader must exist for the writer's open to succeed; it reads nothing yet.
	rd, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	const queue = 16
	l, err := Open(Options{Path: fifo, Queue: queue})
	if err != nil {
		t.Fatal(err)
	}
	// One line larger than the pipe's buffer blocks the writer in write(2).
	big := sample(0)
	big.Name = strings.Repeat("a", 256<<10)
	var accepted atomic.Int64
	if l.Log(&big) {
		accepted.Add(1)
	}
	waitFor(t, func() bool { return l.q.Pending() == 0 }, "writer to take the big record")

	const calls = 2000
	r := sample(1)
	start := time.Now()
	for range calls {
		if l.Log(&r) {
			accepted.Add(1)
		}
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("%d Log calls took %v with a stalled writer", calls, el)
	}
	if got := l.Dropped(); got < calls-queue-1 {
		t.Errorf("Dropped = %d, want at least %d", got, calls-queue-1)
	}
	// The queue is full now: the drop path must not allocate either.
	if n := testing.AllocsPerRun(100, func() { l.Log(&r) }); n != 0 {
		t.Errorf("Log on a full queue allocates %v times", n)
	}

	// Unstall: drain the pipe, then Close must write everything accepted.
	if err := syscall.SetNonblock(int(rd.Fd()), false); err != nil {
		t.Fatal(err)
	}
	lines := make(chan int, 1)
	go func() {
		n := 0
		sc := bufio.NewScanner(rd)
		sc.Buffer(make([]byte, 512<<10), 512<<10)
		for sc.Scan() {
			n++
		}
		lines <- n
	}()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	total := uint64(calls + 1 + 101)
	if w, d := l.Written(), l.Dropped(); w+d != total || int64(w) != accepted.Load() {
		t.Errorf("written %d + dropped %d != %d logged, or written != %d accepted", w, d, total, accepted.Load())
	}
	select {
	case n := <-lines:
		if uint64(n) != l.Written() {
			t.Errorf("reader saw %d lines, Written = %d", n, l.Written())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reader did not see EOF after Close")
	}
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

func TestReopenAfterRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	rotated := path + ".1"
	l, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	before, after := sample(1), sample(2)
	before.Name, after.Name = "before.test", "after.test"
	l.Log(&before)
	// No wait: the record may still be queued or buffered; it belongs to
	// the old file either way because Reopen is handled in queue order.
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatalf("Reopen: %v", err)
	}
	l.Log(&after)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file, want string
	}{{rotated, "before.test"}, {path, "after.test"}} {
		lines := readLines(t, tc.file)
		if len(lines) != 1 || !strings.Contains(lines[0], `"name":"`+tc.want+`"`) {
			t.Errorf("%s: got %q, want one line for %s", filepath.Base(tc.file), lines, tc.want)
		}
	}
	if err := l.Reopen(); err == nil {
		t.Error("Reopen after Close succeeded")
	}
}

func TestReopenConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	l, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	const n = 400
	done := make(chan error, 1)
	go func() {
		for range 20 {
			if err := l.Reopen(); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	r := sample(0)
	for range n {
		for !l.Log(&r) {
			time.Sleep(time.Millisecond)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Reopen: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if lines := readLines(t, path); len(lines) != n {
		t.Fatalf("got %d lines after concurrent reopens, want %d", len(lines), n)
	}
}

func TestCloseDrains(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	const n = 3000
	l, err := Open(Options{Path: path, Queue: n})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		r := sample(i)
		if !l.Log(&r) {
			t.Fatalf("record %d dropped with room in the queue", i)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	if len(lines) != n || l.Written() != n {
		t.Fatalf("got %d lines, Written %d, want %d", len(lines), l.Written(), n)
	}
	for i, line := range lines {
		var got struct {
			BytesUp int `json:"bytes_up"`
		}
		if err := json.Unmarshal([]byte(line), &got); err != nil || got.BytesUp != 100+i {
			t.Fatalf("line %d out of order or bad (%v): %s", i, err, line)
		}
	}
	r := sample(0)
	if l.Log(&r) {
		t.Error("Log after Close accepted the record")
	}
	if l.Dropped() != 1 {
		t.Errorf("Dropped = %d after one Log past Close, want 1", l.Dropped())
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// stalledLog opens a log on a FIFO and blocks its writer in write(2) with a
// line larger than the pipe's buffer, so nothing the writer does (formatting
// allocates) blurs what a producer costs.
func stalledLog(t *testing.T, queue int) *Log {
	t.Helper()
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	rd, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(Options{Path: fifo, Queue: queue})
	if err != nil {
		t.Fatal(err)
	}
	big := sample(0)
	big.Name = strings.Repeat("a", 256<<10)
	l.Log(&big)
	waitFor(t, func() bool { return l.q.Pending() == 0 }, "writer to take the big record")
	t.Cleanup(func() {
		rd.Close() // the writer's write fails with EPIPE and Close returns
		_ = l.Close()
	})
	return l
}

// TestLogAllocs measures a loop's hand-off (Producer.Log), with room in its
// queue and with the queue full.
func TestLogAllocs(t *testing.T) {
	l := stalledLog(t, 1024)
	p := l.Producer()
	r := sample(0)
	if n := testing.AllocsPerRun(500, func() { p.Log(&r) }); n != 0 {
		t.Errorf("Producer.Log with room in the queue allocates %v times", n)
	}
	if got := p.r.Len(); got != 501 {
		t.Fatalf("queued %d, want 501", got)
	}
	for p.Log(&r) {
	}
	d := l.Dropped()
	if n := testing.AllocsPerRun(500, func() { p.Log(&r) }); n != 0 {
		t.Errorf("Producer.Log on a full queue allocates %v times", n)
	}
	if got := l.Dropped() - d; got != 501 {
		t.Errorf("Dropped grew by %d, want 501", got)
	}
}

// BenchmarkLog measures Producer.Log from parallel loops with the real writer
// appending to a file. allocs/op includes the writer's formatting, amortised
// per record; the caller's part allocates nothing (TestLogAllocs).
func BenchmarkLog(b *testing.B) {
	l, err := Open(Options{Path: filepath.Join(b.TempDir(), "access.log")})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		p := l.Producer()
		r := sample(0)
		for pb.Next() {
			p.Log(&r)
		}
	})
	b.StopTimer()
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(l.Dropped())/float64(b.N), "dropped/op")
}

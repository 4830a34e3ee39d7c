package eventlog

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

type buf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *buf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *buf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func sample() Event {
	return Event{Level: slog.LevelWarn, Kind: 3, Msg: "rejected", Listener: "web",
		Client: netip.MustParseAddrPort("192.0.2.1:4000"), Reason: "no route for this name",
		Detail: errors.New("boom"), Status: 404}
}

func TestFormat(t *testing.T) {
	var out buf
	l := New(slog.NewTextHandler(&out, nil), Options{})
	p := l.Producer()
	e := sample()
	e.SetName([]byte("unknown.test"))
	p.Log(&e)
	l.Close()
	got := out.String()
	for _, want := range []string{`level=WARN msg=rejected listener=web client=192.0.2.1:4000 reason="no route for this name" name=unknown.test detail=boom status=404`} {
		if !strings.Contains(got, want) {
			t.Errorf("line %q lacks %q", got, want)
		}
	}
}

// TestSuppression: past Burst events of one kind in a second, the rest are
// counted and summarised in one line once the second is over; other kinds
// are not affected.
func TestSuppression(t *testing.T) {
	var out buf
	l := New(slog.NewTextHandler(&out, nil), Options{Burst: 5})
	p := l.Producer()
	// Start at the beginning of a second so all 100 fall into one (the
	// loop below takes microseconds).
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	e := sample()
	for range 100 {
		p.Log(&e)
	}
	other := sample()
	other.Kind, other.Msg = 4, "backend connect failed"
	p.Log(&other)
	if s := l.Suppressed(); s != 95 {
		t.Fatalf("Suppressed = %d, want 95", s)
	}
	p.Tick(time.Now()) // same second: nothing yet
	p.Tick(time.Now().Add(time.Second))
	l.Close()
	got := out.String()
	if n := strings.Count(got, "msg=rejected"); n != 5 {
		t.Errorf("%d rejected lines, want 5:\n%s", n, got)
	}
	if !strings.Contains(got, `msg="95 similar lines suppressed in the last second" like=rejected listener=web reason="no route for this name"`) {
		t.Errorf("no summary line:\n%s", got)
	}
	if !strings.Contains(got, `msg="backend connect failed"`) {
		t.Errorf("another kind was suppressed too:\n%s", got)
	}
}

// TestLogAllocs: the loop's side allocates nothing, whether it queues,
// suppresses or drops (the writer is blocked so its formatting cannot count).
func TestLogAllocs(t *testing.T) {
	block := make(chan struct{})
	l := New(blockingHandler{block}, Options{Queue: 64, Burst: -1})
	defer l.Close()
	defer close(block)
	p := l.Producer()
	e := sample()
	e.SetName([]byte("unknown.test"))
	p.Log(&e) // the writer takes it and blocks in the handler
	for deadline := time.Now().Add(5 * time.Second); l.Pending() > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("writer did not take the first event")
		}
	}
	if n := testing.AllocsPerRun(30, func() { p.Log(&e) }); n != 0 {
		t.Errorf("Log allocates %v times", n)
	}
	for range 100 {
		p.Log(&e)
	}
	if l.Dropped() == 0 {
		t.Fatal("nothing dropped with the writer blocked")
	}
	if n := testing.AllocsPerRun(100, func() { p.Log(&e) }); n != 0 {
		t.Errorf("Log on a full ring allocates %v times", n)
	}
	p.l.burst = 1
	if n := testing.AllocsPerRun(100, func() { p.Log(&e) }); n != 0 {
		t.Errorf("suppressed Log allocates %v times", n)
	}
}

type blockingHandler struct{ c chan struct{} }

func (h blockingHandler) Enabled(ctx context.Context, l slog.Level) bool { return true }
func (h blockingHandler) Handle(ctx context.Context, r slog.Record) error {
	<-h.c
	return nil
}
func (h blockingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h blockingHandler) WithGroup(string) slog.Handler      { return h }

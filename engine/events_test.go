package engine

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
	"github.com/portier/portier/eventlog"
)

// stuckHandler blocks the event log's writer, as a stalled stderr pipe does.
type stuckHandler struct{ release chan struct{} }

func (h stuckHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h stuckHandler) Handle(context.Context, slog.Record) error {
	<-h.release
	return nil
}
func (h stuckHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h stuckHandler) WithGroup(string) slog.Handler      { return h }

// TestLogOnLoopAllocs: what a loop does to log a rejection or a failed
// backend (fill the scratch event, hand it to its queue) allocates nothing,
// whether the line is queued, suppressed or dropped because the writer is stuck.
func TestLogOnLoopAllocs(t *testing.T) {
	h := stuckHandler{make(chan struct{})}
	table, err := balancer.NewTable(context.Background(), nil, "", balancer.TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Options{
		Listeners: []ListenerSpec{{Name: "web", Address: "127.0.0.1:0", Scheme: balancer.SchemeHTTP}},
		Router:    balancer.NewRouter(table), Loops: 1, Logger: slog.New(h), LogQueue: 256,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	defer close(h.release)
	l := e.loops[0]
	c := &conn{ln: l.lns[0].ln, remote: netip.MustParseAddrPort("192.0.2.7:5555")}
	name := []byte("unknown.example")
	b := &balancer.Backend{AddrText: "127.0.0.1:9"}
	l.logRejected(c, rejUnknownName, name, nil, 404, 0) // the writer takes it and sticks
	for deadline := time.Now().Add(5 * time.Second); e.events.Pending() > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the writer did not take the first line")
		}
	}
	for _, tc := range []struct {
		what string
		f    func()
	}{
		{"rejection", func() { l.logRejected(c, rejUnknownName, name, nil, 404, 0) }},
		{"framing stop", func() { l.logRejected(c, rejBadFraming, nil, errConnectTimeout, 400, 0) }},
		{"backend failure", func() { l.logBackendFailed(c, b, "backend connect failed", errConnectTimeout) }},
	} {
		if n := testing.AllocsPerRun(1000, tc.f); n != 0 {
			t.Errorf("logging a %s on the loop allocates %v times", tc.what, n)
		}
	}
	if e.LogSuppressed() == 0 && e.LogDropped() == 0 {
		t.Error("3000 lines within a second were neither suppressed nor dropped")
	}
}

func newTestEvents() *eventlog.Log { return eventlog.New(slog.DiscardHandler, eventlog.Options{}) }

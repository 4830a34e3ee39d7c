package engine

import (
	"log/slog"

	"github.com/portier/portier/balancer"
	"github.com/portier/portier/eventlog"
)

// Event kinds: lines of one kind are "similar" for the event log's
// suppression. Rejections use their Reason.
const (
	kindBackendFailed = uint8(NumReasons) + iota
	kindAcceptFailed
	kindAcceptPaused
	kindLoopStopped
	kindPollFailed
)

// event starts the loop's scratch event; the caller fills it and calls logEvent.
func (l *loop) event(level slog.Level, kind uint8, msg string) *eventlog.Event {
	l.evt = eventlog.Event{Level: level, Kind: kind, Msg: msg}
	return &l.evt
}

// logEvent hands the scratch event to the writer: no formatting, no
// allocation, no write(2) on the loop.
func (l *loop) logEvent() { l.ev.Log(&l.evt) }

// logRejected logs a rejection of client c: its answer (HTTP status or TLS
// alert, 0 for none), the name it asked for (nil if beside the point) and
// the cause (may be nil).
func (l *loop) logRejected(c *conn, r *rejection, name []byte, cause error, status, alert int) {
	l.logRejectedReason(c, uint8(r.code), r.reason, name, cause, status, alert)
}

func (l *loop) logRejectedReason(c *conn, kind uint8, reason string, name []byte, cause error, status, alert int) {
	e := l.event(slog.LevelWarn, kind, "rejected")
	e.Listener, e.Client, e.Reason = c.ln.spec.Name, c.remote, reason
	e.Detail, e.Status, e.Alert = cause, status, alert
	if name != nil {
		e.SetName(name)
	}
	l.logEvent()
}

// logBackendFailed logs a failed backend b of client c.
func (l *loop) logBackendFailed(c *conn, b *balancer.Backend, msg string, err error) {
	e := l.event(slog.LevelWarn, kindBackendFailed, msg)
	e.Client, e.Backend, e.Err = c.remote, b.AddrText, err
	if c.pool != nil {
		e.Route = c.pool.Name
	}
	l.logEvent()
}

// logLoop logs a problem of the loop itself.
func (l *loop) logLoop(level slog.Level, kind uint8, msg, listener string, err error) {
	e := l.event(level, kind, msg)
	e.Listener, e.Err, e.Loop, e.ShowLoop = listener, err, l.id, true
	l.logEvent()
}

// LogDropped returns how many event log lines were lost because a loop's
// queue was full (the writer could not keep up or its output is stalled).
func (e *Engine) LogDropped() uint64 { return e.events.Dropped() }

// LogSuppressed returns how many event log lines were summarised as
// "N similar lines suppressed".
func (e *Engine) LogSuppressed() uint64 { return e.events.Suppressed() }

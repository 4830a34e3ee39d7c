// Package eventlog is the event loops' log: rejections, failed backend
// connects, dropped PROXY connections, stopped framing, handshake timeouts.
//
// A loop fills a small Event (static strings, addresses, error values; no
// formatting) and hands it to its Producer, which copies it into the loop's
// bounded ring (package logq): no lock, no allocation, no write(2), and no
// wake-up of the writer unless it sleeps. One writer goroutine formats the
// events with the process's slog.Handler. A full ring drops and counts
// (Dropped). More than Burst events of one kind within a second on one loop
// are not queued at all: they are counted, and one line "N similar lines
// suppressed in the last second" follows when the second ends, so a flood of
// bad requests costs a counter, not a line per connection.
package eventlog

import (
	"context"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portier/portier/logq"
)

// MaxKinds bounds Event.Kind: kinds are small integers chosen by the caller.
const MaxKinds = 32

// MaxName is how much of a requested name an event keeps.
const MaxName = 255

// Event is one log line before formatting. Empty fields are left out.
type Event struct {
	Time  time.Time // set by Producer.Log
	Level slog.Level
	// Kind groups events for suppression: lines of one kind are "similar".
	Kind     uint8
	Msg      string
	Listener string
	Client   netip.AddrPort
	Reason   string
	Route    string
	Backend  string
	Detail   error // logged as "detail"
	Err      error // logged as "err"
	Status   int   // HTTP status answered
	Alert    int   // TLS alert sent
	Loop     int   // logged when ShowLoop is set
	ShowLoop bool

	name    [MaxName]byte
	nameLen uint8
	// suppressed > 0 makes this event the summary of that many suppressed
	// events of its kind.
	suppressed uint32
}

// SetName copies name (a requested host name) into the event, truncated to MaxName bytes.
func (e *Event) SetName(name []byte) { e.nameLen = uint8(copy(e.name[:], name)) }

// Options configures New.
type Options struct {
	// Queue is each loop's ring size (default 1024 events).
	Queue int
	// Burst is how many events of one kind a loop logs per second before
	// it suppresses the rest of that second (default 10; <0: no limit).
	Burst int
}

// Log is the writer side: one goroutine formatting every loop's events.
type Log struct {
	h       slog.Handler
	q       *logq.Queue[Event]
	burst   uint32
	written atomic.Uint64

	mu        sync.Mutex
	producers []*Producer
}

// New starts the writer, which formats events with h.
func New(h slog.Handler, o Options) *Log {
	if o.Queue <= 0 {
		o.Queue = 1024
	}
	switch {
	case o.Burst == 0:
		o.Burst = 10
	case o.Burst < 0:
		o.Burst = 1 << 30
	}
	l := &Log{h: h, burst: uint32(o.Burst)}
	l.q = logq.New(logq.Options[Event]{Size: o.Queue, Write: l.write})
	return l
}

// Close writes what is queued and stops the writer.
func (l *Log) Close() { l.q.Close() }

// Dropped returns how many events were lost because a loop's ring was full.
func (l *Log) Dropped() uint64 { return l.q.Dropped() }

// Suppressed returns how many events were summarised instead of logged.
func (l *Log) Suppressed() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n uint64
	for _, p := range l.producers {
		n += p.suppressed.Load()
	}
	return n
}

// Written returns how many lines the writer handed to the handler.
func (l *Log) Written() uint64 { return l.written.Load() }

// Pending returns how many events wait for the writer.
func (l *Log) Pending() int { return l.q.Pending() }

// Producer is one loop's side. Only that loop may call its methods.
type Producer struct {
	l       *Log
	r       *logq.Ring[Event]
	win     [MaxKinds]window
	pending uint32 // bit k: kind k has suppressed events to report
	sum     Event  // scratch for summaries
	// suppressed is per producer so that a flood on several loops does
	// not bounce one counter's cache line between them.
	suppressed atomic.Uint64
}

// window counts one kind's events in the current second.
type window struct {
	sec        int64
	n          uint32
	suppressed uint32
	msg        string // of the last suppressed event, for the summary
	reason     string
	listener   string
	level      slog.Level
}

// Producer returns a new producer for one loop.
func (l *Log) Producer() *Producer {
	p := &Producer{l: l, r: l.q.Ring()}
	l.mu.Lock()
	l.producers = append(l.producers, p)
	l.mu.Unlock()
	return p
}

// Log stamps e, applies the per-kind limit and queues a copy of e. It
// never blocks and allocates nothing; e may be reused at once.
func (p *Producer) Log(e *Event) {
	e.Time = time.Now()
	k := e.Kind % MaxKinds
	w := &p.win[k]
	sec := e.Time.Unix()
	if w.sec != sec {
		p.summarise(k, w)
		w.sec, w.n = sec, 0
	}
	if w.n >= p.l.burst {
		w.suppressed++
		w.msg, w.reason, w.listener, w.level = e.Msg, e.Reason, e.Listener, e.Level
		p.pending |= 1 << k
		p.suppressed.Add(1)
		return
	}
	w.n++
	p.r.Put(e)
}

// Tick reports suppressed events whose second has ended. The loop calls it
// from its timer tick, so a summary follows the end of a flood promptly.
func (p *Producer) Tick(now time.Time) {
	if p.pending == 0 {
		return
	}
	sec := now.Unix()
	for k := uint8(0); k < MaxKinds; k++ {
		if w := &p.win[k]; p.pending&(1<<k) != 0 && w.sec != sec {
			p.summarise(k, w)
		}
	}
}

func (p *Producer) summarise(k uint8, w *window) {
	if w.suppressed == 0 {
		return
	}
	p.sum = Event{Time: time.Now(), Level: w.level, Kind: k, Msg: w.msg, Reason: w.reason,
		Listener: w.listener, suppressed: w.suppressed}
	p.r.Put(&p.sum)
	w.suppressed = 0
	p.pending &^= 1 << k
}

// write formats one event on the writer goroutine.
func (l *Log) write(e *Event) {
	ctx := context.Background()
	if !l.h.Enabled(ctx, e.Level) {
		return
	}
	msg := e.Msg
	if e.suppressed > 0 {
		msg = strconv.FormatUint(uint64(e.suppressed), 10) + " similar lines suppressed in the last second"
	}
	rec := slog.NewRecord(e.Time, e.Level, msg, 0)
	if e.suppressed > 0 {
		rec.AddAttrs(slog.String("like", e.Msg))
	}
	if e.Listener != "" {
		rec.AddAttrs(slog.String("listener", e.Listener))
	}
	if e.Client.IsValid() {
		rec.AddAttrs(slog.String("client", e.Client.String()))
	}
	if e.Route != "" {
		rec.AddAttrs(slog.String("route", e.Route))
	}
	if e.Backend != "" {
		rec.AddAttrs(slog.String("backend", e.Backend))
	}
	if e.Reason != "" {
		rec.AddAttrs(slog.String("reason", e.Reason))
	}
	if e.nameLen > 0 {
		rec.AddAttrs(slog.String("name", string(e.name[:e.nameLen])))
	}
	if e.Detail != nil {
		rec.AddAttrs(slog.String("detail", e.Detail.Error()))
	}
	if e.Err != nil {
		rec.AddAttrs(slog.String("err", e.Err.Error()))
	}
	if e.Status != 0 {
		rec.AddAttrs(slog.Int("status", e.Status))
	}
	if e.Alert != 0 {
		rec.AddAttrs(slog.Int("alert", e.Alert))
	}
	if e.ShowLoop {
		rec.AddAttrs(slog.Int("loop", e.Loop))
	}
	if l.h.Handle(ctx, rec) == nil {
		l.written.Add(1)
	}
}

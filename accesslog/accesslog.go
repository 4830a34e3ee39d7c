// Package accesslog writes one structured line per connection when it ends.
//
// Each event loop puts records into its own bounded ring (Producer, package
// logq); Put only copies the record and never blocks: a slow disk or a
// stalled pipe costs dropped lines (counted), never a stalled loop. One writer
// goroutine formats the lines with log/slog and flushes its buffer after each
// pass over the rings, so a burst is written in few syscalls and a quiet
// period leaves nothing unwritten.
package accesslog

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portier/portier/logq"
)

// Record describes one finished connection.
type Record struct {
	Start     time.Time
	Duration  time.Duration
	Listener  string
	Client    netip.AddrPort
	Name      string // Host or SNI, "" when none was read
	ALPN      string
	Backend   string // backend "ip:port", or "" when none was connected
	BytesUp   int64  // client -> backend
	BytesDown int64  // backend -> client
	Outcome   string // "forwarded", "rejected", "closed_early", "idle_timeout", "shutdown"
	Reason    string // rejection reason, or ""
}

// Options configures Open.
type Options struct {
	// Path is "" or "-" for stdout, "stderr" for stderr, otherwise a file
	// opened for appending (created 0644 when missing).
	Path string
	// Format is "json" (default) or "text".
	Format string
	// Queue is how many records may wait for the writer per producer (each
	// event loop has its own queue; default 8192).
	Queue int
}

// DefaultQueue is the queue length used when Options.Queue is not positive.
const DefaultQueue = 8192

// bufSize is the writer's buffer: large enough that a burst of lines costs
// few write syscalls.
const bufSize = 64 << 10

// Log is an asynchronous access log. Log may be called from any goroutine;
// Reopen and Close too.
type Log struct {
	path string
	q    *logq.Queue[Record]
	err  error // the writer's final flush/close error, read after Close

	// shared is the ring of Log, for callers without their own Producer.
	sharedMu sync.Mutex
	shared   *logq.Ring[Record]

	written atomic.Uint64

	isFile bool // Path names a file (not stdout or stderr)

	// Owned by the writer goroutine (and by Open before it starts).
	file      *os.File  // nil for stdout/stderr, which are never closed
	w         io.Writer // what out writes to
	writeErrs uint64    // failed flushes, for the final error
	out       *bufio.Writer
	handler   slog.Handler
}

// Open opens the destination and starts the writer goroutine.
func Open(opts Options) (*Log, error) {
	var textFormat bool
	switch opts.Format {
	case "", "json":
	case "text":
		textFormat = true
	default:
		return nil, fmt.Errorf("accesslog: unknown format %q (want json or text)", opts.Format)
	}
	queue := opts.Queue
	if queue <= 0 {
		queue = DefaultQueue
	}
	l := &Log{path: opts.Path}
	var w io.Writer
	switch opts.Path {
	case "", "-":
		w = os.Stdout
	case "stderr":
		w = os.Stderr
	default:
		f, err := openFile(opts.Path)
		if err != nil {
			return nil, err
		}
		l.file, w, l.isFile = f, f, true
	}
	l.w = w
	l.out = bufio.NewWriterSize(w, bufSize)
	hopts := &slog.HandlerOptions{ReplaceAttr: dropLevel}
	if textFormat {
		l.handler = slog.NewTextHandler(l.out, hopts)
	} else {
		l.handler = slog.NewJSONHandler(l.out, hopts)
	}
	l.q = logq.New(logq.Options[Record]{Size: queue, Write: l.write, Flush: l.flush, Final: l.final})
	l.shared = l.q.Ring()
	return l, nil
}

// Producer is one event loop's queue of records.
type Producer struct{ r *logq.Ring[Record] }

// Producer returns a new queue for one goroutine (an event loop): its Log
// takes no lock.
func (l *Log) Producer() *Producer { return &Producer{l.q.Ring()} }

// Log queues a copy of r. It never blocks and allocates nothing: when the
// queue is full (or the log is closed) the record is dropped, counted in
// Dropped, and Log returns false. Call it from one goroutine at a time.
func (p *Producer) Log(r *Record) bool { return p.r.Put(r) }

func openFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("accesslog: open %s: %w", path, err)
	}
	return f, nil
}

// dropLevel removes the level key: every access log line has the same one.
func dropLevel(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.LevelKey {
		return slog.Attr{}
	}
	return a
}

// Log queues a copy of r for writing from any goroutine (through one shared
// queue and a mutex; the event loops use their own Producer instead). It
// never blocks on the writer: when the queue is full (or the log is closed)
// the record is dropped, counted in Dropped, and Log returns false.
func (l *Log) Log(r *Record) bool {
	l.sharedMu.Lock()
	ok := l.shared.Put(r)
	l.sharedMu.Unlock()
	return ok
}

// Dropped returns how many records were dropped because a queue was full.
func (l *Log) Dropped() uint64 { return l.q.Dropped() }

// Written returns how many records were formatted into the output.
func (l *Log) Written() uint64 { return l.written.Load() }

// Reopen makes the writer write what is queued, flush and close the current
// file and open Path again: after logrotate has renamed the file, records
// logged after Reopen returns go to a new file at Path. The old file is kept when opening the new one fails. A no-op for
// stdout and stderr. Safe for concurrent use; it waits for the writer, so it
// blocks while the writer is stuck on a slow destination.
func (l *Log) Reopen() error {
	if !l.isFile {
		return nil
	}
	var err error
	if l.q.Do(func() { err = l.doReopen() }) != nil {
		return errors.New("accesslog: reopen: log is closed")
	}
	return err
}

// Close stops accepting records, writes every record already queued, flushes
// and closes the file. Later calls return the same error.
func (l *Log) Close() error {
	l.q.Close()
	return l.err
}

// final runs on the writer after the last records were written.
func (l *Log) final() {
	if err := l.out.Flush(); err != nil {
		l.err = fmt.Errorf("accesslog: flush %s: %w", l.path, err)
	} else if l.writeErrs > 0 {
		l.err = fmt.Errorf("accesslog: %s: %d earlier flushes failed", l.path, l.writeErrs)
	}
	if l.file != nil {
		if err := l.file.Close(); err != nil && l.err == nil {
			l.err = fmt.Errorf("accesslog: close %s: %w", l.path, err)
		}
	}
}

// flush writes the buffer out. bufio.Writer keeps its first error forever,
// so after a failure (a full disk, a closed pipe) the buffered lines are
// discarded and later lines get a fresh chance instead of failing until
// Reopen.
func (l *Log) flush() {
	if err := l.out.Flush(); err != nil {
		l.writeErrs++
		l.out.Reset(l.w)
	}
}

func (l *Log) doReopen() error {
	f, err := openFile(l.path)
	if err != nil {
		return err
	}
	// Records queued before Reopen was called were written by Do before
	// this: they belong to the old file.
	flushErr := l.out.Flush()
	closeErr := l.file.Close()
	l.file, l.w = f, f
	l.out.Reset(f) // also clears a sticky write error of the old file
	if flushErr != nil {
		return fmt.Errorf("accesslog: reopen: flush old %s: %w", l.path, flushErr)
	}
	if closeErr != nil {
		return fmt.Errorf("accesslog: reopen: close old %s: %w", l.path, closeErr)
	}
	return nil
}

// write formats one record. The time is the connection's start; the line is
// written when it ends, so start + duration_ms gives the end.
func (l *Log) write(r *Record) {
	client := ""
	if r.Client.IsValid() {
		client = r.Client.String()
	}
	rec := slog.NewRecord(r.Start, slog.LevelInfo, "conn", 0)
	rec.AddAttrs(
		slog.String("listener", r.Listener),
		slog.String("client", client),
		slog.String("name", r.Name),
		slog.String("alpn", r.ALPN),
		slog.String("backend", r.Backend),
		slog.Int64("bytes_up", r.BytesUp),
		slog.Int64("bytes_down", r.BytesDown),
		slog.Float64("duration_ms", float64(r.Duration.Microseconds())/1000),
		slog.String("outcome", r.Outcome),
		slog.String("reason", r.Reason),
	)
	if err := l.handler.Handle(context.Background(), rec); err == nil {
		l.written.Add(1)
	}
}

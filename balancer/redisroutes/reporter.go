package redisroutes

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// HealthReporter publishes this proxy's health changes to the fleet from one
// goroutine, so that reports of one address reach Redis in the order they
// were made (a goroutine per report could land a "down" after a later "up")
// and a mass change of 10,000 backends costs one goroutine, not 10,000.
// Changes that arrive while a report is in flight are coalesced to the
// latest state of each address.
type HealthReporter struct {
	src *Source
	ttl time.Duration
	log *slog.Logger

	mu      sync.Mutex
	pending map[string]bool // address -> down, latest first
	order   []string        // addresses of pending, in first-report order
	wake    chan struct{}
}

// NewHealthReporter returns a reporter; run it with Run. Down reports set a
// key expiring after ttl, so that a report lapses if its author dies.
func (s *Source) NewHealthReporter(ttl time.Duration) *HealthReporter {
	return &HealthReporter{src: s, ttl: ttl, log: s.log, pending: make(map[string]bool), wake: make(chan struct{}, 1)}
}

// Report queues addr's new state. It never blocks.
func (r *HealthReporter) Report(addr string, down bool) {
	r.mu.Lock()
	if _, ok := r.pending[addr]; !ok {
		r.order = append(r.order, addr)
	}
	r.pending[addr] = down
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run sends queued reports until ctx is done.
func (r *HealthReporter) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		r.mu.Lock()
		batch, order := r.pending, r.order
		r.pending, r.order = make(map[string]bool), nil
		r.mu.Unlock()
		for _, addr := range order {
			down := batch[addr]
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := r.src.ReportHealth(rctx, addr, down, r.ttl)
			cancel()
			if err != nil && ctx.Err() == nil {
				r.log.Warn("fleet health report failed", "addr", addr, "down", down, "err", err)
			}
		}
	}
}

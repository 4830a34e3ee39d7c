package balancer

import (
	"context"
	"time"
)

// Backends without a checker goroutine (check: none, or before Run starts
// the checks) still change state passively: connect failures take them
// down until a deadline, a success brings them back. One goroutine per
// Health reports those changes (log line, OnChange) and the expiry of the
// deadlines, so `check: none` costs no goroutine per backend. Routing never
// waits for it: Backend.Up reads an expired deadline as up.

// passiveChanged hands a passive change of s (which has no checker) to the
// passive goroutine.
func (h *Health) passiveChanged(s *backendState) {
	h.pmu.Lock()
	h.ppending[s] = struct{}{}
	h.pmu.Unlock()
	select {
	case h.pwake <- struct{}{}:
	default:
	}
}

// runPassive is the passive goroutine; Run runs it until ctx is done.
func (h *Health) runPassive(ctx context.Context) {
	defer h.wg.Done()
	timed := make(map[*backendState]struct{}) // down until a deadline
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.pwake:
		case <-t.C:
		}
		h.pmu.Lock()
		batch := h.ppending
		h.ppending = make(map[*backendState]struct{})
		h.pmu.Unlock()
		for s := range batch {
			timed[s] = struct{}{}
		}
		next := time.Hour
		now := nanotime()
		for s := range timed {
			d := s.down.Load()
			switch {
			case d == 0 || d == downHeld:
				delete(timed, s)
			case now >= d:
				if s.down.CompareAndSwap(d, 0) {
					s.reason.Store(&reasonTimeout)
				}
				delete(timed, s)
			default:
				next = min(next, time.Duration(d-now)+time.Millisecond)
			}
			s.reconcile()
		}
		t.Reset(next)
	}
}

package balancer

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// MaxRouteMetrics caps the routes with per-route metrics (RouteSpec.Metrics):
// each is a label value in every scrape, and a million of them would be a
// cardinality bomb.
const MaxRouteMetrics = 1000

// RouteStats are the traffic counters of one route with per-route metrics,
// added by the event loops when a connection ends.
type RouteStats struct {
	Name      string
	Conns     atomic.Int64
	BytesUp   atomic.Int64 // client to backend
	BytesDown atomic.Int64
}

// Ended counts one connection of the route that has ended. Allocates nothing.
func (s *RouteStats) Ended(up, down int64) {
	s.Conns.Add(1)
	s.BytesUp.Add(up)
	s.BytesDown.Add(down)
}

// RouteStatsSet holds the RouteStats of routes with per-route metrics by
// name, across the tables built with it: counters survive reloads and
// route updates. A name stays in the set once it had metrics on (until the
// process restarts), so that its counters never go backwards.
type RouteStatsSet struct {
	mu     sync.Mutex
	byName map[string]*RouteStats
}

// NewRouteStatsSet returns an empty set.
func NewRouteStatsSet() *RouteStatsSet {
	return &RouteStatsSet{byName: make(map[string]*RouteStats)}
}

// forRoute returns the stats of route name when on, creating them; nil when
// off, when s is nil, or when the set is full (MaxRouteMetrics).
func (s *RouteStatsSet) forRoute(name string, on bool) *RouteStats {
	if s == nil || !on {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.byName[name]
	if st == nil && len(s.byName) < MaxRouteMetrics {
		st = &RouteStats{Name: name}
		s.byName[name] = st
	}
	return st
}

// All returns the stats in the set, sorted by name.
func (s *RouteStatsSet) All() []*RouteStats {
	s.mu.Lock()
	out := make([]*RouteStats, 0, len(s.byName))
	for _, st := range s.byName {
		out = append(out, st)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b *RouteStats) int { return strings.Compare(a.Name, b.Name) })
	return out
}

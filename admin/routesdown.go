package admin

import (
	"sync"
	"time"

	"github.com/portier/portier/balancer"
)

// routesDownTTL bounds how often routesDown walks the table: with a million
// routes a walk takes a noticeable fraction of a second, and an alert on
// "every backend of a route down" waits a minute anyway.
const routesDownTTL = 5 * time.Second

// routesDownCache remembers the last count per table.
type routesDownCache struct {
	mu    sync.Mutex
	table *balancer.Table
	at    time.Time
	n     int
}

// get returns the number of t's routes none of whose backends is up,
// recounted when t changed or the last count is older than routesDownTTL.
func (c *routesDownCache) get(t *balancer.Table, now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t == c.table && now.Sub(c.at) < routesDownTTL {
		return c.n
	}
	c.table, c.at, c.n = t, now, routesDown(t)
	return c.n
}

// routesDown counts the routes of t with no backend up (draining ones
// count as up: they still serve their open connections). One count per
// name, whatever its schemes.
func routesDown(t *balancer.Table) int {
	if t == nil {
		return 0
	}
	byURL := backendsByURL(t)
	n := 0
	t.EachRoute(func(r *balancer.RouteSpec) bool {
		for _, raw := range r.Backends {
			if b := byURL[raw]; b != nil && b.Up() {
				return true
			}
		}
		n++
		return true
	})
	return n
}

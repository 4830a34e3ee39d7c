package admin

import (
	"context"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
)

// TestRoutesDown counts the routes with no backend up, and the cache
// recounts after routesDownTTL or for another table.
func TestRoutesDown(t *testing.T) {
	routes := []balancer.RouteSpec{
		{Name: "one.test", Backends: []string{"http://127.0.0.1:1"}},
		{Name: "two.test", Backends: []string{"http://127.0.0.1:1", "http://127.0.0.1:2"}},
		{Name: "mixed.test", Backends: []string{"http://127.0.0.1:3", "tls://127.0.0.1:1"}},
	}
	table, err := balancer.NewTable(context.Background(), routes, "", balancer.TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	down := func(addr string) {
		for _, b := range table.Backends() {
			if b.Addr.String() == addr {
				for range 10 { // beyond any fall count
					b.ConnectFailed()
				}
			}
		}
	}
	var c routesDownCache
	now := time.Now()
	steps := []struct {
		down string
		want int
	}{
		{"", 0},
		{"127.0.0.1:1", 1}, // one.test; two.test still has :2; tls :1 is down too
		{"127.0.0.1:2", 2}, // + two.test
		{"127.0.0.1:3", 3}, // + mixed.test: its tls backend at :1 is down as well
	}
	for i, s := range steps {
		if s.down != "" {
			down(s.down)
		}
		if got := routesDown(table); got != s.want {
			t.Errorf("step %d: routesDown %d, want %d", i, got, s.want)
		}
		// A cached count is reused within the TTL, then recounted.
		if i == 1 {
			c.get(table, now)
		}
		if i == 2 {
			if got := c.get(table, now.Add(routesDownTTL/2)); got != 1 {
				t.Errorf("cached count %d, want 1", got)
			}
			if got := c.get(table, now.Add(routesDownTTL)); got != 2 {
				t.Errorf("recount after TTL %d, want 2", got)
			}
		}
	}
	if got := routesDown(nil); got != 0 {
		t.Errorf("nil table: %d", got)
	}
}

package config

import (
	"time"

	"gopkg.in/yaml.v3"

	"github.com/portier/portier/balancer"
	"github.com/portier/portier/routetop"
)

// RouteMetrics configures the top routes by traffic (`route_metrics`).
type RouteMetrics struct {
	Top    int           // routes kept per window, 1..routetop.MaxN
	Window time.Duration // counting window (default 1m)
	Queue  int           // ended connections queued for counting (default 65536)
}

// Defaults of route_metrics.
const (
	DefaultRouteMetricsWindow = time.Minute
	DefaultRouteMetricsQueue  = 1 << 16
)

// routeMetrics reads `route_metrics: {top: 10, window: 1m, queue: 65536}`.
func (p *parser) routeMetrics(n *yaml.Node, cfg *Config) error {
	rm := &RouteMetrics{Window: DefaultRouteMetricsWindow, Queue: DefaultRouteMetricsQueue}
	err := p.fields(n, "route_metrics", []string{"top", "window", "queue"}, func(key string, k, v *yaml.Node) error {
		kp := "route_metrics." + key
		switch key {
		case "top":
			c, err := p.integer(v, kp)
			if err != nil {
				return err
			}
			if c < 1 || c > routetop.MaxN {
				return p.errorf(v, kp, "%d out of range 1..%d", c, routetop.MaxN)
			}
			rm.Top = c
		case "window":
			d, err := p.duration(v, kp)
			if err != nil {
				return err
			}
			if d < time.Second {
				return p.errorf(v, kp, "%s is shorter than 1s", d)
			}
			rm.Window = d
		case "queue":
			c, err := p.integer(v, kp)
			if err != nil {
				return err
			}
			if c < 1024 || c > 1<<22 {
				return p.errorf(v, kp, "%d out of range 1024..%d", c, 1<<22)
			}
			rm.Queue = c
		}
		return nil
	})
	if err != nil {
		return err
	}
	if rm.Top == 0 {
		return p.errorf(n, "route_metrics", "missing \"top\" (how many routes to keep, 1..%d)", routetop.MaxN)
	}
	cfg.RouteMetrics = rm
	return nil
}

// routeMetricsFlag reads a long-form route's `metrics: true`, refusing more
// than balancer.MaxRouteMetrics such routes: each is a label value on every
// scrape.
func (p *parser) routeMetricsFlag(v *yaml.Node, path string, r *balancer.RouteSpec, count *int) error {
	if err := p.boolean(v, path, &r.Metrics); err != nil {
		return err
	}
	if r.Metrics {
		*count++
		if *count > balancer.MaxRouteMetrics {
			return p.errorf(v, path, "more than %d routes with metrics: true (use route_metrics: {top: N} for the busiest routes)", balancer.MaxRouteMetrics)
		}
	}
	return nil
}

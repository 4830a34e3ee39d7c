package admin

import (
	"github.com/prometheus/client_golang/prometheus"
)

// routeDescs are the per-route metrics: counters for routes with
// metrics: true (at most balancer.MaxRouteMetrics of them) and gauges for the
// top N routes of the last route_metrics window (at most routetop.MaxN), so
// that a million routes never make a million label values.
type routeDescs struct {
	conns, bytes                   *prometheus.Desc
	topConns, topBytes, topDropped *prometheus.Desc
}

// otherRoutes labels the traffic of the routes outside the top N; no route
// name has parentheses.
const otherRoutes = "(other)"

func newRouteDescs() routeDescs {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("portier_"+name, help, labels, nil)
	}
	return routeDescs{
		conns: d("route_connections_total", "Connections of routes with metrics: true, counted when they end.", "route"),
		bytes: d("route_bytes_total", "Bytes of routes with metrics: true (up: client to backend), counted when connections end.",
			"route", "direction"),
		topConns: d("route_top_connections_per_second",
			"Connections per second of the busiest routes by bytes over the last route_metrics window (route=\"(other)\": all others).", "route"),
		topBytes: d("route_top_bytes_per_second",
			"Bytes per second of the busiest routes over the last route_metrics window (route=\"(other)\": all others).", "route", "direction"),
		topDropped: d("route_top_dropped_total", "Ended connections not counted for the top routes because the queue was full."),
	}
}

func (c *collector) describeRoutes(ch chan<- *prometheus.Desc) {
	if c.opts.RouteStats != nil {
		ch <- c.route.conns
		ch <- c.route.bytes
	}
	if c.opts.RouteTop != nil {
		ch <- c.route.topConns
		ch <- c.route.topBytes
		ch <- c.route.topDropped
	}
}

func (c *collector) collectRoutes(ch chan<- prometheus.Metric) {
	if rs := c.opts.RouteStats; rs != nil {
		for _, s := range rs.All() {
			ch <- prometheus.MustNewConstMetric(c.route.conns, prometheus.CounterValue, float64(s.Conns.Load()), s.Name)
			ch <- prometheus.MustNewConstMetric(c.route.bytes, prometheus.CounterValue, float64(s.BytesUp.Load()), s.Name, "up")
			ch <- prometheus.MustNewConstMetric(c.route.bytes, prometheus.CounterValue, float64(s.BytesDown.Load()), s.Name, "down")
		}
	}
	if t := c.opts.RouteTop; t != nil {
		top, other, _ := t.Snapshot()
		sec := t.Window().Seconds()
		gauge := func(d *prometheus.Desc, v int64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v)/sec, labels...)
		}
		other.Name = otherRoutes
		for _, e := range append(top, other) {
			gauge(c.route.topConns, e.Conns, e.Name)
			gauge(c.route.topBytes, e.BytesUp, e.Name, "up")
			gauge(c.route.topBytes, e.BytesDown, e.Name, "down")
		}
		ch <- prometheus.MustNewConstMetric(c.route.topDropped, prometheus.CounterValue, float64(t.Dropped()))
	}
}

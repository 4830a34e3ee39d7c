package admin

import (
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/portier/portier/balancer"
	"github.com/portier/portier/engine"
)

// NewRegistry returns a registry with portier's collector plus the Go and
// process collectors. It is its own registry, never the global default, so
// that several servers (and tests) do not share state.
func NewRegistry(opts Options) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		newCollector(opts),
		newQUICCollector(opts.Engine),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// collector reads the engine's atomics and the other sources at scrape time,
// so serving metrics adds nothing to the event loops' hot path.
type collector struct {
	opts Options
	now  func() time.Time

	accepted, open, conns, bytes, requests   *prometheus.Desc
	rejections, connectFailures, connectTime *prometheus.Desc
	connects, poolIdle, poolReuses           *prometheus.Desc
	poolMisses, poolRetries, spliced         *prometheus.Desc
	limitHits, routes, routesDown            *prometheus.Desc
	backendUp, backendActive                 *prometheus.Desc
	redisConnected, redisAge, redisRoutes    *prometheus.Desc
	redisSkipped, redisNotifications         *prometheus.Desc
	logDropped, logWritten                   *prometheus.Desc
	linesDropped, linesSuppressed            *prometheus.Desc
	down                                     routesDownCache
	route                                    routeDescs
}

func newCollector(opts Options) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("portier_"+name, help, labels, nil)
	}
	return &collector{
		opts:            opts,
		now:             time.Now,
		route:           newRouteDescs(),
		accepted:        d("connections_accepted_total", "Client connections accepted.", "listener"),
		open:            d("connections_open", "Client connections currently open.", "listener"),
		conns:           d("connections_total", "Client connections ended, by outcome.", "listener", "outcome"),
		requests:        d("http_requests_total", "HTTP request heads forwarded to backends.", "listener"),
		bytes:           d("bytes_total", "Bytes forwarded (up: client to backend), counted when a connection ends.", "listener", "direction"),
		rejections:      d("rejections_total", "Connections rejected, by reason.", "reason"),
		connectFailures: d("backend_connect_failures_total", "Failed backend connect attempts (each retry counts)."),
		connects:        d("backend_connects_total", "New backend connections started."),
		poolIdle:        d("backend_pool_idle", "Idle keep-alive connections to http:// backends in the pools."),
		poolReuses:      d("backend_pool_reuses_total", "Requests sent over a pooled backend connection."),
		poolMisses:      d("backend_pool_misses_total", "Requests that could use a pooled backend connection and found none idle."),
		poolRetries: d("backend_pool_retries_total",
			"Requests resent over a new connection after a pooled one was found closed before answering."),
		spliced: d("spliced_bytes_total",
			"Bytes forwarded with splice(2), without a copy through user space (also counted in bytes_total)."),
		connectTime:    d("backend_connect_duration_seconds", "Time to connect to a backend (successful connects)."),
		limitHits:      d("limit_hits_total", "Connections refused by a connection limit.", "limit"),
		routes:         d("routes", "Route names in the current table."),
		routesDown:     d("routes_down", "Route names none of whose backends is up."),
		backendUp:      d("backend_up", "1 when the backend passes health checks and no peer marked it down.", "backend", "scheme"),
		backendActive:  d("backend_active_connections", "Connections open to the backend.", "backend"),
		redisConnected: d("redis_connected", "1 when the Redis route source is connected."),
		redisAge:       d("redis_last_sync_age_seconds", "Seconds since routes were last loaded from Redis (+Inf: never)."),
		redisRoutes:    d("redis_routes", "Routes loaded from Redis."),
		redisSkipped:   d("redis_skipped_routes", "Redis route entries skipped as invalid in the last sync."),
		redisNotifications: d("redis_notifications",
			"1 when Redis keyspace notifications are received (0: polling only)."),
		logDropped: d("accesslog_dropped_total", "Access log records dropped because the queue was full."),
		logWritten: d("accesslog_written_total", "Access log records written."),
		linesDropped: d("log_dropped_total",
			"Log lines the event loops dropped because their queue was full (the writer or its output stalled).", "log"),
		linesSuppressed: d("log_suppressed_total",
			"Event log lines summarised as \"N similar lines suppressed\" instead of written."),
	}
}

// Describe sends every descriptor this collector may emit.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.accepted, c.open, c.conns, c.bytes, c.requests, c.rejections, c.connectFailures,
		c.connects, c.poolIdle, c.poolReuses, c.poolMisses, c.poolRetries, c.spliced,
		c.connectTime, c.limitHits, c.routes, c.routesDown, c.linesDropped, c.linesSuppressed} {
		ch <- d
	}
	if c.opts.Health != nil {
		ch <- c.backendUp
		ch <- c.backendActive
	}
	if c.opts.Redis != nil {
		ch <- c.redisConnected
		ch <- c.redisAge
		ch <- c.redisRoutes
		ch <- c.redisSkipped
		ch <- c.redisNotifications
	}
	if c.opts.AccessLog != nil {
		ch <- c.logDropped
		ch <- c.logWritten
	}
	c.describeRoutes(ch)
}

// Collect reads the current values.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}

	st := c.opts.Engine.Stats()
	for i := range st.Listeners {
		l := &st.Listeners[i]
		counter(c.accepted, float64(l.Accepted.Load()), l.Name)
		gauge(c.open, float64(l.Open.Load()), l.Name)
		for o := engine.Outcome(0); o < engine.NumOutcomes; o++ {
			counter(c.conns, float64(l.Outcomes[o].Load()), l.Name, o.String())
		}
		counter(c.requests, float64(l.Requests.Load()), l.Name)
		counter(c.bytes, float64(l.BytesUp.Load()), l.Name, "up")
		counter(c.bytes, float64(l.BytesDown.Load()), l.Name, "down")
	}
	for r := engine.Reason(0); r < engine.NumReasons; r++ {
		counter(c.rejections, float64(st.Rejects[r].Load()), r.String())
	}
	counter(c.connectFailures, float64(st.ConnectFailures.Load()))
	counter(c.connects, float64(st.BackendConnects.Load()))
	gauge(c.poolIdle, float64(st.PoolIdle.Load()))
	counter(c.poolReuses, float64(st.PoolReuses.Load()))
	counter(c.poolMisses, float64(st.PoolMisses.Load()))
	counter(c.poolRetries, float64(st.PoolRetries.Load()))
	counter(c.spliced, float64(st.Spliced.Load()))
	count, sum, buckets := st.ConnectLatency.Snapshot()
	ch <- prometheus.MustNewConstHistogram(c.connectTime, count, sum, buckets)
	for l := engine.Limit(0); l < engine.NumLimits; l++ {
		counter(c.limitHits, float64(st.Limited[l].Load()), l.String())
	}
	routes := 0
	t := c.opts.Router.Load()
	if t != nil {
		routes = t.Len()
	}
	gauge(c.routes, float64(routes))
	gauge(c.routesDown, float64(c.down.get(t, c.now())))
	counter(c.linesDropped, float64(c.opts.Engine.LogDropped()), "events")
	if c.opts.LogDropped != nil {
		counter(c.linesDropped, float64(c.opts.LogDropped()), "process")
	}
	counter(c.linesSuppressed, float64(c.opts.Engine.LogSuppressed()))

	if c.opts.Health != nil {
		c.collectHealth(ch, c.opts.Health())
	}
	if c.opts.Redis != nil {
		rs := c.opts.Redis()
		gauge(c.redisConnected, boolValue(rs.Connected))
		age := math.Inf(1)
		if !rs.LastSync.IsZero() {
			age = max(0, c.now().Sub(rs.LastSync).Seconds())
		}
		gauge(c.redisAge, age)
		gauge(c.redisRoutes, float64(rs.Routes))
		gauge(c.redisSkipped, float64(rs.Skipped))
		gauge(c.redisNotifications, boolValue(rs.Notifications))
	}
	if c.opts.AccessLog != nil {
		counter(c.logDropped, float64(c.opts.AccessLog.Dropped()))
		counter(c.logWritten, float64(c.opts.AccessLog.Written()))
		counter(c.linesDropped, float64(c.opts.AccessLog.Dropped()), "access")
	}
	c.collectRoutes(ch)
}

// collectHealth emits one backend_up per (address, scheme) and one
// active-connections sum per address: the registry rejects a scrape with
// duplicate label sets, and the same address may serve both schemes or be
// reported twice.
func (c *collector) collectHealth(ch chan<- prometheus.Metric, states []balancer.BackendState) {
	type key struct {
		addr   string
		scheme balancer.Scheme
	}
	seen := make(map[key]bool, len(states))
	active := make(map[string]int64, len(states))
	var order []string
	for _, s := range states {
		k := key{s.Addr, s.Scheme}
		if seen[k] {
			continue
		}
		seen[k] = true
		ch <- prometheus.MustNewConstMetric(c.backendUp, prometheus.GaugeValue,
			boolValue(s.Up && !s.FleetDown), s.Addr, s.Scheme.String())
		if _, ok := active[s.Addr]; !ok {
			order = append(order, s.Addr)
		}
		active[s.Addr] += s.Active
	}
	for _, addr := range order {
		ch <- prometheus.MustNewConstMetric(c.backendActive, prometheus.GaugeValue, float64(active[addr]), addr)
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

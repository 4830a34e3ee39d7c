package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portier/portier/accesslog"
	"github.com/portier/portier/admin"
	"github.com/portier/portier/balancer"
	"github.com/portier/portier/balancer/redisroutes"
	"github.com/portier/portier/config"
	"github.com/portier/portier/engine"
	"github.com/portier/portier/routetop"
)

// server ties the parts of a running portier together: the engine, the
// route sources (the config file and Redis), health checks, the admin server
// and the access log.
type server struct {
	logger *slog.Logger
	router *balancer.Router
	health *balancer.Health
	hc     *hostCheck          // what this host allows (source=client)
	src    *redisroutes.Source // nil without a redis section
	eng    *engine.Engine
	adm    *admin.Server
	alog   *accesslog.Log
	// routeStats holds the counters of routes with metrics: true, across
	// reloads; top counts the busiest routes (nil without route_metrics).
	routeStats *balancer.RouteStatsSet
	top        *routetop.Top
	ready      atomic.Bool
	// onHealth publishes a local health change to the fleet; set before
	// the checks start.
	onHealth     func(addr string, up bool)
	stopReporter context.CancelFunc // nil without fleet health

	mu          sync.Mutex // serialises rebuilds of the route table
	buildHook   func()     // tests: runs at the start of each build, s.mu held
	cfg         *config.Config
	redisRoutes *balancer.RouteSet // last routes Redis published in full; nil before the first
	redisSeen   bool
	// redisDelta holds the routes Redis changed since its last full publish
	// (nil: removed), applied on top of redisRoutes.
	redisDelta map[string]*balancer.RouteSpec
}

const tableTimeout = 10 * time.Second

// buildStatic builds the table of cfg's own routes, failing on any error:
// a config file that cannot be served as written is refused (at start and
// on reload).
func buildStatic(cfg *config.Config, h *balancer.Health, hc *hostCheck, rs *balancer.RouteStatsSet) (*balancer.Table, error) {
	ctx, cancel := context.WithTimeout(context.Background(), tableTimeout)
	defer cancel()
	return balancer.NewTable(ctx, cfg.Routes, cfg.Default, balancer.TableOptions{Health: h, CheckBackend: hc.backend, RouteStats: rs})
}

// rebuild stores a new table from the config's routes overlaid with Redis's
// (a name in Redis overrides the same name in the file). Bad Redis routes
// are skipped with a log line.
func (s *server) rebuild() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rebuildLocked()
}

func (s *server) rebuildLocked() error {
	t, err := s.buildLocked(s.cfg, false)
	if err != nil {
		return err
	}
	s.router.Store(t)
	s.health.Track(t)
	return nil
}

// buildLocked builds the table of cfg's routes overlaid with Redis's view,
// resolving every backend once. With strict, a route of the file that
// cannot be built (and that Redis does not override) fails the build: a
// reloaded file that cannot be served as written is refused. s.mu is held,
// so no Redis change lands between the build and its store.
func (s *server) buildLocked(cfg *config.Config, strict bool) (*balancer.Table, error) {
	if s.buildHook != nil {
		s.buildHook()
	}
	if !s.redisSeen {
		return buildStatic(cfg, s.health, s.hc, s.routeStats)
	}
	return s.buildWithRedis(cfg, strict)
}

// dynamicOptions are the table options with Redis routes in play: a bad
// route is skipped with a log line instead of failing the whole table.
func (s *server) dynamicOptions() balancer.TableOptions {
	return balancer.TableOptions{Health: s.health, CheckBackend: s.hc.backend, RouteStats: s.routeStats, OnInvalid: func(route string, err error) {
		s.logger.Warn("route skipped", "route", route, "err", err)
	}}
}

// buildWithRedis builds the table of the file's routes overlaid with
// Redis's: the last full publish with the deltas since, streamed into the
// builder (a million routes are not copied into a list first). A name in
// Redis overrides the same name in the file. strict as for buildLocked.
func (s *server) buildWithRedis(cfg *config.Config, strict bool) (*balancer.Table, error) {
	inRedis := func(name string) bool {
		if r, ok := s.redisDelta[name]; ok {
			return r != nil
		}
		return s.redisRoutes.Has(name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), tableTimeout)
	defer cancel()
	opts := s.dynamicOptions()
	var fileErr error
	fromFile := true // OnInvalid runs for the file's routes first, then Redis's
	if strict {
		skip := opts.OnInvalid
		opts.OnInvalid = func(route string, err error) {
			if fromFile && fileErr == nil {
				fileErr = fmt.Errorf("route %s: %w", route, err)
			}
			skip(route, err)
		}
	}
	b := balancer.NewBuilder(ctx, len(cfg.Routes)+s.redisRoutes.Len(), opts)
	for _, r := range cfg.Routes {
		if !inRedis(r.Name) {
			if err := b.Add(r); err != nil {
				return nil, err
			}
		}
	}
	fromFile = false
	if err := b.AddSet(s.redisRoutes, s.redisDelta); err != nil {
		return nil, err
	}
	def := cfg.Default
	if def != "" {
		if n, err := balancer.NormalizeRouteName(def); err == nil && !b.Has(n) {
			def = "" // the file's default was a Redis name that is gone
		}
	}
	t, err := b.Table(def)
	if err == nil {
		err = fileErr
	}
	return t, err
}

// applyDelta applies a few changed Redis routes to the current table with
// Table.Update, which shares every other route's pool: a change costs
// milliseconds, not a rebuild of every route. A name Redis no longer has
// falls back to the file's route of that name, if any.
func (s *server) applyDelta(set []balancer.RouteSpec, del []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.redisDelta == nil {
		s.redisDelta = make(map[string]*balancer.RouteSpec)
	}
	upd := make([]balancer.RouteSpec, 0, len(set)+len(del))
	var gone []string
	for i := range set {
		s.redisDelta[set[i].Name] = &set[i]
		upd = append(upd, set[i])
	}
	for _, name := range del {
		s.redisDelta[name] = nil
		if i := slices.IndexFunc(s.cfg.Routes, func(r balancer.RouteSpec) bool { return r.Name == name }); i >= 0 {
			upd = append(upd, s.cfg.Routes[i])
		} else {
			gone = append(gone, name)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), tableTimeout)
	defer cancel()
	t, added, err := s.router.Load().Update(ctx, upd, gone, s.cfg.Default, s.dynamicOptions())
	if err != nil {
		s.logger.Error("route table update failed; keeping the current one", "err", err)
		return
	}
	s.router.Store(t)
	s.health.TrackAdded(added)
	s.logger.Info("routes updated from redis", "redis_routes", s.src.Status().Routes, "routes", t.Len(),
		"changed", len(set), "removed", len(del))
}

// startServer builds and starts everything for cfg. On error, what was
// started is stopped again.
// runOptions are the command line's settings that the config file does not hold.
type runOptions struct {
	loops              int           // overrides cfg.Loops when > 0
	cpus               int           // GOMAXPROCS at start: loops when neither sets them, and GOMAXPROCS becomes loops + 1 (spareProcessor); 0: neither (tests in this process)
	logQueue, logBurst int           // engine.Options.LogQueue, LogBurst
	logDropped         func() uint64 // lines the process log dropped; nil: none
}

func startServer(cfg *config.Config, logger *slog.Logger, ro runOptions) (s *server, err error) {
	s = &server{logger: logger, cfg: cfg, hc: newHostCheck(false), routeStats: balancer.NewRouteStatsSet()}
	s.health = balancer.NewHealth(balancer.HealthOptions{Defaults: cfg.Health, Logger: logger,
		OnChange: func(addr string, up bool) {
			if s.onHealth != nil {
				s.onHealth(addr, up)
			}
		}})
	table, err := buildStatic(cfg, s.health, s.hc, s.routeStats)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Path, err)
	}
	if rm := cfg.RouteMetrics; rm != nil {
		s.top = routetop.New(rm.Top, rm.Window, rm.Queue)
		go s.top.Run(context.Background())
	}
	s.router = balancer.NewRouter(table)
	defer func() {
		if err != nil {
			s.stopNow()
		}
	}()
	if a := cfg.AccessLog; a != nil {
		if s.alog, err = accesslog.Open(accesslog.Options{Path: a.Path, Format: a.Format, Queue: a.Queue}); err != nil {
			return s, fmt.Errorf("access_log: %w", err)
		}
	}
	opts := engine.Options{
		Router:              s.router,
		Loops:               cfg.Loops,
		HandshakeTimeout:    cfg.Timeouts.Handshake,
		ConnectTimeout:      cfg.Timeouts.Connect,
		IdleTimeout:         cfg.Timeouts.Idle,
		DrainGrace:          cfg.Timeouts.DrainGrace,
		PoolMaxIdle:         cfg.Keepalive.MaxIdle,
		PoolIdleTimeout:     cfg.Keepalive.IdleTimeout,
		MaxHeaderBytes:      cfg.Limits.MaxHeaderBytes,
		MaxConnections:      cfg.Limits.MaxConnections,
		MaxConnectionsPerIP: cfg.Limits.MaxConnectionsPerIP,
		PerIPv6Prefix:       cfg.Limits.PerIPIPv6Prefix,
		Retries:             cfg.Retries,
		Logger:              logger,
		LogQueue:            ro.logQueue,
		LogBurst:            ro.logBurst,
		AccessLog:           s.alog,
		RouteTop:            s.top,
	}
	opts.QUIC = engine.QUICOptions{MaxFlows: cfg.Limits.MaxFlows, MaxFlowsPerIP: cfg.Limits.MaxFlowsPerIP,
		IdleTimeout: cfg.Timeouts.QUICIdle}
	if ro.loops > 0 {
		opts.Loops = ro.loops
	}
	if ro.cpus > 0 {
		if opts.Loops <= 0 {
			opts.Loops = ro.cpus
		}
		spareProcessor(opts.Loops)
	}
	for _, ln := range cfg.Listeners {
		opts.Listeners = append(opts.Listeners, listenerSpec(ln))
	}
	if s.eng, err = engine.New(opts); err != nil {
		return s, err
	}
	if cfg.Redis != nil {
		if err := s.startRedis(cfg.Redis); err != nil {
			return s, err
		}
	}
	if a := cfg.Admin; a != nil {
		s.adm, err = admin.New(admin.Options{
			Addr: a.Address, AllowPublic: a.AllowPublic, Engine: s.eng, Router: s.router,
			Health: s.health.States, AccessLog: s.alog, Ready: s.ready.Load, Logger: logger, LogDropped: ro.logDropped,
			Redis: s.redisStatus(), RouteStats: s.routeStats, RouteTop: s.top,
		})
		if err != nil {
			return s, fmt.Errorf("admin: %w", err)
		}
		s.adm.Serve()
		logger.Info("admin listening", "address", s.adm.Addr())
	}
	go s.health.Run(context.Background())
	s.health.Track(table)
	s.eng.Start()
	for i, ap := range s.eng.Addrs() {
		logger.Info("listening", "listener", opts.Listeners[i].Name, "address", ap.String(),
			"protocol", opts.Listeners[i].Scheme.String())
	}
	if s.src == nil {
		s.ready.Store(true)
	}
	return s, nil
}

func listenerSpec(ln config.Listener) engine.ListenerSpec {
	scheme := balancer.SchemeHTTP
	switch ln.Protocol {
	case "tls":
		scheme = balancer.SchemeTLS
	case "quic":
		scheme = balancer.SchemeQUIC
	}
	spec := engine.ListenerSpec{Name: ln.Name, Address: ln.Address, Scheme: scheme,
		AcceptProxy: ln.AcceptProxy, TrustedProxies: ln.TrustedProxies}
	if ln.ForwardedHeaders != nil {
		spec.NoForward = engine.FwdXFF | engine.FwdProto | engine.FwdPort | engine.FwdForwarded
		for _, h := range ln.ForwardedHeaders {
			switch h {
			case "x-forwarded-for":
				spec.NoForward &^= engine.FwdXFF
			case "x-forwarded-proto":
				spec.NoForward &^= engine.FwdProto
			case "x-forwarded-port":
				spec.NoForward &^= engine.FwdPort
			case "forwarded":
				spec.NoForward &^= engine.FwdForwarded
			}
		}
	}
	return spec
}

// startRedis runs the Redis route source; its routes overlay the file's.
func (s *server) startRedis(rc *config.Redis) error {
	opts := redisroutes.Options{
		URL: rc.URL, Password: os.Getenv("PORTIER_REDIS_PASSWORD"),
		SentinelMaster: rc.SentinelMaster, SentinelAddrs: rc.SentinelAddrs, ClusterAddrs: rc.ClusterAddrs,
		Schema: rc.Schema, Resync: rc.Resync, SnapshotFile: rc.SnapshotFile, NotifyOff: rc.NotifyOff, Logger: s.logger,
		Delta: s.applyDelta,
	}
	if rc.ShareHealth {
		opts.OnFleetHealth = s.health.SetFleetDown
	}
	// go-redis logs every failed dial of an outage on its own; the source
	// already logs each state change once, so its lines go to debug.
	redis.SetLogger(redisLogger{s.logger})
	src, err := redisroutes.New(opts)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	s.src = src
	if rc.ShareHealth {
		// Publishing runs off the checker's goroutine so that a slow Redis
		// never delays checks, in order, from one goroutine; the TTL lets a
		// report lapse if its author dies.
		ttl := 3 * max(s.cfg.Health.WithDefaults(balancer.HealthCheck{}).Interval, time.Second)
		rep := src.NewHealthReporter(ttl)
		ctx, cancel := context.WithCancel(context.Background())
		s.stopReporter = cancel
		go rep.Run(ctx)
		s.onHealth = func(addr string, up bool) { rep.Report(addr, !up) }
	}
	go src.Run(context.Background(), func(routes *balancer.RouteSet) {
		start := time.Now()
		s.mu.Lock()
		s.redisRoutes, s.redisSeen, s.redisDelta = routes, true, nil
		err := s.rebuildLocked()
		s.mu.Unlock()
		if err != nil {
			s.logger.Error("route table rebuild failed; keeping the current one", "err", err)
			return
		}
		s.logger.Debug("route table built from redis's routes", "took", time.Since(start).Round(time.Millisecond))
		releaseAfterBuild(routes.Len())
		s.ready.Store(true)
		s.logger.Info("routes updated from redis", "redis_routes", routes.Len(), "routes", s.router.Load().Len())
	})
	return nil
}

type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.Debug("redis client: " + fmt.Sprintf(format, v...))
}

func (s *server) redisStatus() func() admin.RedisStatus {
	if s.src == nil {
		return nil
	}
	return func() admin.RedisStatus {
		st := s.src.Status()
		return admin.RedisStatus{Connected: st.Connected, LastSync: st.LastSync, Routes: st.Routes,
			Skipped: st.Skipped, Notifications: st.Notifications}
	}
}

// releaseAfterBuild returns the heap's free memory to the OS once a table
// of at least bigTable routes was built and stored. Such a build leaves its
// scratch behind (a full sync's read buffers, the build's sort buffers, the
// table it replaced), which the runtime would otherwise hand back over
// minutes: redisload's RSS after loading 1M routes is 148 B per route with
// this against 188 B without, for one forced collection of 4-5 ms (the
// tables hold no pointer per route), off the event loops.
func releaseAfterBuild(routes int) {
	if routes >= bigTable {
		debug.FreeOSMemory()
	}
}

// bigTable is the size from which releaseAfterBuild forces the collection.
const bigTable = 50_000

// reload re-reads the config file: new routes and pools apply to new
// connections, open ones are untouched. Settings that need new sockets or
// loops are reported and keep their running values. The table is built once
// (validation and build are one step, each name resolved once) while holding
// s.mu: a Redis change that arrives meanwhile waits and then applies to the
// new configuration.
func (s *server) reload(path string) {
	cfg, err := config.Load(path)
	if err != nil {
		s.logger.Error("reload failed; keeping the running configuration", "err", err)
		return
	}
	s.mu.Lock()
	t, err := s.buildLocked(cfg, true)
	if err != nil {
		s.mu.Unlock()
		s.logger.Error("reload failed; keeping the running configuration", "err", fmt.Errorf("%s: %w", path, err))
		return
	}
	old := s.cfg
	s.cfg = cfg
	s.router.Store(t)
	s.health.Track(t)
	s.mu.Unlock()
	releaseAfterBuild(t.Len())
	if !slices.EqualFunc(old.Listeners, cfg.Listeners, sameListener) || old.Loops != cfg.Loops ||
		old.Timeouts != cfg.Timeouts || old.Limits != cfg.Limits || old.Retries != cfg.Retries ||
		(old.Redis == nil) != (cfg.Redis == nil) || (old.Admin == nil) != (cfg.Admin == nil) ||
		(old.AccessLog == nil) != (cfg.AccessLog == nil) || (old.RouteMetrics == nil) != (cfg.RouteMetrics == nil) ||
		old.RouteMetrics != nil && *old.RouteMetrics != *cfg.RouteMetrics {
		s.logger.Warn("reload: listeners, loops, timeouts, limits, retries, redis, admin, access_log and route_metrics changes need a restart; routes were reloaded")
	}
	s.logger.Info("reloaded", "config", path, "routes", t.Len())
}

func sameListener(a, b config.Listener) bool {
	return a.Name == b.Name && a.Address == b.Address && a.Protocol == b.Protocol && a.AcceptProxy == b.AcceptProxy &&
		slices.Equal(a.TrustedProxies, b.TrustedProxies) && slices.Equal(a.ForwardedHeaders, b.ForwardedHeaders)
}

// shutdown stops accepting, lets open connections finish within timeout and
// stops the rest.
func (s *server) shutdown(timeout time.Duration, force <-chan struct{}) {
	s.ready.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		select {
		case <-force:
			cancel()
		case <-ctx.Done():
		}
	}()
	open := s.eng.Stats().Open.Load()
	s.logger.Info("draining", "open_connections", open, "timeout", timeout.String())
	if err := s.eng.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		s.logger.Warn("shutdown: closed connections still open", "err", err)
	}
	s.stopNow()
}

// stopNow stops whatever is running, without waiting for connections.
func (s *server) stopNow() {
	if s.eng != nil {
		_ = s.eng.Close()
	}
	if s.adm != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = s.adm.Shutdown(ctx)
		cancel()
	}
	if s.stopReporter != nil {
		s.stopReporter()
	}
	if s.src != nil {
		_ = s.src.Close()
	}
	if s.alog != nil {
		_ = s.alog.Close()
	}
	if s.top != nil {
		s.top.Close() // its Run then ends at the next window
	}
}

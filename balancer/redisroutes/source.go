// Package redisroutes reads routes from Redis in the hipache schema
// (frontend:<host> lists) or the stupid-proxy "sets" schema
// (hostnames:<host>:backends sets), follows changes through keyspace
// notifications with a periodic full resync as a safety net, and shares
// backend health across a fleet of proxies.
package redisroutes

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portier/portier/balancer"
)

// Options configures New.
type Options struct {
	URL            string   // redis:// or rediss://; password in the URL
	Password       string   // overrides the URL's
	SentinelMaster string   // with SentinelAddrs: Redis Sentinel
	SentinelAddrs  []string // "host:port"
	ClusterAddrs   []string // "host:port": Redis Cluster
	Schema         string   // SchemaHipache (default) or SchemaSets
	// Resync is the period of the full resync that catches events missed
	// (notifications off, lost while reconnecting); default 30s.
	Resync time.Duration
	// SnapshotFile, if set, receives the last good route set after each
	// change and is published at start, so a restart during an outage of
	// Redis still has routes.
	SnapshotFile string
	// NotifyOff leaves the server's notify-keyspace-events as it is (a
	// shared server's configuration is not portier's to change): changes
	// then arrive by notification only if the server already sends them,
	// else at each resync. By default the classes needed are added.
	NotifyOff bool
	Logger    *slog.Logger
	// OnFleetHealth, if set, is told of backends that a member of the fleet
	// reported down or up with ReportHealth. It is called from Run's
	// goroutine, only when the state of addr changes.
	OnFleetHealth func(addr string, down bool)
	// Delta, if set, receives the changes that keyspace notifications
	// report, as routes to add or replace (set) and names to remove (del),
	// instead of a publish of every route: with a million routes, sorting
	// and rebuilding everything for one RPUSH takes seconds. Full syncs go
	// to publish at start, after a reconnect, when a resync finds changes
	// the deltas missed, and when a resync finds more than 1% of the routes
	// (at least 1,000) changed by deltas since the last full publish, to
	// fold them into a fresh table. A resync rewrites the snapshot file of
	// stores over 100,000 routes after deltas. Called from Run's goroutine,
	// never concurrently with publish.
	Delta func(set []balancer.RouteSpec, del []string)
}

// Status describes the source for /status pages and tests.
type Status struct {
	Connected     bool
	LastSync      time.Time // last successful full sync
	Routes        int       // routes last published
	Skipped       int       // keys with malformed contents (in full or in part)
	Notifications bool      // keyspace notifications are on; false: changes wait for a resync
}

const (
	defaultResync = 30 * time.Second
	minBackoff    = 100 * time.Millisecond
	maxBackoff    = 5 * time.Second
	// coalesce gathers the events of a burst (a script, a MULTI, a deploy
	// tool rewriting many keys) into one publish. It is most of the time a
	// change takes to go live (redisload, 1M routes: 31-50 ms with 30 ms);
	// the events of a MULTI or a script arrive within microseconds, and a
	// burst that outlasts it costs one more Table.Update (microseconds).
	coalesce = 10 * time.Millisecond
	// pingEvery is how long a subscription may stay silent before a PING
	// checks it; two silent periods in a row end the session.
	pingEvery  = 5 * time.Second
	opTimeout  = 5 * time.Second
	healthChan = "portier:health"
	deadPrefix = "portier:dead:"
)

// Source is a route source backed by Redis. Run it once.
type Source struct {
	opts   Options
	sc     schema
	db     int
	client redis.UniversalClient
	log    *slog.Logger

	mu     sync.Mutex
	status Status

	// The snapshot file is written by its own goroutine: writing a million
	// routes (and fsync) must not hold up the changes that follow. snapNext
	// is the latest set to write (nil: none); snapWG covers the writer.
	snapMu      sync.Mutex
	snapNext    *balancer.RouteSet
	snapRunning bool
	snapWG      sync.WaitGroup

	// Owned by Run's goroutine.
	view *balancer.RouteSet // routes last published in full
	// over holds the changes since view (nil: removed); count is the
	// number of routes with them.
	over  map[string]*balancer.RouteSpec
	count int
	// multi holds, for routes that more than one key contributes to, the
	// backends of each key (see collector).
	multi         map[string]map[string][]string
	problems      map[string]string // by key: last problem logged
	havePublished bool
	snapshotStale bool // deltas went out that the snapshot file does not have
	fleetDown     map[string]bool
	// The fleet's dead keys are scanned once a full sync's routes are
	// published, off its critical path (see fullSync). fleetRes receives
	// the scan's result (made per session, capacity 1). fleetMsgs is non-nil while a scan is in flight
	// and holds the addresses health messages set meanwhile: they are newer
	// than the scan's view and win over it. in is the session's inbox.
	fleetRes     chan fleetResult
	fleetMsgs    map[string]bool
	fleetWG      sync.WaitGroup
	in           *inbox
	notifyLogged bool
	up           int8 // 0 unknown, 1 connected, -1 unavailable: logs state changes once

	// Test hooks, nil outside tests: fleetScanned runs in the scan's
	// goroutine once it has read the keys, fleetApplied on Run's goroutine
	// once a scan's result is applied.
	fleetScanned func()
	fleetApplied func()
}

// fleetResult is what a scan of the fleet's dead keys found.
type fleetResult struct {
	down map[string]bool
	err  error
}

// New builds the Redis client: a single server from URL, Sentinel when
// SentinelMaster is set, Cluster when ClusterAddrs is set (URL then gives
// only credentials, TLS and, for Sentinel, the database). No I/O happens
// until Run or a command.
func New(opts Options) (*Source, error) {
	sc, err := parseSchema(opts.Schema)
	if err != nil {
		return nil, err
	}
	switch {
	case opts.Resync == 0:
		opts.Resync = defaultResync
	case opts.Resync < 0:
		return nil, fmt.Errorf("redis: resync %v: must be positive", opts.Resync)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	uo := &redis.UniversalOptions{
		// CLIENT SETINFO is refused by some managed services and older
		// servers; it only labels the connection.
		DisableIdentity: true,
		DialTimeout:     2 * time.Second,
		ReadTimeout:     3 * time.Second,
		WriteTimeout:    3 * time.Second,
		MaxRetries:      1,
		// Run has its own backoff; a dial is tried once per attempt.
		DialerRetries:         1,
		ContextTimeoutEnabled: true,
	}
	if opts.URL != "" {
		ro, err := redis.ParseURL(opts.URL)
		if err != nil {
			// The URL may hold a password: keep it out of the message.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return nil, fmt.Errorf("redis: url: %s", strings.TrimPrefix(err.Error(), "redis: "))
		}
		uo.Addrs = []string{ro.Addr}
		uo.Username, uo.Password, uo.DB, uo.TLSConfig = ro.Username, ro.Password, ro.DB, ro.TLSConfig
	}
	switch {
	case len(opts.ClusterAddrs) > 0 && opts.SentinelMaster != "":
		return nil, errors.New("redis: set either sentinel or cluster addresses, not both")
	case len(opts.ClusterAddrs) > 0:
		if uo.DB != 0 {
			return nil, fmt.Errorf("redis: cluster has only database 0, url selects %d", uo.DB)
		}
		uo.Addrs, uo.IsClusterMode = opts.ClusterAddrs, true
	case opts.SentinelMaster != "":
		if len(opts.SentinelAddrs) == 0 {
			return nil, errors.New("redis: sentinel master set without sentinel addresses")
		}
		uo.Addrs, uo.MasterName = opts.SentinelAddrs, opts.SentinelMaster
	case len(opts.SentinelAddrs) > 0:
		return nil, errors.New("redis: sentinel addresses set without a master name")
	case opts.URL == "":
		return nil, errors.New("redis: no address (set a url, sentinel or cluster addresses)")
	}
	if opts.Password != "" {
		uo.Password = opts.Password
	}
	return &Source{
		opts:      opts,
		sc:        sc,
		db:        uo.DB,
		client:    redis.NewUniversalClient(uo),
		log:       opts.Logger,
		problems:  make(map[string]string),
		multi:     make(map[string]map[string][]string),
		fleetDown: make(map[string]bool),
	}, nil
}

// Client returns the Redis client, for List, Add and Remove.
func (s *Source) Client() redis.UniversalClient { return s.client }

// Close closes the client; call it after Run has returned.
func (s *Source) Close() error { return s.client.Close() }

// Status returns the current status. Safe for concurrent use.
func (s *Source) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func (s *Source) setStatus(f func(st *Status)) {
	s.mu.Lock()
	f(&s.status)
	s.mu.Unlock()
}

// Run publishes the routes of Redis, in full, each time they change, until
// ctx is done. The snapshot file, if any, is published first. Errors never
// end Run and never publish an empty set: the last routes stay while it
// reconnects with backoff. publish is called from Run's goroutine only; it
// may keep the set it is given: it is never modified.
func (s *Source) Run(ctx context.Context, publish func(routes *balancer.RouteSet)) {
	defer s.snapWG.Wait() // the last snapshot is on disk when Run returns
	s.loadSnapshot(publish)
	backoff := minBackoff
	for {
		synced, err := s.session(ctx, publish)
		s.setStatus(func(st *Status) { st.Connected = false })
		if ctx.Err() != nil {
			return
		}
		if s.up != -1 {
			s.up = -1
			s.log.Warn("redis unavailable", "err", err)
		} else {
			s.log.Debug("redis still unavailable", "err", err)
		}
		if synced {
			backoff = minBackoff
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (s *Source) loadSnapshot(publish func(*balancer.RouteSet)) {
	path := s.opts.SnapshotFile
	if path == "" {
		return
	}
	routes, skipped, err := readSnapshot(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return
	case err != nil:
		s.log.Warn("redis: snapshot ignored", "file", path, "err", err)
		return
	case skipped > 0:
		s.log.Warn("redis: snapshot: invalid routes skipped", "file", path, "skipped", skipped)
	}
	s.log.Info("redis: routes from snapshot", "file", path, "routes", routes.Len())
	s.setStatus(func(st *Status) { st.Routes = routes.Len() })
	publish(routes)
	s.view, s.over, s.count, s.havePublished = routes, nil, routes.Len(), true
}

// session connects, subscribes, syncs and follows changes until an error.
// synced reports whether a full sync succeeded (the backoff restarts).
func (s *Source) session(ctx context.Context, publish func(*balancer.RouteSet)) (synced bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pctx, pcancel := context.WithTimeout(ctx, opTimeout)
	err = s.client.Ping(pctx).Err()
	pcancel()
	if err != nil {
		return false, fmt.Errorf("redis: ping: %w", err)
	}
	ns, err := nodes(ctx, s.client)
	if err != nil {
		return false, err
	}
	if err := s.enableNotifications(ctx, ns); err != nil {
		return false, err
	}

	// Subscribe before the full sync: a change made during the sync is then
	// either in the sync or in an event after it.
	in := newInbox(s.sc)
	s.in, s.fleetRes, s.fleetMsgs = in, make(chan fleetResult, 1), nil
	errc := make(chan error, len(ns))
	var wg sync.WaitGroup
	var subs []*redis.PubSub
	defer func() {
		cancel()
		for _, ps := range subs {
			ps.Close()
		}
		wg.Wait()
		s.fleetWG.Wait()
	}()
	for i, n := range ns {
		ps := n.PSubscribe(ctx)
		subs = append(subs, ps)
		want := 1
		if err := ps.PSubscribe(ctx, s.sc.notifyPattern(s.db)); err != nil {
			return false, fmt.Errorf("redis: psubscribe: %w", err)
		}
		// PUBLISH reaches every node of a cluster: one subscription will do.
		if i == 0 && s.opts.OnFleetHealth != nil {
			if err := ps.Subscribe(ctx, healthChan); err != nil {
				return false, fmt.Errorf("redis: subscribe %s: %w", healthChan, err)
			}
			want++
		}
		if err := awaitSubscriptions(ctx, ps, want); err != nil {
			return false, err
		}
		wg.Add(1)
		go s.receive(ctx, ps, in, errc, &wg)
	}

	if err := s.fullSync(ctx, publish); err != nil {
		return false, err
	}
	if s.up != 1 {
		s.up = 1
		st := s.Status()
		s.log.Info("redis connected", "routes", st.Routes, "skipped", st.Skipped, "notifications", st.Notifications)
	}

	resync := time.NewTicker(s.opts.Resync)
	defer resync.Stop()
	pending := make(map[string]struct{})
	// The route names of the pending keys, with the backends of those that
	// are their route's only key (nil: gone).
	touched := make(map[string][]string)
	var flush <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case err := <-errc:
			return true, err
		case r := <-s.fleetRes:
			if r.err != nil {
				return true, r.err
			}
			s.applyFleet(r.down)
		case <-in.wake:
			keys, health, overflow := in.take()
			for _, payload := range health {
				s.healthMessage(payload)
			}
			if overflow {
				// More changes than are worth reading one by one.
				clear(pending)
				flush = nil
				if err := s.fullSync(ctx, publish); err != nil {
					return true, err
				}
				continue
			}
			for key := range keys {
				pending[key] = struct{}{}
			}
			if len(pending) > 0 && flush == nil {
				flush = time.After(coalesce)
			}
		case <-flush:
			flush = nil
			if err := s.readPending(ctx, pending, touched); err != nil {
				return true, err
			}
			clear(pending)
			s.publishChanges(touched, publish)
			clear(touched)
		case <-resync.C:
			if err := s.fullSync(ctx, publish); err != nil {
				return true, err
			}
		}
	}
}

// awaitSubscriptions waits for the server to confirm n subscriptions.
// Messages arriving meanwhile are dropped: the full sync that follows
// covers them.
func awaitSubscriptions(ctx context.Context, ps *redis.PubSub, n int) error {
	for n > 0 {
		m, err := ps.ReceiveTimeout(ctx, opTimeout)
		if err != nil {
			return fmt.Errorf("redis: subscribe: %w", err)
		}
		if _, ok := m.(*redis.Subscription); ok {
			n--
		}
	}
	return nil
}

// receive forwards the messages of ps until ctx is done or the connection
// fails. A silent connection is probed with PING, so that a dead peer
// without a reset still ends the session.
func (s *Source) receive(ctx context.Context, ps *redis.PubSub, in *inbox, errc chan<- error, wg *sync.WaitGroup) {
	defer wg.Done()
	probed := false
	for {
		m, err := ps.ReceiveTimeout(ctx, pingEvery)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !probed {
				probed = true
				if err = ps.Ping(ctx); err == nil {
					continue
				}
			}
			errc <- fmt.Errorf("redis: subscription: %w", err)
			return
		}
		probed = false
		if msg, ok := m.(*redis.Message); ok {
			in.add(msg.Channel, msg.Payload) // never blocks: see inbox
		}
	}
}

// enableNotifications merges the flags the schema needs into the server's
// notify-keyspace-events. Managed services often refuse CONFIG: that is
// logged once and the resync carries changes instead.
func (s *Source) enableNotifications(ctx context.Context, ns []redis.UniversalClient) error {
	on := true
	for _, n := range ns {
		cur, err := n.ConfigGet(ctx, "notify-keyspace-events").Result()
		if err == nil {
			old := cur["notify-keyspace-events"]
			if merged := mergeFlags(old, s.sc.notifyFlags()); merged != old {
				if s.opts.NotifyOff {
					on = false // the server does not send what is needed; we do not ask
					continue
				}
				err = n.ConfigSet(ctx, "notify-keyspace-events", merged).Err()
			}
		} else if s.opts.NotifyOff && isReplyError(err) {
			on = false // CONFIG refused: whether it notifies is unknown; rely on resync
			continue
		}
		if err != nil {
			if !isReplyError(err) {
				return fmt.Errorf("redis: config notify-keyspace-events: %w", err)
			}
			on = false
			if !s.notifyLogged {
				s.notifyLogged = true
				s.log.Warn("redis: keyspace notifications off, changes apply at each resync", "resync", s.opts.Resync, "err", err)
			}
			break
		}
	}
	if s.opts.NotifyOff && !on && !s.notifyLogged {
		s.notifyLogged = true
		s.log.Warn("redis: the server does not send the keyspace notifications needed and notify_keyspace_events is off: changes apply at each resync",
			"resync", s.opts.Resync, "need", s.sc.notifyFlags())
	}
	s.setStatus(func(st *Status) { st.Notifications = on })
	return nil
}

// mergeFlags adds the notify-keyspace-events classes in need that cur does
// not already have, directly or through the alias A.
func mergeFlags(cur, need string) string {
	const aliasA = "g$lshzxetd"
	out := cur
	for _, c := range need {
		if strings.ContainsRune(out, c) || (strings.ContainsRune(aliasA, c) && strings.ContainsRune(out, 'A')) {
			continue
		}
		out += string(c)
	}
	return out
}

// fullSync reloads every route key, then publishes the routes if they
// changed (or deltas went out since the last full publish). On error
// nothing is replaced. The fleet's health is scanned beside it (scanFleet)
// and applied by Run's loop when the scan ends.
func (s *Source) fullSync(ctx context.Context, publish func(*balancer.RouteSet)) error {
	defer lowerGC()()
	start := time.Now()
	set, multi, problems, err := loadAll(ctx, s.client, s.sc, s.count, s.missingKeys)
	if err != nil {
		return err
	}
	// The fleet's dead keys are scanned once the routes are read and
	// published, not beside them: SCAN walks every key whatever its MATCH,
	// so beside the routes' scan it doubled Redis's work during the sync
	// (1M keys: read 4.0-5.5 s, after: 3.2-3.7 s), and beside the table
	// build it slowed that by a third (its replies are decoded meanwhile).
	// Until it lands, a backend is as its own checks see it.
	if s.opts.OnFleetHealth != nil {
		defer s.scanFleet(ctx)
	}
	s.log.Debug("redis: full sync read", "routes", set.Len(), "took", time.Since(start).Round(time.Millisecond))
	for key, p := range problems {
		if s.problems[key] != p {
			s.log.Warn("redis: skipping malformed entry", "key", key, "problem", p)
		}
	}
	s.problems, s.multi = problems, multi
	// Status first: a publish observer may look at it at once.
	s.setStatus(func(st *Status) { st.Connected, st.LastSync, st.Skipped = true, time.Now(), len(problems) })
	if s.havePublished && set.Len() == s.count && set.Digest() == s.view.DigestWith(s.over) {
		// Nothing was missed. The deltas since the last full publish stay
		// overlaid on the table (rebuilding a million routes would double
		// the memory for a moment) until they are many.
		if len(s.over) > compactAfter(s.count) {
			s.publishFull(set, publish)
		} else if s.snapshotStale {
			s.snapshotStale = false
			s.writeSnapshot(set)
		}
		return nil
	}
	s.publishFull(set, publish)
	return nil
}

// syncGCPercent is the GOGC of the process while a full sync runs. The
// heap then holds the routes served, the set being read and, once it is
// published, the table being built, while the reads make garbage at the
// pace of the keys: with the default 100 the heap would grow to twice all
// that before a collection. The sets and tables hold no pointer per route,
// so collecting more often is cheap (redisload: peak RSS of a 1M-route
// resync against the steady state, in BENCHMARKS.md).
const syncGCPercent = 25

// lowerGC sets GOGC to syncGCPercent unless it is lower already (or off)
// and returns the function that restores it.
func lowerGC() (restore func()) {
	old := debug.SetGCPercent(syncGCPercent)
	if old >= 0 && old <= syncGCPercent || old < 0 {
		debug.SetGCPercent(old)
		return func() {}
	}
	return func() { debug.SetGCPercent(old) }
}

// compactAfter is how many changes made by deltas a full sync that finds
// nothing new leaves overlaid on a table of n routes before it publishes
// every route again, which builds a fresh table without the overlays.
func compactAfter(n int) int { return max(1000, n/100) }

// publishFull publishes every route and writes the snapshot file.
func (s *Source) publishFull(set *balancer.RouteSet, publish func(*balancer.RouteSet)) {
	s.view, s.over, s.count, s.snapshotStale = set, nil, set.Len(), false
	s.setStatus(func(st *Status) { st.Routes = set.Len() })
	publish(set)
	s.havePublished = true
	s.writeSnapshot(set)
}

// writeSnapshot hands set to the snapshot writer, starting it if needed;
// a set still waiting is replaced (only the latest matters).
func (s *Source) writeSnapshot(set *balancer.RouteSet) {
	if s.opts.SnapshotFile == "" {
		return
	}
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	s.snapNext = set
	if s.snapRunning {
		return
	}
	s.snapRunning = true
	s.snapWG.Add(1)
	go func() {
		defer s.snapWG.Done()
		for {
			s.snapMu.Lock()
			next := s.snapNext
			s.snapNext = nil
			if next == nil {
				s.snapRunning = false
				s.snapMu.Unlock()
				return
			}
			s.snapMu.Unlock()
			if err := writeSnapshot(s.opts.SnapshotFile, s.sc.String(), next, time.Now()); err != nil {
				s.log.Warn("redis: snapshot not written", "err", err)
			}
		}
	}()
}

// route returns the current route of name: the last full publish with the
// changes since.
func (s *Source) route(name string) (balancer.RouteSpec, bool) {
	if r, ok := s.over[name]; ok {
		if r == nil {
			return balancer.RouteSpec{}, false
		}
		return *r, true
	}
	return s.view.Get(name)
}

// readPending re-reads the keys that events named and records their route
// names in touched, with the backends of a key that is its route's only
// one (nil: gone or unusable); routes of several keys are updated in multi.
func (s *Source) readPending(ctx context.Context, pending map[string]struct{}, touched map[string][]string) error {
	keys := make([]string, 0, len(pending))
	for k := range pending {
		keys = append(keys, k)
	}
	err := readKeys(ctx, s.client, s.sc, keys, func(key string, vals []string, rerr error) {
		e, problem, ok, _ := interpret(s.sc, key, vals, rerr)
		if problem == "" {
			delete(s.problems, key)
		} else if s.problems[key] != problem {
			s.problems[key] = problem
			s.log.Warn("redis: skipping malformed entry", "key", key, "problem", problem)
		}
		name, valid := s.sc.keyName(key)
		if !valid {
			return // never a route
		}
		var backends []string
		if ok {
			backends = e.backends
		}
		m := s.multi[name]
		if m == nil && key == s.sc.key(name) {
			touched[name] = backends
			return
		}
		if m == nil {
			// A second key for the route: from now on it is merged by key.
			m = make(map[string][]string)
			if cur, ok := touched[name]; ok { // the only key, read just now
				if cur != nil {
					m[s.sc.key(name)] = cur
				}
			} else if r, ok := s.route(name); ok {
				m[s.sc.key(name)] = r.Backends
			}
			s.multi[name] = m
		}
		if backends != nil {
			m[key] = backends
		} else {
			delete(m, key)
		}
		touched[name] = nil
	})
	s.setStatus(func(st *Status) { st.Skipped = len(s.problems) })
	return err
}

// publishChanges publishes the routes of the touched names: to
// Options.Delta when set (overlaid on the last full publish; see
// fullSync), else as a new full set.
func (s *Source) publishChanges(touched map[string][]string, publish func(*balancer.RouteSet)) {
	if len(touched) == 0 {
		return
	}
	var set []balancer.RouteSpec
	var del []string
	changes := make(map[string]*balancer.RouteSpec, len(touched))
	for name, backends := range touched {
		r := balancer.RouteSpec{Name: name, Backends: backends}
		if m, ok := s.multi[name]; ok {
			var usable bool
			if r, usable = merge(name, m); !usable {
				r.Backends = nil
			}
		}
		old, had := s.route(name)
		switch {
		case r.Backends == nil && had:
			del = append(del, name)
			changes[name] = nil
		case r.Backends != nil && (!had || !sameRoute(old, r)):
			set = append(set, r)
		}
	}
	for i := range set {
		changes[set[i].Name] = &set[i]
	}
	if len(set) == 0 && len(del) == 0 {
		return
	}
	if s.opts.Delta == nil || !s.havePublished {
		next, err := s.view.With(changes)
		if err != nil {
			s.log.Error("redis: routes not published", "err", err)
			return
		}
		s.publishFull(next, publish)
		return
	}
	if s.over == nil {
		s.over = make(map[string]*balancer.RouteSpec)
	}
	for _, name := range del {
		s.over[name] = nil
		s.count--
	}
	for i := range set {
		if _, had := s.route(set[i].Name); !had {
			s.count++
		}
		s.over[set[i].Name] = &set[i]
	}
	s.setStatus(func(st *Status) { st.Routes = s.count })
	s.opts.Delta(set, del)
	// The snapshot holds every route: rewriting it per change is cheap for
	// small stores; large ones get it at the next resync.
	if s.opts.SnapshotFile != "" {
		if s.count > snapshotPerChange {
			s.snapshotStale = true
		} else if cur, err := s.view.With(s.over); err == nil {
			s.writeSnapshot(cur)
		}
	}
}

// snapshotPerChange is the largest store whose snapshot file is rewritten
// after every change (about 0.1 s of work); beyond it, at each resync.
const snapshotPerChange = 100_000

// missingKeys returns the keys of the routes Run last knew (the last full
// publish with the deltas since) that this sync's SCAN did not find, to be
// read again directly. SCAN walks a Cluster's masters one after another: a
// key that a slot migration (redis-cli --cluster reshard) moves from a
// master not yet scanned to one already scanned is seen on neither, and its
// route would vanish until the next resync. A direct read follows the
// MOVED/ASK redirections to wherever the key is now; a key really deleted
// reads as missing.
func (s *Source) missingKeys(found func(name string) bool) []string {
	var keys []string
	check := func(name string) {
		if found(name) {
			return
		}
		if m := s.multi[name]; m != nil {
			for k := range m {
				keys = append(keys, k)
			}
			return
		}
		keys = append(keys, s.sc.key(name))
	}
	if s.view != nil {
		for r := range s.view.All() {
			if o, changed := s.over[r.Name]; !changed || o != nil {
				check(r.Name)
			}
		}
	}
	for name, r := range s.over {
		if r != nil && (s.view == nil || !s.view.Has(name)) {
			check(name)
		}
	}
	return keys
}

// scanFleet starts reading the backends reported down (keys that expired
// mean up) unless a scan is in flight; Run's loop applies the result
// (applyFleet). The health messages already received are applied first:
// they are older than the scan.
func (s *Source) scanFleet(ctx context.Context) {
	if s.fleetMsgs != nil { // a scan is in flight
		return
	}
	for _, payload := range s.in.takeHealth() {
		s.healthMessage(payload)
	}
	s.fleetMsgs = make(map[string]bool)
	res, hook := s.fleetRes, s.fleetScanned
	s.fleetWG.Add(1)
	go func() {
		defer s.fleetWG.Done()
		down := make(map[string]bool)
		err := func() error {
			ns, err := nodes(ctx, s.client)
			if err != nil {
				return err
			}
			return scanKeys(ctx, ns, deadPrefix+"*", func(keys []string) error {
				for _, k := range keys {
					down[strings.TrimPrefix(k, deadPrefix)] = true
				}
				return nil
			})
		}()
		if hook != nil {
			hook()
		}
		res <- fleetResult{down: down, err: err} // capacity 1, one scan at a time
	}()
}

// applyFleet makes the result of a scan the fleet's state, except for the
// addresses that messages set since the scan started.
func (s *Source) applyFleet(down map[string]bool) {
	for addr := range s.fleetMsgs {
		if s.fleetDown[addr] {
			down[addr] = true
		} else {
			delete(down, addr)
		}
	}
	s.fleetMsgs = nil
	for addr := range down {
		if !s.fleetDown[addr] {
			s.opts.OnFleetHealth(addr, true)
		}
	}
	for addr := range s.fleetDown {
		if !down[addr] {
			s.opts.OnFleetHealth(addr, false)
		}
	}
	s.fleetDown = down
	if s.fleetApplied != nil {
		s.fleetApplied()
	}
}

func (s *Source) healthMessage(payload string) {
	verb, addr, _ := strings.Cut(payload, " ")
	if addr == "" || (verb != "down" && verb != "up") {
		s.log.Debug("redis: ignoring health message", "channel", healthChan, "payload", payload)
		return
	}
	down := verb == "down"
	if s.fleetMsgs != nil {
		s.fleetMsgs[addr] = true
	}
	if s.fleetDown[addr] == down {
		return
	}
	if down {
		s.fleetDown[addr] = true
	} else {
		delete(s.fleetDown, addr)
	}
	s.opts.OnFleetHealth(addr, down)
}

// ReportHealth tells the fleet that backend addr is down (for ttl, unless
// reported again) or up again: it sets or deletes portier:dead:<addr> and
// publishes "down <addr>" or "up <addr>" on portier:health.
func (s *Source) ReportHealth(ctx context.Context, addr string, down bool, ttl time.Duration) error {
	if addr == "" || strings.ContainsAny(addr, " \r\n") {
		return fmt.Errorf("redis: report health: invalid address %q", addr)
	}
	key := deadPrefix + addr
	verb := "up"
	if down {
		if ttl <= 0 {
			return fmt.Errorf("redis: report health %s: ttl %v must be positive", addr, ttl)
		}
		verb = "down"
		if err := s.client.Set(ctx, key, "1", ttl).Err(); err != nil {
			return fmt.Errorf("redis: report health: set %s: %w", key, err)
		}
	} else if err := s.client.Del(ctx, key).Err(); err != nil {
		return fmt.Errorf("redis: report health: del %s: %w", key, err)
	}
	if err := s.client.Publish(ctx, healthChan, verb+" "+addr).Err(); err != nil {
		return fmt.Errorf("redis: report health: publish %s: %w", healthChan, err)
	}
	return nil
}

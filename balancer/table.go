package balancer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"
)

// maxName is the longest host name Lookup accepts (the DNS limit; anything
// longer cannot match a route).
const maxName = 255

// RouteSpec names a route and lists its backend URLs. Name is a host name
// ("app1.test"), a wildcard ("*.apps.test") or the catch-all "*".
type RouteSpec struct {
	Name     string
	Backends []string
	Balance  Algorithm   // zero: round robin
	Health   HealthCheck // zero fields: the Health's defaults, then the package's
	Metrics  bool        // per-route metrics (TableOptions.RouteStats)
	ALPN     []ALPNRoute // TLS: own backends for clients offering these protocols
	Reuse    Reuse       // keep-alive pool of the route's http:// backend connections
}

// Reuse configures how the engine keeps idle connections to a route's
// http:// backends for later requests. Zero fields take the engine's
// defaults.
type Reuse struct {
	Never       bool          // reuse: never; every request gets its own backend connection
	MaxIdle     int           // idle connections kept per backend address and event loop
	IdleTimeout time.Duration // an idle connection is closed after this
}

// TableOptions configures NewTable.
type TableOptions struct {
	// Resolve looks up the addresses of a backend host name; nil uses
	// net.DefaultResolver. It is called only for hosts that are not IP
	// literals, once per distinct host, while the table is built (never on
	// the event loop).
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)

	// Health, when set, runs active checks (after Health.Track) and keeps
	// the runtime state of backends (health, drain, active connections)
	// across tables built with it. nil: per-table state, passive health only.
	Health *Health

	// OnInvalid, when set, makes NewTable skip a route with a bad name, a bad
	// backend URL, an unresolvable backend host or no backends (and a later
	// duplicate of a name, or a default naming a skipped or missing route)
	// and report it here instead of failing: one bad route from a dynamic
	// source must not take the others down. nil: such a route fails NewTable.
	OnInvalid func(route string, err error)

	// Logger receives passive "backend down"/"backend up" for tables built
	// without Health; nil uses slog.Default().
	Logger *slog.Logger

	// CheckBackend, when set, vets each backend URL once it is parsed (the
	// host's capabilities for source=client, a unix socket's path); an
	// error makes its route invalid, as a bad URL does.
	CheckBackend func(BackendSpec) error

	// RouteStats, when set, gives the pools of routes with Metrics their
	// counters (kept across tables). nil: no per-route metrics.
	RouteStats *RouteStatsSet
}

// routeRec is one interned route content and its pools: every name whose
// route has this content (backends, balance, checks) points at it.
type routeRec struct {
	pools [schemeLast + 1]*Pool // by scheme; nil: no backend of that scheme
	spec  RouteSpec             // Name: the first route with this content
}

// routeSet holds the wildcard and default routes of one scheme: few, so
// they stay in Go maps.
type routeSet struct {
	wild map[string]*Pool // keyed by the suffix after "*."
	// wildLabels has bit n set when some wildcard suffix has n labels, so
	// Lookup probes the wildcard map only with suffixes that can match.
	wildLabels [2]uint64
	def        *Pool
	catchAll   *Pool // route "*"
}

// Table is an immutable routing snapshot. Exact names sit in a compact
// index (names in byte chunks, 8-byte slots) pointing at interned route
// records; wildcards and the catch-all are kept separately per scheme: an
// http listener only sees routes that have http:// backends.
type Table struct {
	sets  [schemeLast + 1]routeSet // indexed by Scheme
	exact *lineIndex               // exact names -> index into recs
	recs  []routeRec
	// poolsOf[id] is recs[id].pools again, densely: Lookup reads only this
	// (32 bytes a record instead of the whole routeRec), so a table of a
	// million distinct routes spans a few times fewer pages and cache lines.
	poolsOf [][schemeLast + 1]*Pool
	special map[string]uint32 // wildcard names and "*" -> index into recs
	// Changes made by Update on top of the above, so that an update does
	// not copy them (nil: removed). exactOver has the exact names only and
	// is what Lookup consults first; routesOver has every changed name.
	exactOver  map[string]*routeRec
	routesOver map[string]*routeRec
	nRoutes    int
	backends   []*Backend // distinct, in order of first use
	// extraBackends are those Update built.
	extraBackends []*Backend
}

// NewTable validates routes, resolves backend host names and builds a Table.
// defaultName, if not empty, must name one of routes; unknown and missing
// names are sent to it. Without a default, a route named "*" serves them.
// See TableOptions.OnInvalid for skipping bad routes instead of failing.
func NewTable(ctx context.Context, routes []RouteSpec, defaultName string, opts TableOptions) (*Table, error) {
	b := NewBuilder(ctx, len(routes), opts)
	for _, r := range routes {
		if err := b.Add(r); err != nil {
			return nil, err
		}
	}
	return b.Table(defaultName)
}

// Builder builds a Table from routes streamed in one at a time (NewTable is
// a Builder over a slice). Routes with the same content share one record
// and one pool per scheme; names are copied into the table's index, so
// nothing of the routes given is kept but their distinct contents.
type Builder struct {
	b    *tableBuilder
	opts TableOptions
	t    *Table
	in   *interner
	// written holds the names added in another spelling than their
	// normalised one (few), for the message about a later duplicate.
	written map[string]string
	sink    byte // keeps AddSet's early loads of records (their value is not needed)
}

// NewBuilder returns a Builder for about sizeHint routes. opts as for
// NewTable.
func NewBuilder(ctx context.Context, sizeHint int, opts TableOptions) *Builder {
	t := &Table{exact: newLineIndex(sizeHint), special: make(map[string]uint32)}
	for s := SchemeHTTP; s <= schemeLast; s++ {
		t.sets[s] = routeSet{wild: make(map[string]*Pool)}
	}
	return &Builder{b: newBuilder(ctx, opts), opts: opts, t: t,
		in: newInterner(func(id uint32) *RouteSpec { return &t.recs[id].spec })}
}

// invalid fails the build, or reports and skips when OnInvalid is set.
func (tb *Builder) invalid(route string, err error) error {
	if tb.opts.OnInvalid == nil {
		return err
	}
	tb.opts.OnInvalid(strings.Clone(route), err)
	return nil
}

// Add adds route r. A bad route, or a later one with the name of an
// earlier one, fails with an error, or is reported to OnInvalid and
// skipped (then Add returns nil).
func (tb *Builder) Add(r RouteSpec) error { return tb.add(r.Name, &r, nil) }

// add adds content c (its Name ignored) under name as written, which may
// point into memory the caller reuses: nothing keeps it. known, if not nil,
// caches the record of c (-1: not known yet).
func (tb *Builder) add(written string, c *RouteSpec, known *int32) error {
	name, err := NormalizeRouteName(written)
	if err != nil {
		return tb.invalid(written, err)
	}
	// Exact names (nearly all) are looked up once: the slot found is
	// where the name goes.
	special := name == "*" || strings.HasPrefix(name, "*.")
	var nameHash uint64
	var pos int
	dup := false
	if special {
		_, dup = tb.t.special[name]
	} else {
		nameHash = tb.t.exact.hash(bytesOf(name))
		pos, dup = tb.t.exact.find(bytesOf(name), nameHash)
	}
	if dup {
		first, ok := tb.written[name]
		if !ok {
			first = name
		}
		return tb.invalid(written, fmt.Errorf("route %q: duplicate of route %q", written, first))
	}
	// A route with its own metrics has its own pools: its counters must
	// not be shared with other names of the same content.
	var id uint32
	var h uint64
	ok := false
	switch {
	case c.Metrics:
	case known != nil && *known >= 0:
		id, ok = uint32(*known), true
	default:
		id, h, ok = tb.in.find(c)
	}
	if !ok {
		spec := *c
		spec.Name = strings.Clone(written)
		byScheme, err := tb.b.route(spec)
		if err != nil {
			return tb.invalid(written, err)
		}
		spec.Name = strings.Clone(name)
		spec.Backends = slices.Clone(spec.Backends)
		spec.ALPN = cloneALPN(spec.ALPN)
		rec := routeRec{spec: spec, pools: tb.b.pools(&spec, byScheme, tb.opts.RouteStats)}
		id = uint32(len(tb.t.recs))
		tb.t.recs = append(tb.t.recs, rec)
		tb.t.poolsOf = append(tb.t.poolsOf, rec.pools)
		if !c.Metrics {
			tb.in.add(h, id)
		}
	}
	if known != nil && !c.Metrics {
		*known = int32(id)
	}
	if name != written {
		if tb.written == nil {
			tb.written = make(map[string]string)
		}
		tb.written[strings.Clone(name)] = strings.Clone(written)
	}
	rec := &tb.t.recs[id]
	if special {
		name = strings.Clone(name)
		tb.t.special[name] = id
		for s := SchemeHTTP; s <= schemeLast; s++ {
			p := rec.pools[s]
			if p == nil {
				continue
			}
			set := &tb.t.sets[s]
			if name == "*" {
				set.catchAll = p
				continue
			}
			suffix := name[2:]
			set.wild[suffix] = p
			n := strings.Count(suffix, ".") + 1 // <= 127 in a valid name
			set.wildLabels[n/64] |= 1 << (n % 64)
		}
		return nil
	}
	return tb.t.exact.insert(bytesOf(name), nameHash, pos, id)
}

// AddSet adds every route of set that over does not name, then over's
// routes (a nil value removes the name): a route source's routes with the
// changes since they were published, without copying them.
func (tb *Builder) AddSet(set *RouteSet, over map[string]*RouteSpec) error {
	var err error
	if set != nil {
		// The set's contents are interned already: each is looked up in
		// the table's once, not once per name.
		recOf := make([]int32, len(set.contents))
		for i := range recOf {
			recOf[i] = -1
		}
		// Names go in the order of their positions in the index (sorted
		// by their hashes' high bits), so that the writes sweep its arrays
		// once instead of missing the caches for every name; the set's
		// records are then read out of order, in batches whose first loads
		// are independent, so that their misses overlap. The sort's two
		// buffers take 16 bytes per name while the table is built (sorting
		// in chunks of 128K names to bound them lost the gain; so did one
		// 12-bit pass: docs/design.md). Where one name may be another's
		// spelling (upper case, a trailing dot: never in the sets Redis and
		// snapshots give), the first set must win, so such a set goes in
		// its own order.
		refs := make([]posRef, 0, set.Len())
		set.idx.eachRecord(func(off uint32, name []byte, _ uint32) bool {
			if _, changed := over[unsafe.String(unsafe.SliceData(name), len(name))]; !changed {
				refs = append(refs, posRef{key: tb.t.exact.order32(name), ref: off})
			}
			return true
		})
		if !set.spellings {
			sortByPosition(refs, make([]posRef, len(refs)))
		}
		var sink byte
		for i := 0; i < len(refs) && err == nil; i += missBatch {
			part := refs[i:min(i+missBatch, len(refs))]
			for _, r := range part {
				c, o := set.idx.record(r.ref)
				sink += c[o]
			}
			for _, r := range part {
				name, cid := set.idx.name(r.ref), set.idx.id(r.ref)
				n := unsafe.String(unsafe.SliceData(name), len(name))
				if err = tb.add(n, &set.contents[cid], &recOf[cid]); err != nil {
					break
				}
			}
		}
		tb.sink = sink
	}
	if err != nil {
		return err
	}
	for _, r := range over {
		if r != nil {
			if err := tb.Add(*r); err != nil {
				return err
			}
		}
	}
	return nil
}

// lowerNoDot reports whether name has no upper-case letter and no trailing
// dot: then NormalizeRouteName either returns it as it is or refuses it.
func lowerNoDot(name []byte) bool {
	for _, c := range name {
		if 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return len(name) == 0 || name[len(name)-1] != '.'
}

// Has reports whether a route with the normalised name was added.
func (tb *Builder) Has(name string) bool { return tb.t.has(name) }

// Table finishes the table; the Builder must not be used any more.
// defaultName as for NewTable.
func (tb *Builder) Table(defaultName string) (*Table, error) {
	t := tb.t
	def := ""
	if defaultName != "" {
		name, err := NormalizeRouteName(defaultName)
		if err == nil && !t.has(name) {
			err = fmt.Errorf("route %q is not defined", defaultName)
		}
		if err != nil {
			if err := tb.invalid(defaultName, fmt.Errorf("default: %w", err)); err != nil {
				return nil, err
			}
		} else {
			def = name
		}
	}
	t.recs = slices.Clip(t.recs)
	t.poolsOf = slices.Clip(t.poolsOf)
	// Lookup reads poolsOf at random, as the index: huge pages (Linux) spare
	// a TLB miss on large tables.
	adviseHuge(unsafe.Pointer(unsafe.SliceData(t.poolsOf)), uintptr(cap(t.poolsOf))*unsafe.Sizeof(t.poolsOf[0]))
	t.setDefault(def)
	t.backends = tb.b.order
	tb.t, tb.in = nil, nil
	return t, nil
}

func newBuilder(ctx context.Context, opts TableOptions) *tableBuilder {
	resolve := opts.Resolve
	if resolve == nil {
		resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &tableBuilder{
		ctx:        ctx,
		resolve:    resolve,
		health:     opts.Health,
		check:      opts.CheckBackend,
		log:        log,
		addrs:      make(map[string]netip.Addr),
		backends:   make(map[string]*Backend),
		states:     make(map[stateKey]*backendState),
		configured: make(map[*backendState]bool),
	}
}

// setDefault points each scheme's default pool at the route named def (a
// normalised name that exists), or at the catch-all route "*" when def is "".
func (t *Table) setDefault(def string) {
	for s := SchemeHTTP; s <= schemeLast; s++ {
		set := &t.sets[s]
		switch {
		case def == "" || def == "*":
			set.def = set.catchAll
		default:
			if suffix, ok := strings.CutPrefix(def, "*."); ok {
				set.def = set.wild[suffix]
			} else if r, ok := t.exactOver[def]; ok {
				set.def = nil
				if r != nil {
					set.def = r.pools[s]
				}
			} else if id, ok := t.exact.getString(def); ok {
				set.def = t.recs[id].pools[s]
			} else {
				set.def = nil
			}
		}
	}
}

type tableBuilder struct {
	ctx        context.Context
	resolve    func(ctx context.Context, host string) ([]netip.Addr, error)
	health     *Health
	check      func(BackendSpec) error
	log        *slog.Logger
	addrs      map[string]netip.Addr      // resolved host names
	backends   map[string]*Backend        // by URL, shared between routes
	states     map[stateKey]*backendState // this table's, by scheme and address
	configured map[*backendState]bool     // check settings taken from a route of this table
	order      []*Backend                 // distinct backends in order of first use
}

// route builds the backends of r by scheme. Nothing is recorded in the
// builder unless the whole route is valid, so a skipped route leaves no
// trace in the table.
func (b *tableBuilder) route(r RouteSpec) ([schemeLast + 1][]*Backend, error) {
	var byScheme [schemeLast + 1][]*Backend
	if len(r.Backends) == 0 {
		return byScheme, fmt.Errorf("route %q: no backends", r.Name)
	}
	if err := b.checkALPN(r); err != nil {
		return byScheme, err
	}
	var fresh []*Backend
	for _, raw := range r.Backends {
		be, isNew, err := b.backend(raw, fresh)
		if err != nil {
			return byScheme, fmt.Errorf("route %q: %w", r.Name, err)
		}
		if isNew {
			fresh = append(fresh, be)
		}
		byScheme[be.Spec.Scheme] = append(byScheme[be.Spec.Scheme], be)
	}
	var defaults HealthCheck
	if b.health != nil {
		defaults = b.health.opts.Defaults
	}
	check := r.Health.WithDefaults(defaults)
	for _, be := range fresh {
		b.backends[be.Spec.Raw] = be
		b.order = append(b.order, be)
		key := stateKey{be.Spec.Scheme, be.Addr, be.Spec.Path}
		cfg := &probeConfig{HealthCheck: check, host: be.Spec.Host, proxy: be.Spec.Proxy}
		st := b.states[key]
		if st == nil {
			if b.health != nil {
				st = b.health.state(key, cfg)
			} else {
				st = newState(key, nil, b.log, cfg)
			}
			b.states[key] = st
		}
		// The first route of this table naming the address sets its
		// checks; a rebuild may change them for a shared state.
		if !b.configured[st] {
			b.configured[st] = true
			st.cfg.Store(cfg)
		}
		be.st = st
	}
	return byScheme, nil
}

// backend returns the backend for raw: one already in the table or in fresh
// (isNew false), or a new one without runtime state (isNew true).
func (b *tableBuilder) backend(raw string, fresh []*Backend) (be *Backend, isNew bool, err error) {
	if be, ok := b.backends[raw]; ok {
		return be, false, nil
	}
	for _, be := range fresh {
		if be.Spec.Raw == raw {
			return be, false, nil
		}
	}
	spec, err := ParseBackend(raw)
	if err != nil {
		return nil, false, err
	}
	if b.check != nil {
		if err := b.check(spec); err != nil {
			return nil, false, fmt.Errorf("backend %q: %w", raw, err)
		}
	}
	if spec.IsUnix() {
		return buildUnixBackend(spec), true, nil
	}
	ip, err := netip.ParseAddr(spec.Host)
	if err != nil {
		ip, err = b.lookup(spec.Host)
		if err != nil {
			return nil, false, fmt.Errorf("resolve backend %q: %w", raw, err)
		}
	}
	// The state is attached by route once the whole route is valid.
	return buildBackend(spec, ip), true, nil
}

// lookup resolves host once per build. It prefers the first IPv4 address:
// local services are most often bound to 127.0.0.1 while "localhost" may
// resolve to ::1 first.
func (b *tableBuilder) lookup(host string) (netip.Addr, error) {
	if ip, ok := b.addrs[host]; ok {
		return ip, nil
	}
	ips, err := b.resolve(b.ctx, host)
	if err != nil {
		return netip.Addr{}, err
	}
	if len(ips) == 0 {
		return netip.Addr{}, errors.New("no addresses")
	}
	ip := ips[0]
	for _, a := range ips {
		if a.Unmap().Is4() {
			ip = a
			break
		}
	}
	if !ip.IsValid() {
		return netip.Addr{}, errors.New("resolver returned an invalid address")
	}
	b.addrs[host] = ip
	return ip, nil
}

// Lookup returns the pool of scheme s for a name taken from a Host header or
// an SNI: matched case-insensitively, ignoring one trailing dot and a ":port"
// (also after a bracketed IPv6 literal). It tries the exact name, then the
// longest matching wildcard, then the default; nil if none applies. Names
// longer than 255 bytes give nil; an empty or malformed name gives the
// default. Allocates nothing.
func (t *Table) Lookup(s Scheme, name []byte) *Pool {
	if s < SchemeHTTP || s > schemeLast {
		return nil
	}
	set := &t.sets[s]
	host, ok := stripPort(name)
	if !ok {
		return set.def
	}
	if n := len(host); n > 0 && host[n-1] == '.' {
		host = host[:n-1]
	}
	if len(host) == 0 {
		return set.def
	}
	if len(host) > maxName {
		return nil
	}
	var buf [maxName]byte
	dots := 0
	for i, c := range host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		} else if c == '.' {
			dots++
		}
		buf[i] = c
	}
	key := buf[:len(host)]
	if len(t.exactOver) > 0 {
		if r, ok := t.exactOver[string(key)]; ok {
			if r != nil && r.pools[s] != nil {
				return r.pools[s]
			}
			goto wild // removed by an update, or no backend of scheme s
		}
	}
	if id, ok := t.exact.get(key); ok {
		if p := t.poolsOf[id][s]; p != nil {
			return p
		}
	}
wild:
	if len(set.wild) > 0 {
		// The first suffix found is the longest; i > 0 keeps the label the
		// wildcard stands for non-empty. labels counts those of key[i+1:].
		labels := dots
		for i := 0; i < len(key) && labels > 0; i++ {
			if key[i] == '.' {
				if i > 0 && labels < 64*len(set.wildLabels) && set.wildLabels[labels/64]&(1<<(labels%64)) != 0 {
					if p := set.wild[string(key[i+1:])]; p != nil {
						return p
					}
				}
				labels--
			}
		}
	}
	return set.def
}

// stripPort removes a ":port" suffix and IPv6 brackets. An unbracketed name
// with more than one colon is taken as a bare IPv6 literal. ok is false for
// a malformed name.
func stripPort(b []byte) (host []byte, ok bool) {
	if len(b) > 0 && b[0] == '[' {
		end := -1
		for i, c := range b {
			if c == ']' {
				end = i
				break
			}
		}
		if end < 0 {
			return nil, false
		}
		rest := b[end+1:]
		if len(rest) > 0 && (rest[0] != ':' || !allDigits(rest[1:])) {
			return nil, false
		}
		return b[1:end], true
	}
	colon := -1
	for i, c := range b {
		if c == ':' {
			if colon >= 0 {
				return b, true // bare IPv6 literal
			}
			colon = i
		}
	}
	if colon < 0 {
		return b, true
	}
	if !allDigits(b[colon+1:]) {
		return nil, false
	}
	return b[:colon], true
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Backends returns the distinct backends of the table (one per URL), in the
// order routes first name them.
func (t *Table) Backends() []*Backend {
	return append(slices.Clone(t.backends), t.extraBackends...)
}

// Len returns the number of route names.
func (t *Table) Len() int {
	if t.routesOver != nil {
		return t.nRoutes
	}
	return t.exact.n + len(t.special)
}

// Routes returns a copy of the routes with normalised names, sorted by name.
func (t *Table) Routes() []RouteSpec {
	out := make([]RouteSpec, 0, t.Len())
	add := func(name string, r *RouteSpec) {
		if _, changed := t.routesOver[name]; changed {
			return
		}
		spec := *r
		spec.Name = name
		spec.Backends = slices.Clone(r.Backends)
		out = append(out, spec)
	}
	t.exact.each(func(name []byte, id uint32) bool {
		add(string(name), &t.recs[id].spec)
		return true
	})
	for name, id := range t.special {
		add(name, &t.recs[id].spec)
	}
	for name, r := range t.routesOver {
		if r != nil {
			spec := r.spec
			spec.Name = name
			spec.Backends = slices.Clone(r.spec.Backends)
			out = append(out, spec)
		}
	}
	slices.SortFunc(out, func(a, b RouteSpec) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// has reports whether the table holds a route named name (normalised).
func (t *Table) has(name string) bool {
	if r, ok := t.routesOver[name]; ok {
		return r != nil
	}
	if _, ok := t.special[name]; ok {
		return true
	}
	_, ok := t.exact.getString(name)
	return ok
}

// Router holds the current Table. The engine loads it once per connection;
// route sources replace it with Store.
type Router struct {
	cur atomic.Pointer[Table]
}

// NewRouter returns a Router serving t.
func NewRouter(t *Table) *Router {
	r := &Router{}
	r.cur.Store(t)
	return r
}

// Load returns the current Table.
func (r *Router) Load() *Table { return r.cur.Load() }

// Store replaces the current Table; connections already routed keep theirs.
func (r *Router) Store(t *Table) { r.cur.Store(t) }

package balancer

// The route table as it was before the compact table (Go maps of names to
// pools, overlays of changes): kept as the reference the compact table is
// checked against (equiv_test.go). Only renamed.

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// refRouteSet holds the routes of one scheme.
type refRouteSet struct {
	exact map[string]*Pool
	// exactOver holds the exact names refTable.Update changed since the last
	// newRefTable (nil: removed); it is consulted first, so an update copies
	// only the changes, never the million-name base map.
	exactOver map[string]*Pool
	wild      map[string]*Pool // keyed by the suffix after "*."
	// wildLabels has bit n set when some wildcard suffix has n labels, so
	// Lookup probes the wildcard map only with suffixes that can match.
	wildLabels [2]uint64
	def        *Pool
	catchAll   *Pool // route "*"
}

// refTable is an immutable routing snapshot. Routes are kept separately per
// scheme: an http listener only sees routes that have http:// backends.
type refTable struct {
	sets     [schemeLast + 1]refRouteSet // indexed by Scheme
	routes   []RouteSpec                 // normalised names, sorted by name
	backends []*Backend                  // distinct, in order of first use
	// Changes made by Update on top of routes and backends, so that an
	// update does not copy them: routesOver by name (nil: removed).
	routesOver    map[string]*RouteSpec
	nRoutes       int
	extraBackends []*Backend
}

// newRefTable validates routes, resolves backend host names and builds a refTable.
// defaultName, if not empty, must name one of routes; unknown and missing
// names are sent to it. Without a default, a route named "*" serves them.
// See TableOptions.OnInvalid for skipping bad routes instead of failing.
func newRefTable(ctx context.Context, routes []RouteSpec, defaultName string, opts TableOptions) (*refTable, error) {
	b := newBuilder(ctx, opts)
	t := &refTable{routes: make([]RouteSpec, 0, len(routes))}
	for s := SchemeHTTP; s <= schemeLast; s++ {
		t.sets[s] = refRouteSet{exact: make(map[string]*Pool), wild: make(map[string]*Pool)}
	}
	// invalid fails the build, or reports and skips when OnInvalid is set.
	invalid := func(route string, err error) error {
		if opts.OnInvalid == nil {
			return err
		}
		opts.OnInvalid(route, err)
		return nil
	}
	names := make(map[string]string, len(routes)) // normalised -> as written
	for _, r := range routes {
		name, err := NormalizeRouteName(r.Name)
		if err != nil {
			if err := invalid(r.Name, err); err != nil {
				return nil, err
			}
			continue
		}
		if first, dup := names[name]; dup {
			if err := invalid(r.Name, fmt.Errorf("route %q: duplicate of route %q", r.Name, first)); err != nil {
				return nil, err
			}
			continue
		}
		byScheme, err := b.route(r)
		if err != nil {
			if err := invalid(r.Name, err); err != nil {
				return nil, err
			}
			continue
		}
		names[name] = r.Name
		for s := SchemeHTTP; s <= schemeLast; s++ {
			if len(byScheme[s]) == 0 {
				continue
			}
			p := newPool(name, r.Balance, byScheme[s], maxSeq)
			if name == "*" {
				t.sets[s].catchAll = p
			} else if suffix, ok := strings.CutPrefix(name, "*."); ok {
				t.sets[s].wild[suffix] = p
				n := strings.Count(suffix, ".") + 1 // <= 127 in a valid name
				t.sets[s].wildLabels[n/64] |= 1 << (n % 64)
			} else {
				t.sets[s].exact[name] = p
			}
		}
		t.routes = append(t.routes, RouteSpec{Name: name, Backends: slices.Clone(r.Backends), Balance: r.Balance, Health: r.Health})
	}
	def := ""
	if defaultName != "" {
		name, err := NormalizeRouteName(defaultName)
		if err == nil {
			if _, ok := names[name]; !ok {
				err = fmt.Errorf("route %q is not defined", defaultName)
			}
		}
		if err != nil {
			if err := invalid(defaultName, fmt.Errorf("default: %w", err)); err != nil {
				return nil, err
			}
		} else {
			def = name
		}
	}
	t.setDefault(def)
	t.backends = b.order
	slices.SortFunc(t.routes, func(a, b RouteSpec) int { return strings.Compare(a.Name, b.Name) })
	return t, nil
}

// setDefault points each scheme's default pool at the route named def (a
// normalised name that exists), or at the catch-all route "*" when def is "".
func (t *refTable) setDefault(def string) {
	for s := SchemeHTTP; s <= schemeLast; s++ {
		set := &t.sets[s]
		switch {
		case def == "" || def == "*":
			set.def = set.catchAll
		default:
			if suffix, ok := strings.CutPrefix(def, "*."); ok {
				set.def = set.wild[suffix]
			} else if p, ok := set.exactOver[def]; ok {
				set.def = p
			} else {
				set.def = set.exact[def]
			}
		}
	}
}

// Lookup returns the pool of scheme s for a name taken from a Host header or
// an SNI: matched case-insensitively, ignoring one trailing dot and a ":port"
// (also after a bracketed IPv6 literal). It tries the exact name, then the
// longest matching wildcard, then the default; nil if none applies. Names
// longer than 255 bytes give nil; an empty or malformed name gives the
// default. Allocates nothing.
func (t *refTable) Lookup(s Scheme, name []byte) *Pool {
	if s != SchemeHTTP && s != SchemeTLS {
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
	if len(set.exactOver) > 0 {
		if p, ok := set.exactOver[string(key)]; ok {
			if p != nil {
				return p
			}
			goto wild // removed by an update
		}
	}
	if p := set.exact[string(key)]; p != nil {
		return p
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

// Backends returns the distinct backends of the table (one per URL), in the
// order routes first name them.
func (t *refTable) Backends() []*Backend {
	return append(slices.Clone(t.backends), t.extraBackends...)
}

// Len returns the number of route names.
func (t *refTable) Len() int {
	if t.routesOver != nil {
		return t.nRoutes
	}
	return len(t.routes)
}

// Routes returns a copy of the routes with normalised names, sorted by name.
func (t *refTable) Routes() []RouteSpec {
	out := refOverlay(t.routes, t.routesOver)
	if len(t.routesOver) == 0 {
		out = slices.Clone(out) // refOverlay returned t.routes itself
	}
	if t.routesOver != nil {
		slices.SortFunc(out, func(a, b RouteSpec) int { return strings.Compare(a.Name, b.Name) })
	}
	for i := range out {
		out[i].Backends = slices.Clone(out[i].Backends)
	}
	return out
}

// Update returns a new table holding t's routes, where each route of set is
// added or replaces the route of the same name, and each name of del is
// removed. The pools of every other route are shared with t, so an update
// costs a copy of t's indexes plus building the routes of set: with a
// million routes, milliseconds where newRefTable takes seconds. A route of set
// that is invalid is reported through opts.OnInvalid and left out (the old
// route of that name is removed); without OnInvalid it fails the update.
//
// opts must be those t was built with (the same Health keeps backend
// states shared). added lists the backends built for set, for
// Health.TrackAdded. Backends that no route uses any more stay in
// Backends() until the next newRefTable.
func (t *refTable) Update(ctx context.Context, set []RouteSpec, del []string, defaultName string, opts TableOptions) (nt *refTable, added []*Backend, err error) {
	b := newBuilder(ctx, opts)
	type built struct {
		spec     RouteSpec
		byScheme [schemeLast + 1][]*Backend
	}
	changed := make(map[string]*built, len(set)+len(del))
	for _, name := range del {
		n, err := NormalizeRouteName(name)
		if err != nil {
			continue // never in a table
		}
		changed[n] = nil
	}
	for _, r := range set {
		name, err := NormalizeRouteName(r.Name)
		if err == nil {
			changed[name] = nil // the old route goes even if the new one is bad
			var byScheme [schemeLast + 1][]*Backend
			if byScheme, err = b.route(r); err == nil {
				r.Name = name
				r.Backends = slices.Clone(r.Backends)
				changed[name] = &built{spec: r, byScheme: byScheme}
				continue
			}
		}
		if opts.OnInvalid == nil {
			return nil, nil, err
		}
		opts.OnInvalid(r.Name, err)
	}

	// The new table shares t's base maps and route list and copies only the
	// overlays of changes (compacted by the next newRefTable).
	nt = &refTable{routes: t.routes, backends: t.backends, nRoutes: t.Len(),
		routesOver: maps.Clone(t.routesOver), extraBackends: slices.Clip(t.extraBackends)}
	if nt.routesOver == nil {
		nt.routesOver = make(map[string]*RouteSpec, len(changed))
	}
	for name, r := range changed {
		had := t.has(name)
		switch {
		case r != nil:
			spec := r.spec
			nt.routesOver[name] = &spec
			if !had {
				nt.nRoutes++
			}
		case had:
			nt.routesOver[name] = nil
			nt.nRoutes--
		}
	}
	wildChanged := false
	for s := SchemeHTTP; s <= schemeLast; s++ {
		old := &t.sets[s]
		ns := &nt.sets[s]
		ns.exact, ns.wild = old.exact, old.wild
		ns.exactOver = maps.Clone(old.exactOver)
		ns.wildLabels, ns.catchAll = old.wildLabels, old.catchAll
		wildCloned := false
		for name, r := range changed {
			var p *Pool
			if r != nil && len(r.byScheme[s]) > 0 {
				p = newPool(name, r.spec.Balance, r.byScheme[s], maxSeq)
			}
			switch suffix, wild := strings.CutPrefix(name, "*."); {
			case name == "*":
				ns.catchAll = p
			case wild:
				if !wildCloned {
					// Wildcards are few: their map is copied, not overlaid.
					ns.wild = maps.Clone(old.wild)
					wildCloned = true
				}
				delete(ns.wild, suffix)
				if p != nil {
					ns.wild[suffix] = p
				}
				wildChanged = true
			default:
				if ns.exactOver == nil {
					ns.exactOver = make(map[string]*Pool)
				}
				ns.exactOver[name] = p // nil hides the base entry
			}
		}
	}
	if wildChanged {
		// A removed wildcard may have been the only one with its label count.
		for s := SchemeHTTP; s <= schemeLast; s++ {
			ns := &nt.sets[s]
			ns.wildLabels = [2]uint64{}
			for suffix := range ns.wild {
				n := strings.Count(suffix, ".") + 1
				ns.wildLabels[n/64] |= 1 << (n % 64)
			}
		}
	}

	def := ""
	if defaultName != "" {
		name, err := NormalizeRouteName(defaultName)
		if err == nil && !nt.has(name) {
			err = fmt.Errorf("route %q is not defined", defaultName)
		}
		if err != nil {
			if opts.OnInvalid == nil {
				return nil, nil, fmt.Errorf("default: %w", err)
			}
			opts.OnInvalid(defaultName, fmt.Errorf("default: %w", err))
		} else {
			def = name
		}
	}
	nt.setDefault(def)
	nt.extraBackends = append(nt.extraBackends, b.order...)
	return nt, b.order, nil
}

// has reports whether the table holds a route named name (normalised).
func (t *refTable) has(name string) bool {
	if r, ok := t.routesOver[name]; ok {
		return r != nil
	}
	_, ok := slices.BinarySearchFunc(t.routes, name, func(r RouteSpec, n string) int { return strings.Compare(r.Name, n) })
	return ok
}

// refOverlay returns base without the routes that over names, followed by
// over's routes (a nil value marks a removed name). base is not modified;
// without over it is returned as is.
func refOverlay(base []RouteSpec, over map[string]*RouteSpec) []RouteSpec {
	if len(over) == 0 {
		return base
	}
	out := make([]RouteSpec, 0, len(base)+len(over))
	for _, r := range base {
		if _, changed := over[r.Name]; !changed {
			out = append(out, r)
		}
	}
	for _, r := range over {
		if r != nil {
			out = append(out, *r)
		}
	}
	return out
}

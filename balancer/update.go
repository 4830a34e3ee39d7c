package balancer

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Update returns a new table holding t's routes, where each route of set is
// added or replaces the route of the same name, and each name of del is
// removed. The pools of every other route are shared with t, so an update
// costs a copy of t's indexes plus building the routes of set: with a
// million routes, milliseconds where NewTable takes seconds. A route of set
// that is invalid is reported through opts.OnInvalid and left out (the old
// route of that name is removed); without OnInvalid it fails the update.
//
// opts must be those t was built with (the same Health keeps backend
// states shared). added lists the backends built for set, for
// Health.TrackAdded. Backends that no route uses any more stay in
// Backends() until the next NewTable.
func (t *Table) Update(ctx context.Context, set []RouteSpec, del []string, defaultName string, opts TableOptions) (nt *Table, added []*Backend, err error) {
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
				r.ALPN = cloneALPN(r.ALPN)
				changed[name] = &built{spec: r, byScheme: byScheme}
				continue
			}
		}
		if opts.OnInvalid == nil {
			return nil, nil, err
		}
		opts.OnInvalid(r.Name, err)
	}

	// The new table shares t's index, records and wildcard maps and copies
	// only the overlays of changes (compacted by the next NewTable).
	nt = &Table{exact: t.exact, recs: t.recs, poolsOf: t.poolsOf, special: t.special, backends: t.backends, nRoutes: t.Len(),
		exactOver: maps.Clone(t.exactOver), routesOver: maps.Clone(t.routesOver),
		extraBackends: slices.Clip(t.extraBackends)}
	if nt.routesOver == nil {
		nt.routesOver = make(map[string]*routeRec, len(changed))
	}
	wildChanged := false
	for s := SchemeHTTP; s <= schemeLast; s++ {
		nt.sets[s] = t.sets[s]
	}
	for name, r := range changed {
		had := t.has(name)
		var rec *routeRec
		if r != nil {
			rec = &routeRec{spec: r.spec, pools: b.pools(&r.spec, r.byScheme, opts.RouteStats)}
			if !had {
				nt.nRoutes++
			}
		} else if had {
			nt.nRoutes--
		}
		nt.routesOver[name] = rec
		switch suffix, wild := strings.CutPrefix(name, "*."); {
		case name == "*":
			for s := SchemeHTTP; s <= schemeLast; s++ {
				nt.sets[s].catchAll = rec.pool(s)
			}
		case wild:
			if !wildChanged {
				// Wildcards are few: their maps are copied, not overlaid.
				for s := SchemeHTTP; s <= schemeLast; s++ {
					nt.sets[s].wild = maps.Clone(t.sets[s].wild)
				}
				wildChanged = true
			}
			for s := SchemeHTTP; s <= schemeLast; s++ {
				delete(nt.sets[s].wild, suffix)
				if p := rec.pool(s); p != nil {
					nt.sets[s].wild[suffix] = p
				}
			}
		default:
			if nt.exactOver == nil {
				nt.exactOver = make(map[string]*routeRec)
			}
			nt.exactOver[name] = rec // nil hides the base entry
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

// pool returns the pool of scheme s; nil for a nil record.
func (r *routeRec) pool(s Scheme) *Pool {
	if r == nil {
		return nil
	}
	return r.pools[s]
}

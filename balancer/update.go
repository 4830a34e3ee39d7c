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
	// overlays of changes (compacted by the next NewTable).
	nt = &Table{routes: t.routes, backends: t.backends, nRoutes: t.Len(),
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
				p.Reuse = r.spec.Reuse
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
func (t *Table) has(name string) bool {
	if r, ok := t.routesOver[name]; ok {
		return r != nil
	}
	_, ok := slices.BinarySearchFunc(t.routes, name, func(r RouteSpec, n string) int { return strings.Compare(r.Name, n) })
	return ok
}

// Overlay returns base without the routes that over names, followed by
// over's routes (a nil value marks a removed name). base is not modified;
// without over it is returned as is.
func Overlay(base []RouteSpec, over map[string]*RouteSpec) []RouteSpec {
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

package balancer

import (
	"bytes"
	"slices"
	"strings"
	"unsafe"
)

// EachRoute calls fn with every route of the table in name order until fn
// returns false. Unlike Routes it copies no backend list, so that the admin
// server can page and count a million routes; fn must not modify r or keep
// it. The exact names' order is sorted once per index (4 bytes a name, on
// first use: only the admin pages need it) and shared by every table an
// Update derives; only the names an Update changed and the wildcards are
// sorted per call.
func (t *Table) EachRoute(fn func(r *RouteSpec) bool) {
	var rest []*RouteSpec // wildcards, "*" and changed names: few
	for name, id := range t.special {
		if _, changed := t.routesOver[name]; !changed {
			rest = append(rest, named(name, &t.recs[id].spec))
		}
	}
	for name, r := range t.routesOver {
		if r != nil {
			rest = append(rest, named(name, &r.spec))
		}
	}
	slices.SortFunc(rest, func(a, b *RouteSpec) int { return strings.Compare(a.Name, b.Name) })
	j := 0
	var cur RouteSpec
	for _, pos := range t.exact.sorted() {
		nb := t.exact.name(pos)
		// The index is never modified once built: a string over its bytes is safe.
		name := unsafe.String(unsafe.SliceData(nb), len(nb))
		if _, changed := t.routesOver[name]; changed {
			continue
		}
		for ; j < len(rest) && rest[j].Name < name; j++ {
			if !fn(rest[j]) {
				return
			}
		}
		cur = t.recs[t.exact.id(pos)].spec
		cur.Name = name
		if !fn(&cur) {
			return
		}
	}
	for ; j < len(rest); j++ {
		if !fn(rest[j]) {
			return
		}
	}
}

// named returns a copy of r's head named name (the backend list is shared).
func named(name string, r *RouteSpec) *RouteSpec {
	c := *r
	c.Name = name
	return &c
}

// sorted returns the positions of every name in byte order, computed once.
func (x *lineIndex) sorted() []uint32 {
	x.sortOnce.Do(func() {
		pos := slices.Clone(x.order)
		slices.SortFunc(pos, func(a, b uint32) int { return bytes.Compare(x.name(a), x.name(b)) })
		x.byName = pos
	})
	return x.byName
}

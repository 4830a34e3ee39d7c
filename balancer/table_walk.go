package balancer

import (
	"slices"
	"strings"
)

// EachRoute calls fn with every route of the table in name order until fn
// returns false. Unlike Routes it copies nothing per route, so that the admin
// server can page and count a million routes; fn must not modify r or keep
// it. Only the names an Update changed are sorted per call.
func (t *Table) EachRoute(fn func(r *RouteSpec) bool) {
	var over []*RouteSpec
	for _, r := range t.routesOver {
		if r != nil {
			over = append(over, r)
		}
	}
	slices.SortFunc(over, func(a, b *RouteSpec) int { return strings.Compare(a.Name, b.Name) })
	j := 0
	for i := range t.routes {
		r := &t.routes[i]
		if _, changed := t.routesOver[r.Name]; changed {
			continue
		}
		for ; j < len(over) && over[j].Name < r.Name; j++ {
			if !fn(over[j]) {
				return
			}
		}
		if !fn(r) {
			return
		}
	}
	for ; j < len(over); j++ {
		if !fn(over[j]) {
			return
		}
	}
}

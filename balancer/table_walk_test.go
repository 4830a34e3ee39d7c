package balancer

import (
	"context"
	"slices"
	"testing"
)

// TestEachRouteMatchesRoutes: EachRoute visits exactly Routes(), in the same
// order, before and after an Update, and stops when fn returns false.
func TestEachRouteMatchesRoutes(t *testing.T) {
	start := []RouteSpec{
		{Name: "b.test", Backends: []string{"http://127.0.0.1:1"}},
		{Name: "d.test", Backends: []string{"http://127.0.0.1:2"}},
		{Name: "f.test", Backends: []string{"tls://127.0.0.1:3"}},
	}
	base := mustTable(t, start, "")
	upd, _, err := base.Update(context.Background(), []RouteSpec{
		{Name: "a.test", Backends: []string{"http://127.0.0.1:4"}},
		{Name: "d.test", Backends: []string{"http://127.0.0.1:5"}},
		{Name: "z.test", Backends: []string{"http://127.0.0.1:6"}},
	}, []string{"f.test"}, "", TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range []*Table{base, upd} {
		var got []string
		tb.EachRoute(func(r *RouteSpec) bool { got = append(got, r.Name+"="+r.Backends[0]); return true })
		var want []string
		for _, r := range tb.Routes() {
			want = append(want, r.Name+"="+r.Backends[0])
		}
		if !slices.Equal(got, want) {
			t.Errorf("EachRoute %v, Routes %v", got, want)
		}
		n := 0
		tb.EachRoute(func(*RouteSpec) bool { n++; return n < 2 })
		if n != 2 {
			t.Errorf("EachRoute went on after false: %d calls", n)
		}
	}
}

package balancer

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// TestUpdateMatchesNewTable: a table updated in place routes every name
// exactly as a table built from scratch with the final routes, and the old
// table is untouched.
func TestUpdateMatchesNewTable(t *testing.T) {
	start := []RouteSpec{
		{Name: "a.test", Backends: []string{"http://127.0.0.1:1", "tls://127.0.0.1:2"}},
		{Name: "keep.test", Backends: []string{"http://127.0.0.1:3"}},
		{Name: "*.w.test", Backends: []string{"http://127.0.0.1:4"}},
		{Name: "*.deep.w.test", Backends: []string{"http://127.0.0.1:5"}},
		{Name: "*", Backends: []string{"http://127.0.0.1:6"}},
	}
	set := []RouteSpec{
		{Name: "A.test.", Backends: []string{"http://127.0.0.1:11"}, Balance: LeastConn}, // replaced: tls gone
		{Name: "b.test", Backends: []string{"tls://127.0.0.1:12"}},                       // added
		{Name: "*.x.test", Backends: []string{"http://127.0.0.1:13"}},                    // added wildcard
	}
	del := []string{"*.deep.w.test", "*", "missing.test"}
	final := []RouteSpec{set[0], start[1], start[2], set[1], set[2]}

	old := mustTable(t, start, "")
	oldA := old.Lookup(SchemeHTTP, []byte("a.test"))
	nt, added, err := old.Update(context.Background(), set, del, "", TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := mustTable(t, final, "")
	if !slices.EqualFunc(nt.Routes(), want.Routes(), func(a, b RouteSpec) bool {
		return a.Name == b.Name && slices.Equal(a.Backends, b.Backends) && a.Balance == b.Balance
	}) {
		t.Fatalf("routes:\n got %v\nwant %v", nt.Routes(), want.Routes())
	}
	if len(added) != 3 {
		t.Errorf("added %d backends, want 3", len(added))
	}
	names := []string{"a.test", "keep.test", "b.test", "q.w.test", "q.deep.w.test", "q.x.test", "nothing.test", ""}
	for _, name := range names {
		for s := SchemeHTTP; s <= schemeLast; s++ {
			g, w := nt.Lookup(s, []byte(name)), want.Lookup(s, []byte(name))
			if (g == nil) != (w == nil) || g != nil && (g.Name != w.Name || len(g.Backends) != len(w.Backends) ||
				g.Backends[0].Spec.Raw != w.Backends[0].Spec.Raw || g.Algorithm != w.Algorithm) {
				t.Errorf("%s %q: updated %v, built %v", s, name, g, w)
			}
		}
	}
	if old.Lookup(SchemeHTTP, []byte("a.test")) != oldA || old.Lookup(SchemeHTTP, []byte("b.test")).Name != "*" ||
		old.Lookup(SchemeHTTP, []byte("q.deep.w.test")).Name != "*.deep.w.test" {
		t.Error("the old table changed")
	}
	if nt.Lookup(SchemeHTTP, []byte("keep.test")) != old.Lookup(SchemeHTTP, []byte("keep.test")) {
		t.Error("an unchanged route's pool is not shared")
	}
}

func TestUpdateDefaultAndInvalid(t *testing.T) {
	start := []RouteSpec{
		{Name: "a.test", Backends: []string{"http://127.0.0.1:1"}},
		{Name: "b.test", Backends: []string{"http://127.0.0.1:2"}},
	}
	old := mustTable(t, start, "a.test")
	// The default follows its route's new pool.
	nt, _, err := old.Update(context.Background(), []RouteSpec{{Name: "a.test", Backends: []string{"http://127.0.0.1:9"}}}, nil, "a.test", TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p := nt.Lookup(SchemeHTTP, []byte("zzz.test")); p == nil || p.Backends[0].Addr.Port() != 9 {
		t.Fatalf("default after update: %v", p)
	}
	// A bad route fails without OnInvalid, and is skipped (old one removed) with it.
	bad := []RouteSpec{{Name: "b.test", Backends: []string{"htp://x"}}}
	if _, _, err := old.Update(context.Background(), bad, nil, "", TableOptions{}); err == nil {
		t.Fatal("bad route accepted without OnInvalid")
	}
	var reported []string
	nt, _, err = old.Update(context.Background(), bad, nil, "", TableOptions{OnInvalid: func(r string, err error) { reported = append(reported, r) }})
	if err != nil || len(reported) != 1 || nt.Lookup(SchemeHTTP, []byte("b.test")) != nil || nt.Len() != 1 {
		t.Fatalf("err %v, reported %v, b.test %v, %d routes", err, reported, nt.Lookup(SchemeHTTP, []byte("b.test")), nt.Len())
	}
	// Deleting the default's route without OnInvalid fails.
	if _, _, err := old.Update(context.Background(), nil, []string{"a.test"}, "a.test", TableOptions{}); err == nil || !errors.Is(err, err) {
		t.Fatal("default naming a deleted route accepted")
	}
}

// TestUpdateSharesHealth: backends built by Update share runtime state with
// the table's, through the Health, and TrackAdded checks new addresses.
func TestUpdateSharesHealth(t *testing.T) {
	h := NewHealth(HealthOptions{Defaults: HealthCheck{Kind: CheckNone}})
	opts := TableOptions{Health: h}
	old, err := NewTable(context.Background(), []RouteSpec{{Name: "a.test", Backends: []string{"http://127.0.0.1:1"}}}, "", opts)
	if err != nil {
		t.Fatal(err)
	}
	h.Track(old)
	old.Lookup(SchemeHTTP, []byte("a.test")).Backends[0].SetDrain(true)
	nt, added, err := old.Update(context.Background(), []RouteSpec{
		{Name: "b.test", Backends: []string{"http://127.0.0.1:1"}}, // same address as a.test's
		{Name: "c.test", Backends: []string{"http://127.0.0.1:2"}},
	}, nil, "", opts)
	if err != nil {
		t.Fatal(err)
	}
	if !nt.Lookup(SchemeHTTP, []byte("b.test")).Backends[0].Draining() {
		t.Error("the runtime drain of 127.0.0.1:1 is not shared with the new route")
	}
	h.TrackAdded(added)
	if got := len(h.States()); got != 2 {
		t.Errorf("%d tracked addresses after TrackAdded, want 2", got)
	}
}

// TestUpdateChain: updates on updated tables keep matching a fresh build,
// and every earlier table keeps routing as before.
func TestUpdateChain(t *testing.T) {
	routes := map[string][]string{
		"a.test":   {"http://127.0.0.1:1"},
		"b.test":   {"tls://127.0.0.1:2"},
		"*.w.test": {"http://127.0.0.1:3"},
	}
	specs := func() []RouteSpec {
		var out []RouteSpec
		for n, b := range routes {
			out = append(out, RouteSpec{Name: n, Backends: b})
		}
		return out
	}
	cur := mustTable(t, specs(), "")
	steps := []struct {
		set []RouteSpec
		del []string
	}{
		{[]RouteSpec{{Name: "c.test", Backends: []string{"http://127.0.0.1:4"}}}, []string{"a.test"}},
		{[]RouteSpec{{Name: "a.test", Backends: []string{"http://127.0.0.1:5"}}, {Name: "*", Backends: []string{"tls://127.0.0.1:6"}}}, nil},
		{nil, []string{"*.w.test", "c.test"}},
		{[]RouteSpec{{Name: "*.w.test", Backends: []string{"tls://127.0.0.1:7"}}, {Name: "b.test", Backends: []string{"http://127.0.0.1:8"}}}, []string{"*"}},
	}
	names := []string{"a.test", "b.test", "c.test", "x.w.test", "other.test"}
	type snap struct {
		tab  *Table
		want *Table
	}
	var history []snap
	for i, st := range steps {
		for _, n := range st.del {
			delete(routes, n)
		}
		for _, r := range st.set {
			routes[r.Name] = r.Backends
		}
		nt, _, err := cur.Update(context.Background(), st.set, st.del, "", TableOptions{})
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		history = append(history, snap{nt, mustTable(t, specs(), "")})
		cur = nt
	}
	for i, h := range history {
		if h.tab.Len() != h.want.Len() || len(h.tab.Routes()) != h.want.Len() {
			t.Errorf("step %d: %d routes (%d listed), want %d", i, h.tab.Len(), len(h.tab.Routes()), h.want.Len())
		}
		for _, name := range names {
			for s := SchemeHTTP; s <= schemeLast; s++ {
				g, w := h.tab.Lookup(s, []byte(name)), h.want.Lookup(s, []byte(name))
				if !samePool(g, w) {
					t.Errorf("step %d: %s %q: updated %v, built %v", i, s, name, g, w)
				}
			}
		}
	}
}

func TestLookupAfterUpdateAllocs(t *testing.T) {
	old := mustTable(t, []RouteSpec{{Name: "a.test", Backends: []string{"http://127.0.0.1:1"}}}, "")
	nt, _, err := old.Update(context.Background(), []RouteSpec{{Name: "b.test", Backends: []string{"http://127.0.0.1:2"}}}, []string{"a.test"}, "", TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a.test", "b.test", "c.test"} {
		host := []byte(name)
		if n := testing.AllocsPerRun(100, func() { nt.Lookup(SchemeHTTP, host) }); n != 0 {
			t.Errorf("Lookup(%s) on an updated table allocates %.1f times", name, n)
		}
	}
}

// FuzzUpdate: any sequence of updates routes every probe name exactly as a
// table built from scratch with the resulting routes.
func FuzzUpdate(f *testing.F) {
	f.Add([]byte{0x01, 0x12, 0x23, 0x84, 0x35, 0x06, 0x97})
	f.Add([]byte{0x70, 0x71, 0x72, 0xf0, 0x60, 0x50})
	names := []string{"a.test", "b.test", "*.w.test", "*.x.w.test", "*", "c.x.w.test", "w.test", "d.test"}
	probes := []string{"a.test", "b.test", "q.w.test", "q.x.w.test", "c.x.w.test", "w.test", "d.test", "zzz.test", ""}
	backends := [][]string{
		{"http://127.0.0.1:1"}, {"tls://127.0.0.1:2"}, {"http://127.0.0.1:3", "tls://127.0.0.1:4"}, {"http://127.0.0.1:5?weight=3"},
	}
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 64 {
			return
		}
		routes := map[string][]string{}
		spec := func() []RouteSpec {
			var out []RouteSpec
			for n, b := range routes {
				out = append(out, RouteSpec{Name: n, Backends: b})
			}
			return out
		}
		cur := mustTable(t, nil, "")
		for _, op := range ops {
			name := names[op&7]
			var set []RouteSpec
			var del []string
			if op&0x80 != 0 {
				del = []string{name}
				delete(routes, name)
			} else {
				b := backends[(op>>4)&3]
				set = []RouteSpec{{Name: name, Backends: b}}
				routes[name] = b
			}
			nt, _, err := cur.Update(context.Background(), set, del, "", TableOptions{})
			if err != nil {
				t.Fatal(err)
			}
			cur = nt
		}
		want := mustTable(t, spec(), "")
		if cur.Len() != want.Len() {
			t.Fatalf("%d routes, want %d", cur.Len(), want.Len())
		}
		for _, p := range probes {
			for s := SchemeHTTP; s <= schemeLast; s++ {
				g, w := cur.Lookup(s, []byte(p)), want.Lookup(s, []byte(p))
				if !samePool(g, w) {
					t.Fatalf("%s %q: updated %v, built %v", s, p, g, w)
				}
			}
		}
	})
}

// samePool reports whether two pools route alike: the same algorithm over
// the same backend URLs. Routes with equal contents share one pool, whose
// Name is the first of them, so names do not tell routes apart.
func samePool(a, b *Pool) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Algorithm == b.Algorithm && slices.EqualFunc(a.Backends, b.Backends, func(x, y *Backend) bool {
		return x.Spec.Raw == y.Spec.Raw
	})
}

package balancer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// The compact table routes exactly like the reference (the map-based table
// it replaced, reftable_test.go): same pool contents for every probe name,
// scheme and default, the same route listing and count, from random route
// sets and through random chains of updates.

func equivNames(r *rand.Rand) []string {
	labels := []string{"a", "b", "app", "x", "www", "api"}
	tlds := []string{"test", "example.test", "b.test"}
	var out []string
	for range 40 {
		n := labels[r.IntN(len(labels))] + "." + tlds[r.IntN(len(tlds))]
		switch r.IntN(6) {
		case 0:
			n = "*." + n
		case 1:
			n = labels[r.IntN(len(labels))] + "." + n
		}
		out = append(out, n)
	}
	return append(out, "*", "A.Test", "b.test.", "bad name!")
}

var equivBackends = [][]string{
	{"http://127.0.0.1:1"}, {"tls://127.0.0.1:2"}, {"http://127.0.0.1:3", "tls://127.0.0.1:4"},
	{"http://127.0.0.1:5?weight=3", "http://127.0.0.1:6"}, {"http://127.0.0.1:1"}, {"htp://bad"}, {},
}

func randomRoutes(r *rand.Rand, names []string, n int) []RouteSpec {
	var out []RouteSpec
	for range n {
		out = append(out, RouteSpec{
			Name:     names[r.IntN(len(names))],
			Backends: equivBackends[r.IntN(len(equivBackends))],
			Balance:  Algorithm(r.IntN(2)),
		})
	}
	return out
}

func equivProbes(names []string) [][]byte {
	var out [][]byte
	for _, n := range names {
		out = append(out, []byte(n), []byte("q."+n), []byte("Z.Q."+n+":8080"))
	}
	return append(out, []byte(""), []byte("nothing.test"), []byte("[::1]:80"), []byte("*"))
}

// checkEquiv compares got with the reference want on every probe.
func checkEquiv(t *testing.T, what string, got *Table, want *refTable, probes [][]byte) {
	t.Helper()
	for _, p := range probes {
		for s := SchemeHTTP; s <= schemeLast; s++ {
			if g, w := got.Lookup(s, p), want.Lookup(s, p); !samePool(g, w) {
				t.Fatalf("%s: Lookup(%v, %q) = %v, reference %v", what, s, p, g, w)
			}
		}
	}
	if got.Len() != want.Len() {
		t.Fatalf("%s: Len %d, reference %d", what, got.Len(), want.Len())
	}
	if g, w := got.Routes(), want.Routes(); !reflect.DeepEqual(g, w) {
		t.Fatalf("%s: Routes\n%v\nreference\n%v", what, g, w)
	}
}

func TestCompactTableMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	opts := TableOptions{OnInvalid: func(string, error) {}}
	for round := range 200 {
		names := equivNames(r)
		probes := equivProbes(names)
		routes := randomRoutes(r, names, 1+r.IntN(60))
		def := ""
		if r.IntN(3) == 0 {
			def = names[r.IntN(len(names))]
		}
		got, err := NewTable(context.Background(), routes, def, opts)
		if err != nil {
			t.Fatal(err)
		}
		want, err := newRefTable(context.Background(), routes, def, opts)
		if err != nil {
			t.Fatal(err)
		}
		checkEquiv(t, fmt.Sprintf("round %d: built", round), got, want, probes)

		// A chain of updates applied to both.
		for step := range 8 {
			set := randomRoutes(r, names, r.IntN(4))
			var del []string
			for range r.IntN(3) {
				del = append(del, names[r.IntN(len(names))])
			}
			// Update takes each name once.
			set = slices.CompactFunc(set, func(a, b RouteSpec) bool { return a.Name == b.Name })
			if r.IntN(4) == 0 {
				def = names[r.IntN(len(names))]
			}
			g2, _, err1 := got.Update(context.Background(), set, del, def, opts)
			w2, _, err2 := want.Update(context.Background(), set, del, def, opts)
			if (err1 == nil) != (err2 == nil) {
				t.Fatalf("round %d step %d: Update errors %v, reference %v", round, step, err1, err2)
			}
			if err1 != nil {
				continue
			}
			got, want = g2, w2
			checkEquiv(t, fmt.Sprintf("round %d step %d: updated", round, step), got, want, probes)
		}
	}
}

// TestCompactTableErrorsMatchReference: without OnInvalid, the same route
// lists fail with the same error.
func TestCompactTableErrorsMatchReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 300 {
		names := equivNames(r)
		routes := randomRoutes(r, names, 1+r.IntN(10))
		def := ""
		if r.IntN(2) == 0 {
			def = names[r.IntN(len(names))]
		}
		_, err1 := NewTable(context.Background(), routes, def, TableOptions{})
		_, err2 := newRefTable(context.Background(), routes, def, TableOptions{})
		if fmt.Sprint(err1) != fmt.Sprint(err2) {
			t.Fatalf("NewTable(%v, %q): %v, reference %v", routes, def, err1, err2)
		}
	}
}

// TestSameContentCoversEveryField changes each field of RouteSpec but Name
// in turn: sameContent must tell the routes apart, or routes differing in
// a new field would share a record.
func TestSameContentCoversEveryField(t *testing.T) {
	base := RouteSpec{Name: "a.test", Backends: []string{"http://127.0.0.1:1"}}
	typ := reflect.TypeOf(base)
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Name == "Name" {
			continue
		}
		changed := base
		changed.Backends = slices.Clone(base.Backends)
		if !perturb(reflect.ValueOf(&changed).Elem().Field(i)) {
			t.Fatalf("field %s (%v): the test cannot change it; extend perturb", f.Name, f.Type)
		}
		if sameContent(&base, &changed) {
			t.Errorf("sameContent ignores RouteSpec.%s: add it (and to contentHash if it tells routes apart)", f.Name)
		}
	}
}

// perturb makes v differ from its current value; false if it cannot.
func perturb(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + 1)
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Slice:
		v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		m.SetMapIndex(reflect.Zero(v.Type().Key()), reflect.Zero(v.Type().Elem()))
		v.Set(m)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Field(i).CanSet() && perturb(v.Field(i)) {
				return true
			}
		}
		return false
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
	default:
		return false
	}
	return true
}

// FuzzCompactVsReference drives both tables with routes and updates taken
// from data: each byte picks a name, a backend list and whether it is set
// or removed; a zero byte ends the initial route list, later bytes are
// updates. Every probe must route alike.
func FuzzCompactVsReference(f *testing.F) {
	f.Add([]byte{0x11, 0x23, 0x35, 0x47, 0, 0x91, 0x22, 0xa3})
	f.Add([]byte{0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0, 0x8f, 0x8e, 0x0f})
	names := []string{"a.test", "b.test", "*.w.test", "*.x.w.test", "*", "c.x.w.test", "w.test", "A.Test",
		"x.b.test", "*.b.test", "bad name!", "d.test", "*.test", "e.d.test", "f.test", "g.test"}
	probes := equivProbes(names)
	opts := TableOptions{OnInvalid: func(string, error) {}}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 128 {
			return
		}
		var routes []RouteSpec
		i := 0
		for ; i < len(data) && data[i] != 0; i++ {
			routes = append(routes, RouteSpec{Name: names[data[i]&15], Backends: equivBackends[int(data[i]>>4)%len(equivBackends)]})
		}
		def := ""
		if len(routes) > 0 && data[0]&0x80 != 0 {
			def = routes[len(routes)-1].Name
		}
		got, err1 := NewTable(context.Background(), routes, def, opts)
		want, err2 := newRefTable(context.Background(), routes, def, opts)
		if err1 != nil || err2 != nil {
			t.Fatalf("NewTable: %v, reference %v", err1, err2)
		}
		checkEquiv(t, "built", got, want, probes)
		for _, op := range data[min(i+1, len(data)):] {
			name := names[op&15]
			var set []RouteSpec
			var del []string
			if op&0x80 != 0 {
				del = []string{name}
			} else {
				set = []RouteSpec{{Name: name, Backends: equivBackends[int(op>>4)%len(equivBackends)]}}
			}
			g2, _, err1 := got.Update(context.Background(), set, del, def, opts)
			w2, _, err2 := want.Update(context.Background(), set, del, def, opts)
			if err1 != nil || err2 != nil {
				t.Fatalf("Update: %v, reference %v", err1, err2)
			}
			got, want = g2, w2
			checkEquiv(t, fmt.Sprintf("after %x", op), got, want, probes)
		}
	})
}

// TestAddSetMatchesNewTable: a table built from a RouteSet with changes on
// top (as cmd/portier builds Redis's routes) equals NewTable over the same
// routes as a list.
func TestAddSetMatchesNewTable(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	opts := TableOptions{OnInvalid: func(string, error) {}}
	for round := range 100 {
		names := equivNames(r)
		// The set keeps names in the order first set and the last content.
		rb := NewRouteSetBuilder(0)
		var order []string
		last := map[string]RouteSpec{}
		for _, rt := range randomRoutes(r, names, 1+r.IntN(40)) {
			if _, seen := last[rt.Name]; !seen {
				order = append(order, rt.Name)
			}
			last[rt.Name] = rt
			if err := rb.Set(rt); err != nil {
				t.Fatal(err)
			}
		}
		set := rb.Done()
		over := map[string]*RouteSpec{}
		for range r.IntN(5) {
			rt := randomRoutes(r, []string{fmt.Sprintf("o%d.test", r.IntN(4)), order[r.IntN(len(order))]}, 1)[0]
			if n, err := NormalizeRouteName(rt.Name); err != nil || n != rt.Name {
				continue
			}
			if r.IntN(3) == 0 {
				over[rt.Name] = nil
			} else {
				over[rt.Name] = &rt
			}
		}
		var list []RouteSpec
		for _, n := range order {
			if _, changed := over[n]; !changed {
				list = append(list, last[n])
			}
		}
		for _, o := range over {
			if o != nil {
				list = append(list, *o)
			}
		}
		want, err := newRefTable(context.Background(), list, "", opts)
		if err != nil {
			t.Fatal(err)
		}
		b := NewBuilder(context.Background(), set.Len(), opts)
		if err := b.AddSet(set, over); err != nil {
			t.Fatal(err)
		}
		got, err := b.Table("")
		if err != nil {
			t.Fatal(err)
		}
		checkEquiv(t, fmt.Sprintf("round %d", round), got, want, equivProbes(names))
	}
}

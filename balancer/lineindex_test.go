package balancer

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestLineIndex checks lineIndex against a map: short and long names (the
// latter in chunks), growth from a small hint, ids replaced by put, each in
// insertion order and sorted in byte order.
func TestLineIndex(t *testing.T) {
	for _, hint := range []int{0, 1000} {
		x := newLineIndex(hint)
		want := map[string]uint32{}
		var order []string
		for i := range 3000 {
			name := fmt.Sprintf("n%d.example.test", i)
			switch i % 7 {
			case 0:
				name = strings.Repeat("x", lineInline-len(name)) + name // exactly lineInline bytes
			case 1:
				name = strings.Repeat("y", lineInline+1-len(name)) + name // one more: a record
			case 2:
				name = strings.Repeat("z", maxName-len(name)) + name
			}
			// As the table's builder adds a name: find, then insert where find said.
			h := x.hash([]byte(name))
			pos, found := x.find([]byte(name), h)
			if found {
				t.Fatalf("%q found before it was added", name)
			}
			if err := x.insert([]byte(name), h, pos, uint32(i)); err != nil {
				t.Fatalf("insert %q: %v", name, err)
			}
			if _, found := x.find([]byte(name), h); !found {
				t.Fatalf("%q not found once added", name)
			}
			want[name] = uint32(i)
			order = append(order, name)
			if i%3 == 0 {
				if err := x.put([]byte(name), uint32(i)+1e6); err != nil {
					t.Fatal(err)
				}
				want[name] = uint32(i) + 1e6
			}
		}
		if err := x.put(bytes.Repeat([]byte("a"), maxName+1), 1); err != errNameTooLong {
			t.Errorf("put of a %d-byte name: %v, want errNameTooLong", maxName+1, err)
		}
		if x.n != len(want) {
			t.Fatalf("n = %d, want %d", x.n, len(want))
		}
		for name, id := range want {
			if got, ok := x.getString(name); !ok || got != id {
				t.Fatalf("get %q = %d, %v; want %d", name, got, ok, id)
			}
			if _, ok := x.getString(name + "."); ok {
				t.Fatalf("get %q.: found", name)
			}
			if _, ok := x.getString(name[:len(name)-1]); ok {
				t.Fatalf("get %q without its last byte: found", name)
			}
		}
		var got []string
		x.each(func(name []byte, id uint32) bool {
			if want[string(name)] != id {
				t.Fatalf("each: %q has id %d, want %d", name, id, want[string(name)])
			}
			got = append(got, string(name))
			return true
		})
		if !slices.Equal(got, order) {
			t.Fatalf("each: not the insertion order")
		}
		var sorted []string
		for _, p := range x.sorted() {
			sorted = append(sorted, string(x.name(p)))
			if x.id(p) != want[string(x.name(p))] {
				t.Fatalf("id(%d) of %q: %d", p, x.name(p), x.id(p))
			}
		}
		slices.Sort(order)
		if !slices.Equal(sorted, order) {
			t.Fatalf("sorted: not in byte order")
		}
		if a := testing.AllocsPerRun(100, func() { x.getString(order[0]) }); a != 0 {
			t.Errorf("get allocates %.1f times", a)
		}
	}
}

// TestSortByPosition: the result is a stable permutation of the input,
// ordered by the top 22 bits of the keys.
func TestSortByPosition(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{0, 1, 2, 100, 10_000} {
		refs := make([]posRef, n)
		for i := range refs {
			refs[i] = posRef{key: r.Uint32(), ref: uint32(i)}
			if i%3 == 0 && i > 0 {
				refs[i].key = refs[i-1].key ^ uint32(r.IntN(1024)) // same top 22 bits
			}
		}
		in := slices.Clone(refs)
		sortByPosition(refs, make([]posRef, n))
		seen := make([]bool, n)
		for i, p := range refs {
			if p.ref >= uint32(n) || seen[p.ref] || in[p.ref] != p {
				t.Fatalf("n=%d: %v at %d is not one of the input's", n, p, i)
			}
			seen[p.ref] = true
			if i > 0 {
				a, b := refs[i-1], p
				if a.key>>10 > b.key>>10 || a.key>>10 == b.key>>10 && a.ref > b.ref {
					t.Fatalf("n=%d: %v before %v", n, a, b)
				}
			}
		}
	}
}

package balancer

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestSetContentsMatchesSetContent: the batched bulk path gives the same
// set as one SetContent per name, in order (a later equal name wins, within
// a batch and across batches), for batch-sized, odd and empty inputs; and
// it refuses a name over 255 bytes as SetContent does.
func TestSetContentsMatchesSetContent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 15, 16, 17, 33, 1000, 5000} {
		var names [][]byte
		var ids []uint32
		for i := 0; i < n; i++ {
			// About a third are repeats of an earlier or nearby name.
			k := i
			if i > 0 && rng.IntN(3) == 0 {
				k = rng.IntN(i)
			}
			name := fmt.Sprintf("h%d.example.test", k)
			if k%7 == 0 {
				name = fmt.Sprintf("H%d.Example.TEST", k) // a spelling to keep
			}
			names = append(names, []byte(name))
			ids = append(ids, uint32(rng.IntN(4)))
		}
		one, bulk := NewRouteSetBuilder(0), NewRouteSetBuilder(0)
		for _, b := range []*RouteSetBuilder{one, bulk} {
			for c := 0; c < 4; c++ {
				if _, err := b.Content(RouteSpec{Backends: []string{fmt.Sprintf("http://127.0.0.1:%d", 9000+c)}}); err != nil {
					t.Fatal(err)
				}
			}
		}
		for k := range names {
			if err := one.SetContent(names[k], ids[k]); err != nil {
				t.Fatal(err)
			}
		}
		if err := bulk.SetContents(names, ids); err != nil {
			t.Fatal(err)
		}
		a, b := one.Done(), bulk.Done()
		if a.Len() != b.Len() || a.spellings != b.spellings {
			t.Fatalf("n=%d: %d names (spellings %v) one by one, %d (%v) in bulk", n, a.Len(), a.spellings, b.Len(), b.spellings)
		}
		for _, name := range names {
			ra, _ := a.Get(string(name))
			rb, ok := b.Get(string(name))
			if !ok || ra.Backends[0] != rb.Backends[0] {
				t.Fatalf("n=%d: %s is %v one by one, %v (found %v) in bulk", n, name, ra.Backends, rb.Backends, ok)
			}
		}
	}
	long := make([]byte, 256)
	for i := range long {
		long[i] = 'a'
	}
	if err := NewRouteSetBuilder(0).SetContents([][]byte{[]byte("ok.test"), long}, []uint32{0, 0}); err == nil {
		t.Fatal("a 256-byte name was taken")
	}
}

package balancer

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync"
	"testing"
	"time"
)

func TestParseAlgorithm(t *testing.T) {
	for _, a := range []Algorithm{RoundRobin, LeastConn, P2C, SourceHash} {
		got, err := ParseAlgorithm(a.String())
		if err != nil || got != a {
			t.Errorf("ParseAlgorithm(%q) = %v, %v", a.String(), got, err)
		}
	}
	for _, s := range []string{"", "roundrobin", "RR", "Least_Conn", "random"} {
		if _, err := ParseAlgorithm(s); !errors.Is(err, ErrUnknownAlgorithm) {
			t.Errorf("ParseAlgorithm(%q): error %v, want ErrUnknownAlgorithm", s, err)
		}
	}
	if RoundRobin != 0 || Algorithm(9).String() != "algorithm(9)" {
		t.Errorf("zero value %v, unknown %q", RoundRobin, Algorithm(9))
	}
}

func TestParseCheckKind(t *testing.T) {
	for _, k := range []CheckKind{CheckTCP, CheckHTTP, CheckNone} {
		got, err := ParseCheckKind(k.String())
		if err != nil || got != k {
			t.Errorf("ParseCheckKind(%q) = %v, %v", k.String(), got, err)
		}
	}
	if _, err := ParseCheckKind("https"); !errors.Is(err, ErrUnknownCheck) {
		t.Errorf("ParseCheckKind(https): %v", err)
	}
}

func TestHealthCheckWithDefaults(t *testing.T) {
	pkg := HealthCheck{Kind: CheckTCP, Path: "/", Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3}
	d := HealthCheck{Kind: CheckHTTP, Path: "/healthz", Expect: 204, Interval: time.Second, Rise: 5}
	tests := []struct {
		h, d, want HealthCheck
	}{
		{HealthCheck{}, HealthCheck{}, pkg},
		{HealthCheck{}, d, HealthCheck{Kind: CheckHTTP, Path: "/healthz", Expect: 204, Interval: time.Second, Timeout: time.Second, Rise: 5, Fall: 3}},
		{HealthCheck{Kind: CheckNone, Fall: 1, Timeout: 5 * time.Millisecond}, d,
			HealthCheck{Kind: CheckNone, Path: "/healthz", Expect: 204, Interval: time.Second, Timeout: 5 * time.Millisecond, Rise: 5, Fall: 1}},
		{HealthCheck{Path: "/x", Expect: 200, Rise: -1, Interval: -time.Second}, HealthCheck{},
			HealthCheck{Kind: CheckTCP, Path: "/x", Expect: 200, Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3}},
	}
	for _, tc := range tests {
		if got := tc.h.WithDefaults(tc.d); got != tc.want {
			t.Errorf("%+v.WithDefaults(%+v) = %+v, want %+v", tc.h, tc.d, got, tc.want)
		}
	}
}

func TestHashAddr(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.7")
	if HashAddr(v4) != HashAddr(netip.MustParseAddr("::ffff:192.0.2.7")) {
		t.Error("IPv4 and v4-mapped IPv6 hash differently")
	}
	if HashAddr(netip.MustParseAddr("fe80::1%eth0")) != HashAddr(netip.MustParseAddr("fe80::1")) {
		t.Error("the zone changes the hash")
	}
	seen := make(map[uint64]bool)
	for i := range 1000 {
		seen[HashAddr(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))] = true
	}
	if len(seen) != 1000 {
		t.Errorf("1000 addresses give %d hashes", len(seen))
	}
	if n := testing.AllocsPerRun(1000, func() { HashAddr(v4) }); n != 0 {
		t.Errorf("HashAddr allocates %v times", n)
	}
}

// algPool builds a pool of backends 127.0.0.1:9001.. with the given weights
// (negative: draining by URL).
func algPool(t testing.TB, alg Algorithm, weights ...int) *Pool {
	t.Helper()
	p := testPool(t, maxSeq, weights...)
	return newPool(p.Name, alg, p.Backends, maxSeq)
}

// markDown takes b down through its passive health (default fall 3,
// interval 2s: it stays down for the rest of the test).
func markDown(t testing.TB, b *Backend) {
	t.Helper()
	for range 3 {
		b.ConnectFailed()
	}
	if b.Up() {
		t.Fatalf("%v still up after 3 connect failures", b)
	}
}

func share(p *Pool, n int, hash func(k int) uint64) []int {
	got := make([]int, len(p.Backends))
	for k := range n {
		b := p.Pick(hash(k), nil)
		if b == nil {
			continue
		}
		got[b.Spec.Port-9001]++
	}
	return got
}

func TestPickWeightedSplit(t *testing.T) {
	// 1:2:3 over full cycles: exact for round robin and (idle) least_conn,
	// within a few percent for p2c's random draws and source_hash's ring.
	hash := func(k int) uint64 {
		return HashAddr(netip.AddrFrom4([4]byte{10, byte(k >> 16), byte(k >> 8), byte(k)}))
	}
	const n = 60000
	for _, tc := range []struct {
		alg Algorithm
		tol float64 // allowed deviation from the weighted share, fraction of n
	}{
		{RoundRobin, 0},
		{LeastConn, 0},
		{P2C, 0.03},
		{SourceHash, 0.05},
	} {
		p := algPool(t, tc.alg, 1, 2, 3)
		got := share(p, n, hash)
		for i, w := range []int{1, 2, 3} {
			want := float64(n * w / 6)
			if d := math.Abs(float64(got[i]) - want); d > tc.tol*n {
				t.Errorf("%v: backend %d got %d of %d picks, want %.0f ± %.0f", tc.alg, i, got[i], n, want, tc.tol*n)
			}
		}
	}
}

func TestPickSkipsUnusable(t *testing.T) {
	for _, alg := range []Algorithm{RoundRobin, LeastConn, P2C, SourceHash} {
		for _, tc := range []struct {
			name    string
			weights []int
			prep    func(t *testing.T, bs []*Backend)
			want    []bool // which backends may be picked
			nilOK   bool
		}{
			{"down", []int{1, 2, 3}, func(t *testing.T, bs []*Backend) { markDown(t, bs[2]) }, []bool{true, true, false}, false},
			{"runtime drain", []int{1, 2, 3}, func(t *testing.T, bs []*Backend) { bs[1].SetDrain(true) }, []bool{true, false, true}, false},
			{"url drain", []int{1, -2, 3}, nil, []bool{true, false, true}, false},
			{"drain and down", []int{-1, 2, 3}, func(t *testing.T, bs []*Backend) { markDown(t, bs[1]) }, []bool{false, false, true}, false},
			{"all down fails open", []int{1, 1, 1}, func(t *testing.T, bs []*Backend) {
				for _, b := range bs {
					markDown(t, b)
				}
			}, []bool{true, true, true}, false},
			{"all down but one drains", []int{1, 1, 1}, func(t *testing.T, bs []*Backend) {
				markDown(t, bs[0])
				markDown(t, bs[1])
				bs[2].SetDrain(true)
			}, []bool{true, true, false}, false},
			{"all drain", []int{1, 2, -3}, func(t *testing.T, bs []*Backend) {
				bs[0].SetDrain(true)
				bs[1].SetDrain(true)
			}, []bool{false, false, false}, true},
			{"all drain by url", []int{-1, -2}, nil, []bool{false, false}, true},
		} {
			p := algPool(t, alg, tc.weights...)
			if tc.prep != nil {
				tc.prep(t, p.Backends)
			}
			picked := make([]int, len(p.Backends))
			for k := range 3000 {
				b := p.Pick(mix64(uint64(k)), nil)
				if b == nil {
					if !tc.nilOK {
						t.Fatalf("%v %s: Pick returned nil", alg, tc.name)
					}
					continue
				}
				if tc.nilOK {
					t.Fatalf("%v %s: Pick returned %v, want nil", alg, tc.name, b)
				}
				i := int(b.Spec.Port - 9001)
				if !tc.want[i] {
					t.Fatalf("%v %s: picked backend %d", alg, tc.name, i)
				}
				picked[i]++
			}
			for i, ok := range tc.want {
				if ok && picked[i] == 0 && (alg != SourceHash || !tc.nilOK) {
					t.Errorf("%v %s: backend %d never picked (%v)", alg, tc.name, i, picked)
				}
			}
		}
	}
}

func TestPickAvoid(t *testing.T) {
	for _, alg := range []Algorithm{RoundRobin, LeastConn, P2C, SourceHash} {
		p := algPool(t, alg, 1, 2, 3)
		bs := p.Backends
		for k := range 1000 {
			if b := p.Pick(mix64(uint64(k)), bs[2]); b == bs[2] || b == nil {
				t.Fatalf("%v: picked the avoided backend (or nil) with others usable", alg)
			}
		}
		markDown(t, bs[0])
		bs[1].SetDrain(true)
		// The avoided backend is the only usable one: take it.
		if b := p.Pick(1, bs[2]); b != bs[2] {
			t.Errorf("%v: only usable backend avoided: got %v", alg, b)
		}
		// Everything down: fail open, preferring the one that did not just fail.
		markDown(t, bs[2])
		if b := p.Pick(1, bs[2]); b != bs[0] {
			t.Errorf("%v: all down: got %v, want the other non-draining one", alg, b)
		}
		bs[0].SetDrain(true)
		if b := p.Pick(1, bs[2]); b != bs[2] {
			t.Errorf("%v: only the avoided backend left (down): got %v", alg, b)
		}
		bs[2].SetDrain(true)
		if b := p.Pick(1, bs[2]); b != nil {
			t.Errorf("%v: all drain: got %v", alg, b)
		}
	}
}

func TestPickRoundRobinSkipKeepsWeights(t *testing.T) {
	// With the heaviest backend down, the others keep their 1:2 split.
	p := algPool(t, RoundRobin, 1, 2, 3)
	markDown(t, p.Backends[2])
	got := share(p, 3000, func(int) uint64 { return 0 })
	if got[0] != 1000 || got[1] != 2000 || got[2] != 0 {
		t.Errorf("split with backend 2 down: %v, want [1000 2000 0]", got)
	}
}

func TestPickLeastConn(t *testing.T) {
	p := algPool(t, LeastConn, 1, 1, 1)
	bs := p.Backends
	bs[0].Acquire()
	bs[0].Acquire()
	bs[1].Acquire()
	// Loads 2,1,0: the idle one first, then the two at 1, never the busy one.
	if b := p.Pick(0, nil); b != bs[2] {
		t.Fatalf("loads 2,1,0: picked %v, want backend 2", b)
	}
	bs[2].Acquire()
	for range 2 {
		b := p.Pick(0, nil)
		if b == bs[0] {
			t.Fatalf("picked the busiest backend (actives %d %d %d)", bs[0].Active(), bs[1].Active(), bs[2].Active())
		}
		b.Acquire()
	}
	if bs[1].Active() != 2 || bs[2].Active() != 2 {
		t.Fatalf("actives %d %d %d, want 2 2 2", bs[0].Active(), bs[1].Active(), bs[2].Active())
	}
	// All at 2: ties rotate instead of piling onto the first.
	seen := make(map[*Backend]bool)
	for range 3 {
		seen[p.Pick(0, nil)] = true
	}
	if len(seen) != 3 {
		t.Errorf("tied loads: 3 picks hit %d backends", len(seen))
	}
	// Weights count: 4 connections on a weight-4 backend weigh like 1 on a
	// weight-1 one.
	w := algPool(t, LeastConn, 1, 4)
	w.Backends[0].Acquire()
	for range 3 {
		w.Backends[1].Acquire()
	}
	if b := w.Pick(0, nil); b != w.Backends[1] {
		t.Errorf("loads 1/1 vs 3/4: picked %v, want the weight-4 backend", b)
	}
	for _, b := range append(bs, w.Backends...) {
		for b.Active() > 0 {
			b.Release()
		}
	}
}

func TestPickP2CBalancesActive(t *testing.T) {
	// Connections that stay open: p2c keeps the active counts close, where
	// pure random choice would drift apart.
	p := algPool(t, P2C, 1, 1, 1, 1)
	for range 4000 {
		p.Pick(0, nil).Acquire()
	}
	lo, hi := int64(math.MaxInt64), int64(0)
	for _, b := range p.Backends {
		lo, hi = min(lo, b.Active()), max(hi, b.Active())
	}
	if hi-lo > 40 {
		t.Errorf("p2c spread of active counts %d..%d over 4000 open connections", lo, hi)
	}
	// A backend with many connections gets (almost) none of the next picks.
	for range 500 {
		p.Backends[0].Acquire()
	}
	got := 0
	for range 400 {
		b := p.Pick(0, nil)
		if b == p.Backends[0] {
			got++
		}
		b.Acquire()
	}
	if got > 0 {
		t.Errorf("the loaded backend got %d of 400 picks", got)
	}
}

// TestSourceHashConsistent checks the consistent-hashing contract: a client
// sticks to its backend; removing one of 5 backends moves only its clients,
// about 1/5 of all; a down backend's clients move, the others stay.
func TestSourceHashConsistent(t *testing.T) {
	const clients = 10000
	addr := func(k int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(k >> 16), byte(k >> 8), byte(k)}) }
	five := algPool(t, SourceHash, 1, 1, 1, 1, 1)
	four := newPool("p", SourceHash, []*Backend{five.Backends[0], five.Backends[1], five.Backends[3], five.Backends[4]}, maxSeq)
	before := make([]*Backend, clients)
	for k := range clients {
		h := HashAddr(addr(k))
		before[k] = five.Pick(h, nil)
		if again := five.Pick(h, nil); again != before[k] {
			t.Fatalf("client %d: picks %v then %v", k, before[k], again)
		}
	}
	removed := five.Backends[2]
	moved, onRemoved := 0, 0
	for k := range clients {
		got := four.Pick(HashAddr(addr(k)), nil)
		if before[k] == removed {
			onRemoved++
		}
		if got != before[k] {
			moved++
			if before[k] != removed {
				t.Fatalf("client %d moved from %v to %v though its backend stayed", k, before[k], got)
			}
		}
	}
	if f := float64(moved) / clients; f < 0.12 || f > 0.28 || moved != onRemoved {
		t.Errorf("removing 1 of 5 backends moved %d of %d clients (%d were on it)", moved, clients, onRemoved)
	}

	// Down instead of removed: the same clients move, to the same places.
	markDown(t, removed)
	for k := range clients {
		h := HashAddr(addr(k))
		if got, want := five.Pick(h, nil), four.Pick(h, nil); got != want {
			t.Fatalf("client %d: with backend 2 down picks %v, without it %v", k, got, want)
		}
	}
}

func TestPickAllocsAlgorithms(t *testing.T) {
	for _, alg := range []Algorithm{RoundRobin, LeastConn, P2C, SourceHash} {
		for _, weights := range [][]int{{1, 1}, {5, 1, 1}, {1000, 999, 998, 997, 996}, {-1}} {
			p := algPool(t, alg, weights...)
			h := HashAddr(netip.MustParseAddr("192.0.2.1"))
			if n := testing.AllocsPerRun(1000, func() { p.Pick(h, nil) }); n != 0 {
				t.Errorf("%v %v: Pick allocates %v times per call", alg, weights, n)
			}
			if len(p.Backends) > 1 {
				markDown(t, p.Backends[0])
				avoid := p.Backends[1]
				if n := testing.AllocsPerRun(1000, func() { p.Pick(h, avoid) }); n != 0 {
					t.Errorf("%v %v with one down: Pick allocates %v times per call", alg, weights, n)
				}
			}
		}
	}
	b := algPool(t, RoundRobin, 1).Backends[0]
	if n := testing.AllocsPerRun(1000, func() {
		b.Acquire()
		b.ConnectSucceeded()
		b.ConnectFailed()
		_ = b.Up() && b.Draining()
		b.Release()
	}); n != 0 {
		t.Errorf("Backend state methods allocate %v times", n)
	}
}

func TestPickConcurrentAlgorithms(t *testing.T) {
	// Run with -race: picks, acquire/release and health changes race freely.
	for _, alg := range []Algorithm{RoundRobin, LeastConn, P2C, SourceHash} {
		p := algPool(t, alg, 1, 2, 3)
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for k := range 2000 {
					b := p.Pick(uint64(k*g), nil)
					if b == nil {
						t.Errorf("%v: nil pick", alg)
						return
					}
					b.Acquire()
					if k%7 == 0 {
						b.ConnectFailed()
					} else {
						b.ConnectSucceeded()
					}
					b.Release()
				}
			})
		}
		wg.Go(func() {
			for k := range 200 {
				p.Backends[k%3].SetDrain(k%2 == 0)
			}
		})
		wg.Wait()
		for _, b := range p.Backends {
			if b.Active() != 0 {
				t.Errorf("%v: %v has %d active after balanced acquire/release", alg, b, b.Active())
			}
		}
	}
}

func BenchmarkPickAlgorithms(b *testing.B) {
	h := HashAddr(netip.MustParseAddr("192.0.2.1"))
	for _, alg := range []Algorithm{RoundRobin, LeastConn, P2C, SourceHash} {
		for _, weights := range [][]int{{1, 1, 1, 1}, {5, 1, 1}} {
			p := algPool(b, alg, weights...)
			name := fmt.Sprintf("%v/%v", alg, weights)
			b.Run(name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					p.Pick(h, nil)
				}
			})
			b.Run(name+"-parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						p.Pick(h, nil)
					}
				})
			})
		}
		p := algPool(b, alg, 1, 1, 1, 1)
		markDown(b, p.Backends[0])
		markDown(b, p.Backends[1])
		b.Run(fmt.Sprintf("%v/half-down", alg), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Pick(h, nil)
			}
		})
	}
}

package balancer_test

// Benchmarks of route tables at the scale of a large Redis route store:
// one million names. The 1M table is built once per process (sync.Once)
// and only when a benchmark asks for it, outside the timer; -short skips it.
//
//	go test ./balancer -run XXX -bench Scale -benchtime 1x   # quick
//	go test ./balancer -run XXX -bench Scale                 # figures

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"

	"github.com/portier/portier/balancer"
)

// Every wildEvery-th route is a wildcard "*.wN.scale.test" instead of the
// exact "hN.scale.test", so that wildcard lookups probe a large wild map.
const wildEvery = 1000

// scaleSpecs returns n routes with one IP-literal backend each (no DNS);
// backends are distinct, as in a store where every name is its own app.
func scaleSpecs(n int) []balancer.RouteSpec {
	specs := make([]balancer.RouteSpec, n)
	for i := range specs {
		name := fmt.Sprintf("h%d.scale.test", i)
		if i%wildEvery == 0 {
			name = fmt.Sprintf("*.w%d.scale.test", i)
		}
		specs[i] = balancer.RouteSpec{
			Name:     name,
			Backends: []string{fmt.Sprintf("http://10.%d.%d.%d:8080", i>>16&255, i>>8&255, i&255)},
		}
	}
	return specs
}

// scaleTable is a built table with the names its lookups use.
type scaleTable struct {
	t                    *balancer.Table
	exact, missing, wild [][]byte
	heapBytes            uint64 // heap in use attributable to the table, after GC
	names                int
}

// lookupNames is how many distinct names each kind of lookup cycles
// through: enough to leave the CPU caches for the 1M table. 4,096 did not:
// their slots and records (about 0.8 MB) stayed in a 4 MiB L2, and exact
// hits measured 104-116 ns against 223-257 ns with 65,536 names.
const lookupNames = 1 << 16

func buildScale(tb testing.TB, n int) *scaleTable {
	specs := scaleSpecs(n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	t, err := balancer.NewTable(context.Background(), specs, "", balancer.TableOptions{})
	if err != nil {
		tb.Fatalf("NewTable(%d): %v", n, err)
	}
	specs = nil // only the table stays reachable
	runtime.GC()
	runtime.ReadMemStats(&after)
	st := &scaleTable{t: t, names: n}
	if after.HeapAlloc > before.HeapAlloc {
		st.heapBytes = after.HeapAlloc - before.HeapAlloc
	}
	if t.Len() != n {
		tb.Fatalf("table has %d routes, want %d", t.Len(), n)
	}
	stride := max(1, n/lookupNames)
	for k := range lookupNames {
		i := (k * stride) % n
		if i%wildEvery == 0 {
			i++ // an exact name
		}
		// Mixed case and a port, as in real Host headers.
		st.exact = append(st.exact, fmt.Appendf(nil, "H%d.Scale.test:80", i))
		st.missing = append(st.missing, fmt.Appendf(nil, "h%d.missing.test", i))
		w := (k % max(1, n/wildEvery)) * wildEvery
		st.wild = append(st.wild, fmt.Appendf(nil, "app%d.w%d.scale.test", k, w))
	}
	// In a random order: in the order of the names (k*stride), the reads
	// of an index that stores names or records in insertion order would
	// follow a stride the hardware prefetches.
	rng := rand.New(rand.NewPCG(1, 2))
	for k := lookupNames - 1; k > 0; k-- {
		j := rng.IntN(k + 1)
		st.exact[k], st.exact[j] = st.exact[j], st.exact[k]
		st.missing[k], st.missing[j] = st.missing[j], st.missing[k]
		st.wild[k], st.wild[j] = st.wild[j], st.wild[k]
	}
	// Copied in the new order, so that reading the names themselves (a Host
	// header is read from a buffer in cache) follows them in memory.
	for k := range lookupNames {
		st.exact[k] = bytes.Clone(st.exact[k])
		st.missing[k] = bytes.Clone(st.missing[k])
		st.wild[k] = bytes.Clone(st.wild[k])
	}
	// The names must hit, miss and match as intended, or the figures mean
	// nothing.
	for k := range lookupNames {
		if t.Lookup(balancer.SchemeHTTP, st.exact[k]) == nil {
			tb.Fatalf("exact %s: no pool", st.exact[k])
		}
		if t.Lookup(balancer.SchemeHTTP, st.missing[k]) != nil {
			tb.Fatalf("missing %s: got a pool", st.missing[k])
		}
		if t.Lookup(balancer.SchemeHTTP, st.wild[k]) == nil {
			tb.Fatalf("wildcard %s: no pool", st.wild[k])
		}
		if t.Lookup(balancer.SchemeTLS, st.exact[k]) != nil {
			tb.Fatalf("exact %s: tls pool from an http-only route", st.exact[k])
		}
	}
	return st
}

var (
	scale1MOnce sync.Once
	scale1M     *scaleTable
	scale1MErr  string
)

// table1M builds the 1M table on first use, once per process.
func table1M(b *testing.B) *scaleTable {
	if testing.Short() {
		b.Skip("-short: the 1,000,000-name table is not built")
	}
	scale1MOnce.Do(func() {
		// A failure inside Once must not leave later callers with nil.
		r := &recorder{TB: b}
		scale1M = buildScale(r, 1_000_000)
		scale1MErr = r.msg
	})
	if scale1MErr != "" {
		b.Fatal(scale1MErr)
	}
	return scale1M
}

// recorder turns Fatalf into a recorded message plus Goexit, so that the
// benchmark that built the table fails and the rest see the message.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	r.TB.Fatalf(format, args...)
}

var sink *balancer.Pool

func BenchmarkScaleLookup1M(b *testing.B) {
	small := buildScale(b, 100)
	tables := []struct {
		name string
		get  func(b *testing.B) *scaleTable
	}{
		{"names=100", func(*testing.B) *scaleTable { return small }},
		{"names=1M", table1M},
	}
	for _, tc := range tables {
		for _, kind := range []string{"exact", "missing", "wildcard"} {
			b.Run(tc.name+"/"+kind, func(b *testing.B) {
				st := tc.get(b)
				names := map[string][][]byte{"exact": st.exact, "missing": st.missing, "wildcard": st.wild}[kind]
				b.ReportAllocs()
				var p *balancer.Pool
				i := 0
				for b.Loop() {
					p = st.t.Lookup(balancer.SchemeHTTP, names[i&(lookupNames-1)])
					i++
				}
				sink = p
				b.ReportMetric(float64(st.heapBytes)/(1<<20), "table-heap-MiB")
				b.ReportMetric(float64(st.heapBytes)/float64(st.names), "heap-B/route")
				if a := testing.AllocsPerRun(100, func() {
					sink = st.t.Lookup(balancer.SchemeHTTP, names[0])
				}); a != 0 {
					b.Errorf("Lookup %s allocates %.1f times per call, want 0", kind, a)
				}
			})
		}
	}
}

func BenchmarkScaleNewTable(b *testing.B) {
	const n = 100_000
	specs := scaleSpecs(n)
	b.ReportAllocs()
	for b.Loop() {
		t, err := balancer.NewTable(context.Background(), specs, "", balancer.TableOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if t.Len() != n {
			b.Fatalf("table has %d routes, want %d", t.Len(), n)
		}
	}
	b.ReportMetric(n, "routes/op")
}

// BenchmarkScaleUpdate1M: one route changed in a 1,000,000-name table with
// Table.Update, as a Redis change is applied.
func BenchmarkScaleUpdate1M(b *testing.B) {
	st := table1M(b)
	set := []balancer.RouteSpec{{Name: "h777.scale.test", Backends: []string{"http://10.200.0.1:8080"}}}
	b.ReportAllocs()
	for b.Loop() {
		nt, _, err := st.t.Update(context.Background(), set, nil, "", balancer.TableOptions{})
		if err != nil || nt.Len() != st.t.Len() {
			b.Fatalf("update: %v, %d routes", err, nt.Len())
		}
	}
}

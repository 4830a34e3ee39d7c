package balancer

// The compact table beside the reference (map-based) table in one run, at
// the shape of a PaaS store: many names on few pools. The machine is
// shared and noisy: compare the two lines of one run, not runs.
//
//	go test ./balancer -run XXX -bench CompactVsReference

import (
	"context"
	"fmt"
	"runtime"
	"testing"
)

func paasSpecs(n, pools int) []RouteSpec {
	specs := make([]RouteSpec, n)
	for i := range specs {
		specs[i] = RouteSpec{Name: fmt.Sprintf("h%d.paas.test", i), Backends: []string{fmt.Sprintf("http://10.0.%d.1:8080", i%pools)}}
	}
	return specs
}

func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func BenchmarkCompactVsReference(b *testing.B) {
	n := 1_000_000
	if testing.Short() {
		n = 10_000
	}
	specs := paasSpecs(n, 50)
	names := make([][]byte, 1<<14)
	missing := make([][]byte, len(names))
	for k := range names {
		i := (k * 7919) % n // spread over the table: cache-missing
		names[k] = fmt.Appendf(nil, "h%d.paas.test", i)
		missing[k] = fmt.Appendf(nil, "h%d.missing.test", i)
	}
	type lookuper interface{ Lookup(Scheme, []byte) *Pool }
	build := map[string]func() lookuper{
		"compact": func() lookuper {
			t, err := NewTable(context.Background(), specs, "", TableOptions{})
			if err != nil {
				b.Fatal(err)
			}
			return t
		},
		"reference": func() lookuper {
			t, err := newRefTable(context.Background(), specs, "", TableOptions{})
			if err != nil {
				b.Fatal(err)
			}
			return t
		},
	}
	for _, impl := range []string{"compact", "reference"} {
		before := heapInUse()
		t := build[impl]()
		heap := float64(heapInUse()-before) / float64(n)
		for _, kind := range []string{"exact", "missing"} {
			b.Run(impl+"/"+kind, func(b *testing.B) {
				in := map[string][][]byte{"exact": names, "missing": missing}[kind]
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					sinkPool = t.Lookup(SchemeHTTP, in[i&(len(in)-1)])
					i++
				}
				b.ReportMetric(heap, "heap-B/route")
			})
		}
		runtime.KeepAlive(t)
	}
}

var sinkPool *Pool

// BenchmarkBuildFromSet1M: a table of 1,000,000 names on 50 pools built
// from a RouteSet, as after a full Redis sync.
func BenchmarkBuildFromSet1M(b *testing.B) {
	if testing.Short() {
		b.Skip("-short")
	}
	rb := NewRouteSetBuilder(1_000_000)
	for _, r := range paasSpecs(1_000_000, 50) {
		if err := rb.Set(r); err != nil {
			b.Fatal(err)
		}
	}
	set := rb.Done()
	b.ReportAllocs()
	for b.Loop() {
		tb := NewBuilder(context.Background(), set.Len(), TableOptions{})
		if err := tb.AddSet(set, nil); err != nil {
			b.Fatal(err)
		}
		if t, err := tb.Table(""); err != nil || t.Len() != set.Len() {
			b.Fatal(err)
		}
	}
}

package balancer

import (
	"fmt"
	"testing"
)

var idxSink uint32

// BenchmarkIndexGet1M: lineIndex and nameIndex alone, 1M names, hits and
// misses over 65,536 of them in name order (a loop this small overlaps the
// misses of successive lookups: compare with BenchmarkScaleLookup1M).
func BenchmarkIndexGet1M(b *testing.B) {
	if testing.Short() {
		b.Skip("-short: no 1M index")
	}
	const n = 1_000_000
	li := newLineIndex(n)
	ni := newNameIndex(n)
	for i := range n {
		name := fmt.Appendf(nil, "h%d.scale.test", i)
		li.put(name, uint32(i))
		ni.put(name, uint32(i))
	}
	var hit, miss [][]byte
	for k := range 1 << 16 {
		i := k * 15
		hit = append(hit, fmt.Appendf(nil, "h%d.scale.test", i))
		miss = append(miss, fmt.Appendf(nil, "h%d.missing.test", i))
	}
	for _, kind := range []string{"hit", "miss"} {
		names := map[string][][]byte{"hit": hit, "miss": miss}[kind]
		b.Run("line/"+kind, func(b *testing.B) {
			i := 0
			for b.Loop() {
				id, _ := li.get(names[i&(1<<16-1)])
				idxSink += id
				i++
			}
		})
		b.Run("name/"+kind, func(b *testing.B) {
			i := 0
			for b.Loop() {
				id, _ := ni.get(names[i&(1<<16-1)])
				idxSink += id
				i++
			}
		})
	}
}

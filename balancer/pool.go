package balancer

import "sync/atomic"

// maxSeq caps the precomputed smooth weighted round-robin sequence of a pool
// (8 KiB of uint16 indices). Pools whose cycle is longer use the Weyl
// fallback, which needs memory proportional to the number of backends only.
const maxSeq = 4096

// Pool is the set of backends of one scheme for one route name.
//
// Pick is lock-free: every mode maps the value of one atomic counter to a
// backend through read-only data computed when the pool is built. Because each
// counter value is handed out exactly once, the weighted split is exact over
// every full cycle no matter how many goroutines pick concurrently.
type Pool struct {
	Name     string
	Backends []*Backend // all backends, draining ones included

	next atomic.Uint64

	// Exactly one of the following is set when some backend is usable;
	// none when all backends drain.
	equal []*Backend // usable backends, all of the same weight: round robin
	seq   []uint16   // one full SWRR cycle as indices into Backends
	weyl  *weylWRR   // cycle longer than maxSeq
}

// Pick returns the next backend by smooth weighted round robin, skipping
// draining backends, or nil if no backend is usable. Safe for concurrent use;
// allocates nothing.
func (p *Pool) Pick() *Backend {
	c := p.next.Add(1) - 1
	switch {
	case p.seq != nil:
		return p.Backends[p.seq[c%uint64(len(p.seq))]]
	case p.equal != nil:
		return p.equal[c%uint64(len(p.equal))]
	case p.weyl != nil:
		return p.weyl.pick(c)
	}
	return nil
}

// newPool builds a pool; seqCap bounds the precomputed sequence (maxSeq in
// production, smaller in tests to exercise the fallback).
func newPool(name string, backends []*Backend, seqCap int) *Pool {
	p := &Pool{Name: name, Backends: backends}
	var usable []int
	for i, b := range backends {
		if !b.Spec.Drain {
			usable = append(usable, i)
		}
	}
	if len(usable) == 0 {
		return p
	}
	g := 0
	equal := true
	for _, i := range usable {
		w := backends[i].Spec.Weight
		g = gcd(g, w)
		equal = equal && w == backends[usable[0]].Spec.Weight
	}
	if equal {
		p.equal = make([]*Backend, len(usable))
		for k, i := range usable {
			p.equal[k] = backends[i]
		}
		return p
	}
	weights := make([]int, len(usable))
	total := 0
	for k, i := range usable {
		weights[k] = backends[i].Spec.Weight / g
		total += weights[k]
	}
	if total <= seqCap && len(backends) <= 1<<16 {
		p.seq = make([]uint16, total)
		for k, pos := range swrr(weights, total) {
			p.seq[k] = uint16(usable[pos])
		}
		return p
	}
	p.weyl = newWeyl(backends, usable, weights, total)
	return p
}

// swrr returns n picks of nginx's smooth weighted round robin over weights
// (indices into weights): each step adds every weight to its current value,
// picks the largest current value (first on a tie) and subtracts the total
// from it. With weights 5,1,1 one cycle is 0,0,1,0,2,0,0.
func swrr(weights []int, n int) []int {
	total := 0
	for _, w := range weights {
		total += w
	}
	cur := make([]int, len(weights))
	out := make([]int, n)
	for k := range out {
		best := 0
		for i, w := range weights {
			cur[i] += w
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		out[k] = best
	}
	return out
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// weylWRR serves pools whose SWRR cycle exceeds maxSeq. The cycle's slots
// 0..total-1 are split into consecutive ranges, one per usable backend and as
// long as its weight; pick c visits slot (c*stride) mod total. stride is
// coprime with total, so every total picks visit every slot exactly once (an
// exact weighted split), and stride ≈ total/φ spreads a backend's slots evenly
// over the cycle (a Weyl sequence), which keeps the order smooth without a
// lock or per-pick state: a backend strays a few picks (under 4 for weights
// around 1000) from its exact share, where SWRR stays within one.
type weylWRR struct {
	total  uint64
	stride uint64
	ends   []uint32   // ends[k] = sum of weights[0..k]
	picks  []*Backend // usable backends, parallel to ends
}

func newWeyl(backends []*Backend, usable, weights []int, total int) *weylWRR {
	w := &weylWRR{
		total: uint64(total),
		ends:  make([]uint32, len(usable)),
		picks: make([]*Backend, len(usable)),
	}
	sum := 0
	for k, i := range usable {
		sum += weights[k]
		w.ends[k] = uint32(sum)
		w.picks[k] = backends[i]
	}
	s := int(float64(total)*0.6180339887498949 + 0.5)
	for gcd(s, total) != 1 {
		s++
	}
	w.stride = uint64(s)
	return w
}

func (w *weylWRR) pick(c uint64) *Backend {
	// total <= 1000 * len(backends), so the product cannot overflow for any
	// realistic pool (it would need more than 2^32/1000 backends).
	slot := uint32((c % w.total) * w.stride % w.total)
	lo, hi := 0, len(w.ends)-1 // first k with ends[k] > slot
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if w.ends[mid] > slot {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return w.picks[lo]
}

package balancer

import "sync/atomic"

// maxSeq caps the precomputed smooth weighted round-robin sequence of a pool
// (8 KiB of uint16 indices). Pools whose cycle is longer use the Weyl
// fallback, which needs memory proportional to the number of backends only.
const maxSeq = 4096

// Pool is the set of backends of one scheme for one route name.
//
// Pick is lock-free and allocates nothing. Round robin maps the value of one
// atomic counter to a backend through read-only data computed when the pool
// is built: because each counter value is handed out exactly once, the
// weighted split is exact over every full cycle no matter how many goroutines
// pick concurrently.
type Pool struct {
	// Name is the route the pool was built for. Routes whose contents
	// (backends, balance, checks) are equal share one pool, named after the
	// first of them in the table.
	Name      string
	Algorithm Algorithm
	Backends  []*Backend  // all backends, draining ones included
	Stats     *RouteStats // per-route metrics; nil unless the route asks for them
	ALPN      []ALPNPool  // a TLS pool's pools per ALPN protocol (ForProtocol)
	Reuse     Reuse       // the route's keep-alive pool settings

	// next is the round-robin counter; p2c draws its random numbers from it
	// too (splitmix64 over the counter).
	next atomic.Uint64

	// Exactly one of the following is set when some backend does not drain
	// by its URL; none when all do.
	equal []int32   // such backends, all of the same weight: round robin
	seq   []uint16  // one full SWRR cycle as indices into Backends
	weyl  *weylWRR  // cycle longer than maxSeq
	ring  *hashRing // source_hash only
}

// Pick returns a backend for a new connection, or nil when every backend
// drains (or there is none). hash is HashAddr of the client's IP, used by
// source_hash only. avoid is a backend that just failed for this connection:
// it is skipped when any other backend is usable (nil: none).
//
// Backends that are down or draining are skipped. When every non-draining
// backend is down, Pick fails open and returns one of them anyway: the
// health view may be stale, and a real failure still ends in a 502 after the
// engine's retries. Safe for concurrent use; allocates nothing.
func (p *Pool) Pick(hash uint64, avoid *Backend) *Backend {
	switch p.Algorithm {
	case LeastConn:
		return p.pickLeast(avoid)
	case P2C:
		return p.pickP2C(avoid)
	case SourceHash:
		return p.pickHash(hash, avoid)
	}
	return p.pickRR(avoid)
}

// rrIndex maps counter value c to the index of a backend by smooth weighted
// round robin over the backends that do not drain by URL; -1 if all do.
func (p *Pool) rrIndex(c uint64) int {
	switch {
	case p.seq != nil:
		return int(p.seq[c%uint64(len(p.seq))])
	case p.equal != nil:
		return int(p.equal[c%uint64(len(p.equal))])
	case p.weyl != nil:
		return p.weyl.pick(c)
	}
	return -1
}

// rrRetries bounds how many further counter values round robin takes when
// its turn falls on an unusable backend. Taking fresh values (rather than
// looking ahead) keeps the split among the usable backends exactly weighted;
// the bound caps the cost when most are down, after which a scan decides.
const rrRetries = 16

func (p *Pool) pickRR(avoid *Backend) *Backend {
	c := p.next.Add(1) - 1
	for range rrRetries {
		i := p.rrIndex(c)
		if i < 0 {
			return nil
		}
		if b := p.Backends[i]; b != avoid && b.usable() {
			return b
		}
		c = p.next.Add(1) - 1
	}
	return p.fallback(c, avoid)
}

// pickLeast scans from the round-robin candidate for the lowest
// active/weight: with equal loads (idle pools) it is exactly weighted round
// robin, and ties never pile onto the first backend.
func (p *Pool) pickLeast(avoid *Backend) *Backend {
	c := p.next.Add(1) - 1
	i := p.rrIndex(c)
	if i < 0 {
		return nil
	}
	if b := p.least(i, avoid); b != nil {
		return b
	}
	return p.fallback(c, avoid)
}

// least returns the usable backend (not avoid) with the lowest
// Active()/Weight, the first in scan order from start on a tie; nil if none
// is usable.
func (p *Pool) least(start int, avoid *Backend) *Backend {
	var best *Backend
	var bestA, bestW int64
	n := len(p.Backends)
	for j := range n {
		k := start + j
		if k >= n {
			k -= n
		}
		b := p.Backends[k]
		if b == avoid || !b.usable() {
			continue
		}
		// a/w < bestA/bestW without division; weights are at most
		// MaxWeight, so the products cannot overflow.
		a, w := b.Active(), int64(b.Spec.Weight)
		if best == nil || a*bestW < bestA*w {
			best, bestA, bestW = b, a, w
		}
	}
	return best
}

// pickP2C draws two backends at random, weighted (random positions of the
// round-robin cycle), and keeps the one with the lower active/weight.
func (p *Pool) pickP2C(avoid *Backend) *Backend {
	z := mix64(p.next.Add(golden))
	i, j := p.rrIndex(z&0xffffffff), p.rrIndex(z>>32)
	if i < 0 {
		return nil
	}
	if n := len(p.Backends); i == j && n > 1 {
		// Two draws of one backend would hand it the pick whatever its
		// load: take any other for the second.
		j = (i + 1 + int((z>>40)%uint64(n-1))) % n
	}
	a, b := p.Backends[i], p.Backends[j]
	aok := a != avoid && a.usable()
	bok := b != avoid && b.usable()
	switch {
	case aok && bok:
		if b.Active()*int64(a.Spec.Weight) < a.Active()*int64(b.Spec.Weight) {
			return b
		}
		return a
	case aok:
		return a
	case bok:
		return b
	}
	// Both draws unusable: the least loaded of the rest, from a random start.
	if b := p.least(int(z%uint64(len(p.Backends))), avoid); b != nil {
		return b
	}
	return p.fallback(z, avoid)
}

// pickHash walks the ring from the client's point to the first usable
// backend: a client sticks to its backend, and a down backend's clients
// spread over the next points (others keep theirs).
func (p *Pool) pickHash(hash uint64, avoid *Backend) *Backend {
	r := p.ring
	if r == nil || len(r.points) == 0 {
		return nil
	}
	pos := r.search(hash)
	n := len(r.points)
	for j := range min(n, ringWalk) {
		k := pos + j
		if k >= n {
			k -= n
		}
		if b := p.Backends[r.owners[k]]; b != avoid && b.usable() {
			return b
		}
	}
	// Start the scan at the client's own backend so that failing open
	// stays sticky too.
	return p.fallback(uint64(r.owners[pos]), avoid)
}

// fallback scans all backends from index start mod len: the first usable one
// other than avoid; else avoid if usable; else (failing open) the first
// non-draining one other than avoid; else avoid if it does not drain; else
// nil.
func (p *Pool) fallback(start uint64, avoid *Backend) *Backend {
	n := len(p.Backends)
	if n == 0 {
		return nil
	}
	s := int(start % uint64(n))
	var down *Backend
	avoidUp, avoidIn := false, false
	for j := range n {
		k := s + j
		if k >= n {
			k -= n
		}
		b := p.Backends[k]
		if b.Draining() {
			continue
		}
		up := b.Up()
		if b == avoid {
			avoidIn, avoidUp = true, up
			continue
		}
		if up {
			return b
		}
		if down == nil {
			down = b
		}
	}
	switch {
	case avoidUp:
		return avoid
	case down != nil:
		return down
	case avoidIn:
		return avoid
	}
	return nil
}

// newPool builds a pool; seqCap bounds the precomputed sequence (maxSeq in
// production, smaller in tests to exercise the fallback).
func newPool(name string, alg Algorithm, backends []*Backend, seqCap int) *Pool {
	p := &Pool{Name: name, Algorithm: alg, Backends: backends}
	if alg == SourceHash && len(backends) > 0 {
		p.ring = newRing(backends)
	}
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
		p.equal = make([]int32, len(usable))
		for k, i := range usable {
			p.equal[k] = int32(i)
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
	p.weyl = newWeyl(usable, weights, total)
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
	ends   []uint32 // ends[k] = sum of weights[0..k]
	picks  []int32  // indices of the usable backends, parallel to ends
}

func newWeyl(usable, weights []int, total int) *weylWRR {
	w := &weylWRR{
		total: uint64(total),
		ends:  make([]uint32, len(usable)),
		picks: make([]int32, len(usable)),
	}
	sum := 0
	for k, i := range usable {
		sum += weights[k]
		w.ends[k] = uint32(sum)
		w.picks[k] = int32(i)
	}
	s := int(float64(total)*0.6180339887498949 + 0.5)
	for gcd(s, total) != 1 {
		s++
	}
	w.stride = uint64(s)
	return w
}

func (w *weylWRR) pick(c uint64) int {
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
	return int(w.picks[lo])
}

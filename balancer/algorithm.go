package balancer

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
)

// Algorithm selects how a Pool picks a backend.
type Algorithm uint8

const (
	RoundRobin Algorithm = iota // smooth weighted round robin
	LeastConn                   // fewest active connections per weight
	P2C                         // power of two random choices by active/weight
	SourceHash                  // consistent hash of the client IP
)

// ErrUnknownAlgorithm is returned by ParseAlgorithm for an unknown name.
var ErrUnknownAlgorithm = errors.New("unknown balancing algorithm")

// ParseAlgorithm parses "round_robin", "least_conn", "p2c" or "source_hash".
func ParseAlgorithm(s string) (Algorithm, error) {
	switch s {
	case "round_robin":
		return RoundRobin, nil
	case "least_conn":
		return LeastConn, nil
	case "p2c":
		return P2C, nil
	case "source_hash":
		return SourceHash, nil
	}
	return 0, fmt.Errorf("%w %q (want round_robin, least_conn, p2c or source_hash)", ErrUnknownAlgorithm, s)
}

// String returns the name ParseAlgorithm accepts.
func (a Algorithm) String() string {
	switch a {
	case RoundRobin:
		return "round_robin"
	case LeastConn:
		return "least_conn"
	case P2C:
		return "p2c"
	case SourceHash:
		return "source_hash"
	}
	return "algorithm(" + strconv.Itoa(int(a)) + ")"
}

// mix64 is splitmix64's finalizer: a cheap bijection that spreads every
// input bit over the output.
func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// golden is splitmix64's increment (2^64/φ).
const golden = 0x9e3779b97f4a7c15

// HashAddr hashes a client IP for source_hash. An IPv4 address and its
// v4-mapped IPv6 form hash the same; the zone is ignored. Allocates nothing.
func HashAddr(a netip.Addr) uint64 {
	b := a.Unmap().As16() // the v4-mapped form for IPv4
	var hi, lo uint64
	for i := range 8 {
		hi = hi<<8 | uint64(b[i])
		lo = lo<<8 | uint64(b[8+i])
	}
	return mix64(mix64(hi^golden) ^ lo)
}

// Ring sizing: ringPerWeight points per unit of weight keeps a 5-backend
// pool within about 2% of its weighted split; ringBudget caps the points of
// pools with large weights (then each unit gets fewer).
const (
	ringPerWeight = 160
	ringBudget    = 16384
	// ringWalk bounds the walk past unusable points before Pick falls back
	// to a scan: with 4 of 5 backends down, 64 points all missing the live
	// one has a probability under 1e-6.
	ringWalk = 64
)

// hashRing is a consistent-hash ring with weighted virtual nodes. A
// backend's points depend only on its address and weight (while the pool's
// weights sum to at most ringBudget/ringPerWeight = 102; beyond, the points
// per unit of weight shrink with the sum), so removing one backend moves only
// the keys that were on its points.
type hashRing struct {
	points []uint64 // sorted
	owners []int32  // index into Pool.Backends, parallel to points
}

func newRing(backends []*Backend) *hashRing {
	total := 0
	for _, b := range backends {
		total += b.Spec.Weight
	}
	per := min(ringPerWeight, max(1, ringBudget/max(total, 1)))
	type point struct {
		h     uint64
		owner int32
	}
	var pts []point
	for i, b := range backends {
		n := b.Spec.Weight * per
		if total > ringBudget {
			n = max(1, b.Spec.Weight*ringBudget/total)
		}
		base := HashAddr(b.Addr.Addr()) ^ mix64(uint64(b.Addr.Port())+golden)
		if b.Spec.IsUnix() {
			base = hashString(b.Spec.Path)
		}
		for j := range n {
			pts = append(pts, point{mix64(base + uint64(j+1)*golden), int32(i)})
		}
	}
	// Ties (practically never) are ordered by owner so the ring does not
	// depend on the sort's stability.
	slices.SortFunc(pts, func(a, b point) int {
		if a.h != b.h {
			if a.h < b.h {
				return -1
			}
			return 1
		}
		return int(a.owner - b.owner)
	})
	r := &hashRing{points: make([]uint64, len(pts)), owners: make([]int32, len(pts))}
	for k, p := range pts {
		r.points[k], r.owners[k] = p.h, p.owner
	}
	return r
}

// search returns the index of the first point at or after key, wrapping.
func (r *hashRing) search(key uint64) int {
	lo, hi := 0, len(r.points)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if r.points[mid] < key {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == len(r.points) {
		return 0
	}
	return lo
}

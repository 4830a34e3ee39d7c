package balancer

import (
	"hash/maphash"
	"slices"
)

// Route contents are interned: routes that differ only by name share one
// record (in a Table: one backend list and one Pool per scheme). In the
// PaaS case most names point at one of a few pools, so a million names on
// fifty pools store fifty.

// sameContent reports whether a and b are the same route but for their
// names. Every field of RouteSpec except Name must take part;
// TestSameContentCoversEveryField fails when a field is added without it.
func sameContent(a, b *RouteSpec) bool {
	return a.Balance == b.Balance && a.Health == b.Health && a.Metrics == b.Metrics && a.Reuse == b.Reuse &&
		slices.Equal(a.Backends, b.Backends) && slices.EqualFunc(a.ALPN, b.ALPN, func(x, y ALPNRoute) bool {
		return x.Protocol == y.Protocol && slices.Equal(x.Backends, y.Backends)
	})
}

// contentHash hashes what tells most routes apart: their backends. Equal
// contents have equal hashes (sameContent decides).
func contentHash(seed maphash.Seed, r *RouteSpec) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	for _, b := range r.Backends {
		h.WriteString(b)
		h.WriteByte(0)
	}
	h.WriteByte(byte(r.Balance))
	return h.Sum64()
}

// interner finds the id of a content seen before. Ids are given by the
// caller, which stores the contents.
type interner struct {
	seed  maphash.Seed
	first map[uint64]uint32   // hash -> id of the first content with it
	more  map[uint64][]uint32 // hash -> further ids (hash collisions only)
	at    func(id uint32) *RouteSpec
}

func newInterner(at func(id uint32) *RouteSpec) *interner {
	return &interner{seed: maphash.MakeSeed(), first: make(map[uint64]uint32), at: at}
}

// find returns the id of r's content, if known, and r's hash for add.
func (in *interner) find(r *RouteSpec) (id uint32, h uint64, ok bool) {
	h = contentHash(in.seed, r)
	id, ok = in.first[h]
	if !ok {
		return 0, h, false
	}
	if sameContent(in.at(id), r) {
		return id, h, true
	}
	for _, id := range in.more[h] {
		if sameContent(in.at(id), r) {
			return id, h, true
		}
	}
	return 0, h, false
}

func (in *interner) add(h uint64, id uint32) {
	if _, ok := in.first[h]; !ok {
		in.first[h] = id
		return
	}
	if in.more == nil {
		in.more = make(map[uint64][]uint32)
	}
	in.more[h] = append(in.more[h], id)
}

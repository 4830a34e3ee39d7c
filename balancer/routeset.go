package balancer

import (
	"hash/maphash"
	"iter"
	"slices"
	"strings"
	"unsafe"
)

// RouteSet is a compact, immutable list of routes by name, as a route source
// holds them before (and besides) the table built from them: names in a
// nameIndex, contents (everything but the name) interned. It does not
// validate: names and backends are kept as given.
type RouteSet struct {
	idx      *nameIndex
	contents []RouteSpec // Name empty; shared, never modified
	digest   uint64
	// spellings: a name has upper case or a trailing dot, so it may be
	// another spelling of a name (AddSet then keeps the set's order).
	spellings bool
}

// RouteSetBuilder fills a RouteSet. Set copies the name and keeps the
// content only when it is new, so a caller streaming routes in (a Redis
// scan, a snapshot file) may reuse its buffers and leaves no copy of every
// route behind.
type RouteSetBuilder struct {
	s    *RouteSet
	in   *interner
	sink uint64 // keeps SetContents's early slot loads (their value is not needed)
}

// NewRouteSetBuilder returns a builder for about sizeHint routes.
func NewRouteSetBuilder(sizeHint int) *RouteSetBuilder {
	s := &RouteSet{idx: newNameIndex(sizeHint)}
	return &RouteSetBuilder{s: s, in: newInterner(func(id uint32) *RouteSpec { return &s.contents[id] })}
}

// Reserve makes room for n routes; it does nothing once a name is set.
func (b *RouteSetBuilder) Reserve(n int) {
	if b.s.idx.n == 0 {
		b.s.idx = newNameIndex(n)
	}
}

// Content interns r's content (its name is ignored) and returns its id for
// SetContent. A new content is kept as given: r.Backends must not be
// modified afterwards.
func (b *RouteSetBuilder) Content(r RouteSpec) (uint32, error) {
	id, h, ok := b.in.find(&r)
	if ok {
		return id, nil
	}
	r.Name = ""
	id = uint32(len(b.s.contents))
	b.s.contents = append(b.s.contents, r)
	b.in.add(h, id)
	return id, nil
}

// SetContent sets the route name (at most 255 bytes) to the content id,
// replacing an earlier route of that name.
func (b *RouteSetBuilder) SetContent(name []byte, id uint32) error {
	if err := b.admit(name); err != nil {
		return err
	}
	return b.s.idx.put(name, id)
}

// admit checks a name's length and notes whether it is spelled other than
// normalised (RouteSet.spellings).
func (b *RouteSetBuilder) admit(name []byte) error {
	if len(name) > maxName {
		return errNameTooLong
	}
	b.s.spellings = b.s.spellings || !lowerNoDot(name)
	return nil
}

// SetContents sets names[k] to ids[k], in order, as SetContent does, with
// the cache misses of up to 16 names overlapped: the bulk path for a caller
// that has many routes at hand (a snapshot file).
func (b *RouteSetBuilder) SetContents(names [][]byte, ids []uint32) error {
	for len(names) > 0 {
		n := min(len(names), missBatch)
		for _, name := range names[:n] {
			if err := b.admit(name); err != nil {
				return err
			}
		}
		sink, err := b.s.idx.putBatch(names[:n], ids[:n])
		b.sink += sink
		if err != nil {
			return err
		}
		names, ids = names[n:], ids[n:]
	}
	return nil
}

// Set adds r, replacing an earlier route of the same name. See Content.
func (b *RouteSetBuilder) Set(r RouteSpec) error {
	id, err := b.Content(r)
	if err != nil {
		return err
	}
	return b.SetContent(bytesOf(r.Name), id)
}

// Get returns the route of name set so far.
func (b *RouteSetBuilder) Get(name string) (RouteSpec, bool) { return b.s.Get(name) }

// Len returns the number of names set so far.
func (b *RouteSetBuilder) Len() int { return b.s.Len() }

// Done returns the set; the builder must not be used any more.
func (b *RouteSetBuilder) Done() *RouteSet {
	s := b.s
	s.contents = slices.Clip(s.contents)
	hs := make([]uint64, len(s.contents))
	for i := range s.contents {
		hs[i] = contentHash(digestSeed, &s.contents[i])
	}
	s.idx.each(func(name []byte, id uint32) bool {
		s.digest += routeDigest(name, hs[id])
		return true
	})
	b.s, b.in = nil, nil
	return s
}

// digestSeed makes digests comparable between sets of one process.
var digestSeed = maphash.MakeSeed()

func routeDigest(name []byte, content uint64) uint64 {
	return mix64(maphash.Bytes(digestSeed, name) ^ content*0x9e3779b97f4a7c15)
}

// Digest returns a hash of the routes that does not depend on their order:
// equal sets have equal digests (within one process).
func (s *RouteSet) Digest() uint64 {
	if s == nil {
		return 0
	}
	return s.digest
}

// DigestWith returns the Digest of s with each route of over set (a nil
// value removes the name), at the cost of the changes only.
func (s *RouteSet) DigestWith(over map[string]*RouteSpec) uint64 {
	d := s.Digest()
	for name, r := range over {
		if old, ok := s.Get(name); ok {
			d -= routeDigest(bytesOf(name), contentHash(digestSeed, &old))
		}
		if r != nil {
			d += routeDigest(bytesOf(name), contentHash(digestSeed, r))
		}
	}
	return d
}

// Len returns the number of routes.
func (s *RouteSet) Len() int {
	if s == nil {
		return 0
	}
	return s.idx.n
}

// Has reports whether the set holds a route named name.
func (s *RouteSet) Has(name string) bool {
	if s == nil {
		return false
	}
	_, ok := s.idx.getString(name)
	return ok
}

// Get returns the route named name. Its Backends must not be modified.
func (s *RouteSet) Get(name string) (RouteSpec, bool) {
	if s == nil {
		return RouteSpec{}, false
	}
	id, ok := s.idx.getString(name)
	if !ok {
		return RouteSpec{}, false
	}
	r := s.contents[id]
	r.Name = name
	return r, true
}

// each calls fn with every route's name (valid during the call only) and
// content, in no particular order, until fn returns false.
func (s *RouteSet) each(fn func(name []byte, content *RouteSpec) bool) {
	if s == nil {
		return
	}
	s.idx.each(func(name []byte, id uint32) bool { return fn(name, &s.contents[id]) })
}

// All yields every route, in no particular order. Backends are shared and
// must not be modified.
func (s *RouteSet) All() iter.Seq[RouteSpec] {
	return func(yield func(RouteSpec) bool) {
		s.each(func(name []byte, c *RouteSpec) bool {
			r := *c
			r.Name = string(name)
			return yield(r)
		})
	}
}

// Contents returns the distinct contents (Name empty) by id, and calls fn
// with every name and the id of its content: what a snapshot file stores.
func (s *RouteSet) Contents(fn func(name []byte, id uint32) bool) []RouteSpec {
	if s == nil {
		return nil
	}
	s.idx.each(fn)
	return s.contents
}

// Sorted returns the routes sorted by name.
func (s *RouteSet) Sorted() []RouteSpec {
	out := make([]RouteSpec, 0, s.Len())
	for r := range s.All() {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b RouteSpec) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// With returns a new set: s with each route of over set (a nil value
// removes the name). s is not modified. It copies every route: for route
// sources without a table to update in place.
func (s *RouteSet) With(over map[string]*RouteSpec) (*RouteSet, error) {
	b := NewRouteSetBuilder(s.Len() + len(over))
	var err error
	s.each(func(name []byte, c *RouteSpec) bool {
		if _, changed := over[unsafe.String(unsafe.SliceData(name), len(name))]; changed {
			return true
		}
		var id uint32
		if id, err = b.Content(*c); err == nil {
			err = b.SetContent(name, id)
		}
		return err == nil
	})
	if err != nil {
		return nil, err
	}
	for _, r := range over {
		if r != nil {
			if err := b.Set(*r); err != nil {
				return nil, err
			}
		}
	}
	return b.Done(), nil
}

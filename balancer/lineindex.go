package balancer

import (
	"encoding/binary"
	"hash/maphash"
	"math/bits"
	"sync"
	"unsafe"
)

// lineIndex maps names to uint32 ids like nameIndex, but for lookups
// over names that are not in the CPU caches: each name has a 64-byte entry
// (one cache line; the entry array of a large table is page-aligned) that
// holds its id, its length and, up to lineInline bytes, the name itself;
// a parallel array holds 32 bits of each name's hash (0: empty). A lookup
// loads the tag and the entry of the name's home position at once (both
// addresses depend only on the hash): an exact hit on a short name at its
// home costs one memory latency
// (nameIndex: a slot, then the record it points to), and a miss scans the
// tags, 16 to a cache line, without reading entries. Longer names (rare:
// PaaS host names are 15-40 bytes) are stored in byte chunks as in
// nameIndex, their entry holding the record's offset.
//
// Linear probing keeps a name's neighbours on the adjacent lines. The
// arrays are sized from the hint at load 2/3 (not a power of two: a
// position is the high half of hash*size) and double past load 3/4; on
// Linux they are advised onto transparent huge pages, so that random
// lookups miss the TLB far less often. order lists the positions in
// insertion order, for each. No Go pointer per name: the garbage
// collector scans none of it. An index is built by one goroutine and then
// only read.
type lineIndex struct {
	seed    maphash.Seed
	tags    []uint32 // low 32 bits of the hash, 0 made 1; 0: empty
	entries []lineEntry
	order   []uint32 // positions in insertion order
	chunks  [][]byte // records of long names: length byte, name
	end     uint32   // offset of the next record; 0 is never used
	n       int

	sortOnce sync.Once // byName is built on first use (EachRoute)
	byName   []uint32  // positions in name order
}

// lineInline is how many name bytes an entry holds.
const lineInline = 59

type lineEntry struct {
	id   uint32
	len  uint8 // name length; > lineInline: name[:4] is a record offset
	name [lineInline]byte
}

// maxLineEntries bounds the arrays: positions are uint32.
const maxLineEntries = 1 << 32

func newLineIndex(sizeHint int) *lineIndex {
	x := &lineIndex{seed: maphash.MakeSeed(), end: 1}
	x.setSize(max(8, sizeHint+sizeHint/2+1))
	return x
}

// setSize allocates empty arrays of n positions.
func (x *lineIndex) setSize(n int) {
	x.tags = make([]uint32, n)
	x.entries = make([]lineEntry, n)
	adviseHuge(unsafe.Pointer(unsafe.SliceData(x.tags)), uintptr(n)*4)
	adviseHuge(unsafe.Pointer(unsafe.SliceData(x.entries)), uintptr(n)*unsafe.Sizeof(lineEntry{}))
}

func (x *lineIndex) hash(name []byte) uint64 { return maphash.Bytes(x.seed, name) }

// home returns the first position to probe for hash h.
func (x *lineIndex) home(h uint64) int {
	hi, _ := bits.Mul64(h, uint64(len(x.tags)))
	return int(hi)
}

// tagOf returns the tag of hash h: its low 32 bits, never 0.
func tagOf(h uint64) uint32 {
	if t := uint32(h); t != 0 {
		return t
	}
	return 1
}

// entryName returns the name held by e.
func (x *lineIndex) entryName(e *lineEntry) []byte {
	if e.len <= lineInline {
		return e.name[:e.len]
	}
	off := binary.LittleEndian.Uint32(e.name[:4])
	c := x.chunks[off>>chunkBits]
	o := off & (chunkSize - 1)
	return c[o+1 : o+1+uint32(c[o])]
}

// name returns the name at position pos (as find, sorted return them).
func (x *lineIndex) name(pos uint32) []byte { return x.entryName(&x.entries[pos]) }

// id returns the id at position pos.
func (x *lineIndex) id(pos uint32) uint32 { return x.entries[pos].id }

// find returns the position of name, or the empty one where it would go.
func (x *lineIndex) find(name []byte, h uint64) (pos int, found bool) {
	tag := tagOf(h)
	n := len(x.tags)
	home := x.home(h)
	// The home entry is loaded before its tag is known to match, so that
	// its cache miss overlaps the tag's. (Loading the next entry as well
	// cost misses 40-60% more and hits nothing measurable.)
	len0 := x.entries[home].len
	for i := home; ; {
		t := x.tags[i]
		if t == 0 {
			return i, false
		}
		if t == tag {
			l := len0
			if i != home {
				l = x.entries[i].len
			}
			if int(l) == len(name) {
				e := &x.entries[i]
				if len(name) <= lineInline {
					if string(e.name[:len(name)]) == string(name) {
						return i, true
					}
				} else if string(x.entryName(e)) == string(name) {
					return i, true
				}
			}
		}
		if i++; i == n {
			i = 0
		}
	}
}

// order32 returns the key that orders names by their home position: the
// high 32 bits of the hash pick it (home is the high half of hash*size).
func (x *lineIndex) order32(name []byte) uint32 { return uint32(x.hash(name) >> 32) }

// posRef is a name to add with its order32 key; ref says where the caller
// keeps the name.
type posRef struct{ key, ref uint32 }

// sortByPosition sorts refs by the top 22 bits of their keys (two 11-bit
// LSD radix passes, stable), using tmp (len(refs)) as scratch. Added in
// that order, names reach their positions in one sweep over the index's
// arrays instead of a cache miss each: 22 bits resolve positions to one
// in a 4M-position index, to a few lines in larger ones.
func sortByPosition(refs, tmp []posRef) {
	const bits, buckets = 11, 1 << 11
	src, dst := refs, tmp[:len(refs)]
	for shift := 32 - 2*bits; shift < 32; shift += bits {
		var count [buckets + 1]int
		for _, r := range src {
			count[(r.key>>shift)&(buckets-1)+1]++
		}
		for b := 1; b <= buckets; b++ {
			count[b] += count[b-1]
		}
		for _, r := range src {
			b := (r.key >> shift) & (buckets - 1)
			dst[count[b]] = r
			count[b]++
		}
		src, dst = dst, src
	}
	// Two passes: the result is back in refs.
}

// get returns the id of name. Allocates nothing.
func (x *lineIndex) get(name []byte) (uint32, bool) {
	if len(name) > maxName {
		return 0, false
	}
	i, ok := x.find(name, x.hash(name))
	if !ok {
		return 0, false
	}
	return x.entries[i].id, true
}

func (x *lineIndex) getString(name string) (uint32, bool) { return x.get(bytesOf(name)) }

// put sets the id of name (at most maxName bytes), adding the name if new.
func (x *lineIndex) put(name []byte, id uint32) error {
	h := x.hash(name)
	i, ok := x.find(name, h)
	if ok {
		x.entries[i].id = id
		return nil
	}
	return x.insert(name, h, i, id)
}

// insert adds name (at most maxName bytes), which the index does not have,
// at position i (as find returned it).
func (x *lineIndex) insert(name []byte, h uint64, i int, id uint32) error {
	if len(name) > maxName {
		return errNameTooLong
	}
	if (x.n+1)*4 > len(x.tags)*3 {
		if 2*len(x.tags) > maxLineEntries {
			return errIndexFull
		}
		x.grow()
		i, _ = x.find(name, h)
	}
	e := lineEntry{id: id, len: uint8(len(name))}
	if len(name) <= lineInline {
		copy(e.name[:], name)
	} else {
		off, err := x.store(name)
		if err != nil {
			return err
		}
		binary.LittleEndian.PutUint32(e.name[:4], off)
	}
	x.tags[i] = tagOf(h)
	x.entries[i] = e
	x.order = append(x.order, uint32(i))
	x.n++
	return nil
}

// store appends a record of a long name (length byte, name: no id, the
// entry has it) to the chunks and returns its offset.
func (x *lineIndex) store(name []byte) (uint32, error) {
	return storeRecord(&x.chunks, &x.end, name, nil)
}

// grow doubles the arrays, keeping the insertion order.
func (x *lineIndex) grow() {
	oldTags, old := x.tags, x.entries
	x.setSize(2 * len(oldTags))
	n := len(x.tags)
	for k, p := range x.order {
		e := &old[p]
		i := x.home(x.hash(x.entryName(e)))
		for x.tags[i] != 0 {
			if i++; i == n {
				i = 0
			}
		}
		x.tags[i] = oldTags[p]
		x.entries[i] = *e
		x.order[k] = uint32(i)
	}
}

// each calls fn for every name with its id, in the order they were added,
// until fn returns false. name is valid only during the call.
func (x *lineIndex) each(fn func(name []byte, id uint32) bool) {
	for _, p := range x.order {
		e := &x.entries[p]
		if !fn(x.entryName(e), e.id) {
			return
		}
	}
}

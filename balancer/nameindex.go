package balancer

import (
	"encoding/binary"
	"errors"
	"hash/maphash"
	"unsafe"
)

// errIndexFull is returned when a table would exceed what a nameIndex can
// address: 4 GiB of names.
var (
	errNameTooLong = errors.New("route name longer than 255 bytes")
	errIndexFull   = errors.New("route table full: more than 4 GiB of names")
)

// nameIndex maps names to uint32 ids without a Go object per name: each
// name is stored once in large byte chunks as a length byte, its bytes and
// its id (4 bytes, little-endian), and an open-addressing table of 8-byte
// slots holds, per name, its offset in the chunks and 32 bits of its hash.
// A million names cost about 35 bytes each (a Go map of strings to
// pointers: over 100) and nothing for the garbage collector to scan.
//
// A lookup that misses reads one slot in the common case (the hash bits
// rule out occupied slots without reading the name); a hit reads the slot
// and the record, name and id side by side. Walking every name reads the
// chunks in order. An index is built by one goroutine and then only read.
type nameIndex struct {
	seed   maphash.Seed
	chunks [][]byte // chunk k holds offsets k<<chunkBits ...
	end    uint32   // offset of the next record; 0 is never used, so a slot is never 0
	slots  []uint64 // offset<<32 | high 32 bits of the hash; 0: empty
	n      int
}

const (
	chunkBits     = 20 // 1 MiB chunks: a full table never copies its names to grow
	chunkSize     = 1 << chunkBits
	maxIndexBytes = 1 << 32 // offsets are 32 bits
)

func newNameIndex(sizeHint int) *nameIndex {
	x := &nameIndex{seed: maphash.MakeSeed(), end: 1}
	size := 8
	for size*3 < sizeHint*4 {
		size *= 2
	}
	x.slots = make([]uint64, size)
	return x
}

func (x *nameIndex) hash(name []byte) uint64 { return maphash.Bytes(x.seed, name) }

// record returns the chunk holding the record at off and the record's
// position in it.
func (x *nameIndex) record(off uint32) ([]byte, uint32) {
	return x.chunks[off>>chunkBits], off & (chunkSize - 1)
}

// name returns the name stored at offset off.
func (x *nameIndex) name(off uint32) []byte {
	c, o := x.record(off)
	return c[o+1 : o+1+uint32(c[o])]
}

// id returns the id stored at offset off.
func (x *nameIndex) id(off uint32) uint32 {
	c, o := x.record(off)
	o += 1 + uint32(c[o])
	return binary.LittleEndian.Uint32(c[o : o+4])
}

// find returns the slot of name, or the empty slot where it would go.
func (x *nameIndex) find(name []byte, h uint64) (pos int, found bool) {
	mask := len(x.slots) - 1
	tag := uint32(h >> 32)
	for i := int(h) & mask; ; i = (i + 1) & mask {
		s := x.slots[i]
		if s == 0 {
			return i, false
		}
		if uint32(s) == tag && string(x.name(uint32(s>>32))) == string(name) {
			return i, true
		}
	}
}

// get returns the id of name. Allocates nothing.
func (x *nameIndex) get(name []byte) (uint32, bool) {
	i, ok := x.find(name, x.hash(name))
	if !ok {
		return 0, false
	}
	return x.id(uint32(x.slots[i] >> 32)), true
}

func (x *nameIndex) getString(name string) (uint32, bool) { return x.get(bytesOf(name)) }

// put sets the id of name (at most maxName bytes), adding the name if new.
func (x *nameIndex) put(name []byte, id uint32) error { return x.putHashed(name, x.hash(name), id) }

// missBatch is how many names a bulk path handles between its early loads
// and its work (putBatch here, AddSet's reads of a set's records): enough
// independent loads in flight to hide most of a memory latency each.
const missBatch = 16

// putBatch puts names[k] to ids[k] (at most missBatch of them) in order, as
// put does (a later equal name wins), after first reading each name's home
// slot: in a large index nearly every put misses the cache on its slot, and
// read one after another those misses would not overlap. It returns a value
// of the early loads for the caller to keep, so that they are not optimised
// away.
func (x *nameIndex) putBatch(names [][]byte, ids []uint32) (uint64, error) {
	var hs [missBatch]uint64
	var sink uint64
	mask := len(x.slots) - 1
	for k, name := range names {
		hs[k] = x.hash(name)
		sink += x.slots[int(hs[k])&mask]
	}
	for k, name := range names {
		if err := x.putHashed(name, hs[k], ids[k]); err != nil {
			return sink, err
		}
	}
	return sink, nil
}

func (x *nameIndex) putHashed(name []byte, h uint64, id uint32) error {
	i, ok := x.find(name, h)
	if ok {
		c, o := x.record(uint32(x.slots[i] >> 32))
		o += 1 + uint32(c[o])
		binary.LittleEndian.PutUint32(c[o:o+4], id)
		return nil
	}
	return x.insert(name, h, i, id)
}

// insert adds name, which the index does not have, at slot i (as find
// returned it).
func (x *nameIndex) insert(name []byte, h uint64, i int, id uint32) error {
	if (x.n+1)*4 > len(x.slots)*3 {
		x.grow()
		i, _ = x.find(name, h)
	}
	off, err := x.store(name, id)
	if err != nil {
		return err
	}
	x.slots[i] = uint64(off)<<32 | h>>32
	x.n++
	return nil
}

// store appends a record to the chunks and returns its offset.
func (x *nameIndex) store(name []byte, id uint32) (uint32, error) {
	var idb [4]byte
	binary.LittleEndian.PutUint32(idb[:], id)
	return storeRecord(&x.chunks, &x.end, name, idb[:])
}

// storeRecord appends a record (length byte, name, extra) to chunks at
// *end and returns its offset. A record never straddles two chunks; the
// first chunk grows by doubling so that small tables stay small.
func storeRecord(chunks *[][]byte, end *uint32, name, extra []byte) (uint32, error) {
	need := uint32(1 + len(name) + len(extra))
	k := *end >> chunkBits
	o := *end & (chunkSize - 1)
	if o+need > chunkSize {
		k, o = k+1, 0
	}
	if uint64(k+1)<<chunkBits > maxIndexBytes {
		return 0, errIndexFull
	}
	for int(k) >= len(*chunks) {
		*chunks = append(*chunks, nil)
	}
	c := (*chunks)[k]
	if int(o+need) > cap(c) {
		n := chunkSize
		if k == 0 {
			n = max(256, 2*cap(c))
			for n < int(o+need) {
				n *= 2
			}
			n = min(n, chunkSize)
		}
		nc := make([]byte, o, n)
		copy(nc, c)
		c = nc
	}
	c = c[:o]
	c = append(c, byte(len(name)))
	c = append(c, name...)
	c = append(c, extra...)
	(*chunks)[k] = c
	off := k<<chunkBits | o
	*end = off + need
	return off, nil
}

func (x *nameIndex) grow() {
	old := x.slots
	x.slots = make([]uint64, 2*len(old))
	mask := len(x.slots) - 1
	for _, s := range old {
		if s == 0 {
			continue
		}
		i := int(x.hash(x.name(uint32(s>>32)))) & mask
		for x.slots[i] != 0 {
			i = (i + 1) & mask
		}
		x.slots[i] = s
	}
}

// each calls fn for every name with its id, in the order they were added,
// until fn returns false. name is valid only during the call.
func (x *nameIndex) each(fn func(name []byte, id uint32) bool) {
	x.eachRecord(func(_ uint32, name []byte, id uint32) bool { return fn(name, id) })
}

// eachRecord is each with the offset of each name's record, by which name
// and id return it.
func (x *nameIndex) eachRecord(fn func(off uint32, name []byte, id uint32) bool) {
	for k, c := range x.chunks {
		o := 0
		if k == 0 {
			o = 1 // offset 0 is never used
		}
		for o < len(c) {
			n := int(c[o])
			if !fn(uint32(k)<<chunkBits|uint32(o), c[o+1:o+1+n], binary.LittleEndian.Uint32(c[o+1+n:o+5+n])) {
				return
			}
			o += 5 + n
		}
	}
}

// bytesOf returns the bytes of s without a copy; they must not be modified.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

package balancer

import (
	"errors"
	"hash/maphash"
	"unsafe"
)

// errIndexFull is returned when a table would exceed what a nameIndex can
// address: 2^24 distinct route contents or 4 GiB of names.
var (
	errNameTooLong = errors.New("route name longer than 255 bytes")
	errIndexFull   = errors.New("route table full: more than 16,777,216 distinct routes or 4 GiB of names")
)

// nameIndex maps names to small integers (ids below maxIndexValue) without a
// Go object per name: the names sit in large byte chunks, each stored as a
// length byte and its bytes, and an open-addressing table of 8-byte slots
// holds, per name, its offset in the chunks, 8 bits of its hash and the id.
// A million names cost about 35 bytes each (a Go map of strings to pointers:
// over 100) and no pointers for the garbage collector to scan.
//
// A lookup that misses costs one slot read in the common case (the hash
// bits rule out occupied slots without reading the name); a hit reads the
// slot and the name. An index is built by one goroutine and then only read.
type nameIndex struct {
	seed   maphash.Seed
	chunks [][]byte // chunk k holds offsets k<<chunkBits ...
	end    uint32   // offset of the next name; 0 is never used, so a slot is never 0
	slots  []uint64 // offset<<32 | hash bits<<24 | id; 0: empty
	n      int
}

const (
	chunkBits = 20 // 1 MiB chunks: a full table never copies its names to grow
	chunkSize = 1 << chunkBits
	// maxIndexValue bounds the ids of an index (24 bits of a slot).
	maxIndexValue = 1 << 24
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

// name returns the name stored at offset off.
func (x *nameIndex) name(off uint32) []byte {
	c := x.chunks[off>>chunkBits]
	o := off & (chunkSize - 1)
	n := uint32(c[o])
	return c[o+1 : o+1+n]
}

// find returns the slot of name, or the empty slot where it would go.
func (x *nameIndex) find(name []byte, h uint64) (pos int, found bool) {
	mask := len(x.slots) - 1
	tag := (h >> 56) << 24
	for i := int(h) & mask; ; i = (i + 1) & mask {
		s := x.slots[i]
		if s == 0 {
			return i, false
		}
		if s&(0xff<<24) == tag && string(x.name(uint32(s>>32))) == string(name) {
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
	return uint32(x.slots[i] & (maxIndexValue - 1)), true
}

func (x *nameIndex) getString(name string) (uint32, bool) { return x.get(bytesOf(name)) }

// put sets the id of name (at most maxName bytes), adding the name if new.
func (x *nameIndex) put(name []byte, id uint32) error {
	if id >= maxIndexValue {
		return errIndexFull
	}
	h := x.hash(name)
	i, ok := x.find(name, h)
	if ok {
		x.slots[i] = x.slots[i]&^(maxIndexValue-1) | uint64(id)
		return nil
	}
	if (x.n+1)*4 > len(x.slots)*3 {
		x.grow()
		i, _ = x.find(name, h)
	}
	off, err := x.store(name)
	if err != nil {
		return err
	}
	x.slots[i] = uint64(off)<<32 | (h>>56)<<24 | uint64(id)
	x.n++
	return nil
}

// store appends name to the chunks and returns its offset. A name never
// straddles two chunks; the first chunk grows by doubling so that small
// tables stay small.
func (x *nameIndex) store(name []byte) (uint32, error) {
	need := uint32(1 + len(name))
	k := x.end >> chunkBits
	o := x.end & (chunkSize - 1)
	if o+need > chunkSize {
		k, o = k+1, 0
	}
	if uint64(k+1)<<chunkBits > maxIndexBytes {
		return 0, errIndexFull
	}
	for int(k) >= len(x.chunks) {
		x.chunks = append(x.chunks, nil)
	}
	c := x.chunks[k]
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
	x.chunks[k] = c
	off := k<<chunkBits | o
	x.end = off + need
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

// each calls fn for every name with its id, in slot order, until fn returns
// false. name is valid only during the call.
func (x *nameIndex) each(fn func(name []byte, id uint32) bool) {
	for _, s := range x.slots {
		if s != 0 && !fn(x.name(uint32(s>>32)), uint32(s&(maxIndexValue-1))) {
			return
		}
	}
}

// bytesOf returns the bytes of s without a copy; they must not be modified.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

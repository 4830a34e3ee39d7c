package balancer

import (
	"errors"
	"unsafe"
)

var (
	errNameTooLong = errors.New("route name longer than 255 bytes")
	// errIndexFull: a name index can address 4 GiB of long names.
	errIndexFull = errors.New("route table full: more than 4 GiB of names")
)

const (
	chunkBits     = 20 // 1 MiB chunks: a full index never copies its names to grow
	chunkSize     = 1 << chunkBits
	maxIndexBytes = 1 << 32 // offsets are 32 bits
)

// storeRecord appends a record (length byte, name) to chunks at *end and
// returns its offset. A record never straddles two chunks; the first chunk
// grows by doubling so that small indexes stay small.
func storeRecord(chunks *[][]byte, end *uint32, name []byte) (uint32, error) {
	need := uint32(1 + len(name))
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
	(*chunks)[k] = c
	off := k<<chunkBits | o
	*end = off + need
	return off, nil
}

// bytesOf returns the bytes of s without a copy; they must not be modified.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

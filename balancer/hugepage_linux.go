package balancer

import (
	"syscall"
	"unsafe"
)

// hugePage is the size of a transparent huge page on linux/amd64 and arm64
// (4 KiB base pages).
const hugePage = 2 << 20

// adviseHuge asks the kernel to back the 2 MiB-aligned interior of the n
// bytes at p with transparent huge pages (madvise MADV_HUGEPAGE, then
// MADV_COLLAPSE for pages already touched): a lookup at random in a large
// index then misses the TLB far less often. Errors are ignored (THP
// disabled, an older kernel): the advice only changes speed.
func adviseHuge(p unsafe.Pointer, n uintptr) {
	if n < 2*hugePage {
		return
	}
	start := (uintptr(p) + hugePage - 1) &^ (hugePage - 1)
	end := (uintptr(p) + n) &^ (hugePage - 1)
	if end <= start {
		return
	}
	b := unsafe.Slice((*byte)(unsafe.Add(p, start-uintptr(p))), end-start)
	_ = syscall.Madvise(b, 14) // MADV_HUGEPAGE
	_ = syscall.Madvise(b, 25) // MADV_COLLAPSE (Linux 6.1)
}

//go:build !linux

package balancer

import "unsafe"

func adviseHuge(p unsafe.Pointer, n uintptr) {}

package engine

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Reads and writes on the loops' sockets never block (O_NONBLOCK), so they
// use RawSyscall: unix.Read/Write go through the scheduler's
// entersyscall/exitsyscall, which costs time on every call and lets sysmon
// hand the loop's P to another thread during a long copy (futex wake-ups
// that showed in profiles).

func sysRead(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

func sysWrite(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

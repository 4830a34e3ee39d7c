package main

import (
	"os"
	"runtime"
)

// spareProcessor gives the Go scheduler one P more than there are event
// loops, unless the operator set GOMAXPROCS. A loop spends its idle time
// blocked in epoll_wait; with no idle P, the runtime's sysmon takes the P
// from every such wait that lasts over 20 µs and stays at its 20 µs tick
// to do so, and the loop pays a P hand-off on each wake-up. With an idle P
// sysmon leaves a waiting P alone for 10 ms and backs off. Measured in
// docs/design.md ("A spare P"): TLS handshakes cost 1.8× as much CPU
// without it on a VM where context switches are dear.
func spareProcessor(loops int) {
	if os.Getenv("GOMAXPROCS") != "" || loops <= 0 {
		return
	}
	runtime.GOMAXPROCS(loops + 1)
}

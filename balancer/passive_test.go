package balancer

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// goroutinesAfter runs Health on routes and returns how many goroutines
// the checks added once they settled.
func goroutinesAfter(t *testing.T, routes []RouteSpec) int {
	t.Helper()
	before := runtime.NumGoroutine()
	h := NewHealth(HealthOptions{Logger: quietLogger()})
	tab, err := NewTable(context.Background(), routes, "", TableOptions{Health: h, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	h.Track(tab)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	// Let every goroutine Run starts begin (they start synchronously in
	// Run; a short settle catches any started later).
	time.Sleep(200 * time.Millisecond)
	return runtime.NumGoroutine() - before
}

// TestCheckNoneNoGoroutines: 10,000 backends with check: none start no
// goroutine each (one passive goroutine and Run's own at most).
func TestCheckNoneNoGoroutines(t *testing.T) {
	var routes []RouteSpec
	for r := range 100 {
		var bes []string
		for i := range 100 {
			bes = append(bes, fmt.Sprintf("http://127.0.%d.%d:8080", r, i+1))
		}
		routes = append(routes, RouteSpec{Name: fmt.Sprintf("r%d.test", r), Backends: bes,
			Health: HealthCheck{Kind: CheckNone}})
	}
	if n := goroutinesAfter(t, routes); n > 3 {
		t.Fatalf("10,000 backends with check: none added %d goroutines, want at most 3", n)
	}
}

// TestChecksPerAddress: 10,000 backends naming 50 addresses cost one
// checker per address, not per backend.
func TestChecksPerAddress(t *testing.T) {
	var routes []RouteSpec
	for r := range 200 {
		var bes []string
		for i := range 50 {
			bes = append(bes, fmt.Sprintf("http://127.0.0.1:%d?weight=%d", 20000+i, r%5+1))
		}
		routes = append(routes, RouteSpec{Name: fmt.Sprintf("r%d.test", r), Backends: bes,
			Health: HealthCheck{Interval: time.Hour}})
	}
	if n := goroutinesAfter(t, routes); n > 50+3 {
		t.Fatalf("10,000 backends on 50 addresses added %d goroutines, want at most 53", n)
	}
}

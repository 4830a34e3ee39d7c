package main

import (
	"runtime"
	"testing"
)

// TestSpareProcessor: GOMAXPROCS becomes loops + 1, unless the operator
// set GOMAXPROCS in the environment.
func TestSpareProcessor(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })
	for _, tc := range []struct {
		env   string
		loops int
		want  int
	}{
		{"", 1, 2},
		{"", 3, 4},
		{"2", 3, 5}, // the operator's 5, set below, stays
		{"", 0, 5},  // no loops known: unchanged
	} {
		t.Setenv("GOMAXPROCS", tc.env)
		if tc.env != "" {
			runtime.GOMAXPROCS(5)
		}
		spareProcessor(tc.loops)
		if got := runtime.GOMAXPROCS(0); got != tc.want {
			t.Errorf("GOMAXPROCS=%q, %d loops: GOMAXPROCS %d, want %d", tc.env, tc.loops, got, tc.want)
		}
	}
}

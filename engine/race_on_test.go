//go:build race

package engine

// raceEnabled: the race detector is on, so sync.Pool drops a quarter of
// what is put back (allocation counts that go through it vary).
const raceEnabled = true

package logq

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// gate is a destination that blocks every write until opened.
type gate struct {
	open chan struct{}
	mu   sync.Mutex
	buf  bytes.Buffer
}

func (g *gate) Write(p []byte) (int, error) {
	<-g.open
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.Write(p)
}

// TestWriterNeverBlocks: with the destination stalled, Write returns at
// once and counts what it drops; once it moves, every line kept is written
// in order.
func TestWriterNeverBlocks(t *testing.T) {
	g := &gate{open: make(chan struct{})}
	w := NewWriter(g, 16)
	start := time.Now()
	for i := range 1000 {
		if _, err := w.Write([]byte(strings.Repeat("x", i%50) + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("1000 writes took %v with the destination stalled", el)
	}
	if w.Dropped() == 0 {
		t.Fatal("nothing dropped with a stalled destination and a queue of 16")
	}
	close(g.open)
	w.Close(5 * time.Second)
	lines := strings.Count(g.buf.String(), "\n")
	if uint64(lines)+w.Dropped() != 1000 {
		t.Errorf("written %d + dropped %d != 1000", lines, w.Dropped())
	}
}

// TestWriterCloseBounded: Close gives up on a destination that never moves.
func TestWriterCloseBounded(t *testing.T) {
	g := &gate{open: make(chan struct{})}
	defer close(g.open)
	w := NewWriter(g, 16)
	_, _ = w.Write([]byte("line\n"))
	start := time.Now()
	w.Close(100 * time.Millisecond)
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Close took %v with a stalled destination", el)
	}
}

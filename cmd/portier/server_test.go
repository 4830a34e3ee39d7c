package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portier/portier/config"
	"github.com/portier/portier/internal/redistest"
)

// testServer starts a server on yaml (listeners on loopback, one loop).
func testServer(t *testing.T, yaml string) *server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "portier.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := startServer(cfg, slog.New(slog.DiscardHandler), runOptions{loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stopNow)
	return s
}

// TestFleetReportsInOrder: a backend flapping down and up many times ends,
// in Redis and on the fleet's channel, in its last state: reports of one
// address are never reordered.
func TestFleetReportsInOrder(t *testing.T) {
	rs := redistest.Start(t)
	s := testServer(t, fmt.Sprintf("listeners:\n  - {name: web, address: \"127.0.0.1:0\", protocol: http}\nredis:\n  url: %s\n", rs.URL()))
	rc := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer rc.Close()
	ctx := context.Background()
	sub := rc.Subscribe(ctx, "portier:health")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	const addr = "10.9.9.9:80"
	const flaps = 2000
	for i := range flaps {
		s.onHealth(addr, i%2 == 1) // the last report (i = flaps-1) is "up"
	}
	last := ""
	ch := sub.Channel()
	for quiet := time.NewTimer(2 * time.Second); ; {
		select {
		case m := <-ch:
			last = m.Payload
			quiet.Reset(500 * time.Millisecond)
			continue
		case <-quiet.C:
		}
		break
	}
	if last != "up "+addr {
		t.Errorf("last fleet message %q, want %q", last, "up "+addr)
	}
	if n, err := rc.Exists(ctx, "portier:dead:"+addr).Result(); err != nil || n != 0 {
		t.Errorf("portier:dead:%s exists (%d, %v) after the last report said up", addr, n, err)
	}
}

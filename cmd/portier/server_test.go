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

	"github.com/portier/portier/balancer"
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

// TestRedisChangeDuringReload: a Redis change that arrives while a reload
// builds its table is applied after it, to the new configuration: the
// result has the new file's routes and the Redis change.
func TestRedisChangeDuringReload(t *testing.T) {
	rs := redistest.Start(t)
	head := fmt.Sprintf("listeners:\n  - {name: web, address: \"127.0.0.1:0\", protocol: http}\nredis:\n  url: %s\nroutes:\n", rs.URL())
	s := testServer(t, head+"  old.test: [http://127.0.0.1:9]\n")
	for deadline := time.Now().Add(10 * time.Second); !s.ready.Load(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no first Redis sync")
		}
	}
	newCfg := filepath.Join(t.TempDir(), "new.yaml")
	if err := os.WriteFile(newCfg, []byte(head+"  new.test: [http://127.0.0.1:9]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	first := true
	s.mu.Lock()
	s.buildHook = func() { // s.mu is held
		if first {
			first = false
			close(started)
			<-release
		}
	}
	s.mu.Unlock()
	reloaded := make(chan struct{})
	go func() {
		s.reload(newCfg)
		close(reloaded)
	}()
	<-started
	applied := make(chan struct{})
	go func() {
		s.applyDelta([]balancer.RouteSpec{{Name: "redis.test", Backends: []string{"http://127.0.0.1:9"}}}, nil)
		close(applied)
	}()
	select {
	case <-applied:
		t.Fatal("a Redis change was applied while a reload was building its table")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	<-reloaded
	<-applied
	tab := s.router.Load()
	for name, want := range map[string]bool{"new.test": true, "redis.test": true, "old.test": false} {
		if got := tab.Lookup(balancer.SchemeHTTP, []byte(name)) != nil; got != want {
			t.Errorf("after the reload and the Redis change, route %s present = %v, want %v", name, got, want)
		}
	}
}

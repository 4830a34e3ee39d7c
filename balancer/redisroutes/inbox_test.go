package redisroutes

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
	"github.com/portier/portier/internal/redistest"
)

// TestBusySessionKeepsSubscriber: while the session goroutine is busy (here
// publish blocks, as a full sync of a large table does for seconds), the
// pub/sub reader keeps reading, so a burst of notifications larger than the
// server's pubsub output-buffer limit does not get the subscriber dropped;
// every change is applied afterwards.
func TestBusySessionKeepsSubscriber(t *testing.T) {
	srv := redistest.Start(t, "--client-output-buffer-limit", "pubsub 256kb 128kb 1")
	rc := client(t, srv)
	logs := &logBuf{}
	s, err := New(Options{URL: srv.URL(), Resync: time.Hour,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	published := make(chan int, 16)
	release := make(chan struct{})
	calls := 0
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx, func(routes *balancer.RouteSet) {
			calls++
			if calls == 2 {
				<-release // the session is busy
			}
			published <- routes.Len()
		})
	}()
	defer func() { cancel(); <-done }()
	if n := <-published; n != 0 {
		t.Fatalf("first publish: %d routes, want 0", n)
	}
	if err := rc.RPush(ctx, "frontend:first.test", "first", "http://127.0.0.1:9001").Err(); err != nil {
		t.Fatal(err)
	}
	// Wait for the second publish to begin (and block).
	waitStatus(t, s, "one route", func(st Status) bool { return st.Routes == 1 })

	// ~8 MB of notifications against a 256 KiB limit: more than the
	// kernel's socket buffers on loopback can hide.
	const burst = 30000
	label := strings.Repeat("x", 60) // names stay valid: labels <= 63, name <= 253
	pad := label + "." + label + "." + label
	for start := 0; start < burst; start += 10000 {
		pipe := rc.Pipeline()
		for i := start; i < start+10000; i++ {
			pipe.RPush(ctx, fmt.Sprintf("frontend:b%05d.%s.test", i, pad), "b", "http://127.0.0.1:9002")
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// The server has sent every notification; a reader that kept reading
	// holds none in its output buffer, one that stopped was dropped.
	omem := regexp.MustCompile(`omem=(\d+)`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		list := srv.Cli("CLIENT", "LIST", "TYPE", "pubsub")
		m := omem.FindAllStringSubmatch(list, -1)
		drained := len(m) > 0
		for _, x := range m {
			if n, _ := strconv.Atoi(x[1]); n != 0 {
				drained = false
			}
		}
		if drained || len(m) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(release)
	<-published
	for n := 0; n != burst+1; {
		select {
		case n = <-published:
		case <-time.After(15 * time.Second):
			t.Fatalf("routes never reached %d (last %d)", burst+1, n)
		}
	}
	if n := logs.count("redis unavailable"); n != 0 {
		t.Fatalf("the subscriber was dropped while the session was busy:\n%s", logs)
	}
}

package redisroutes

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portier/portier/internal/redistest"
)

// liveWithin is how soon a change made in Redis must be published.
const liveWithin = time.Second

// TestSentinel runs a Source that knows only a Sentinel: it must find the
// master through it, load its routes and follow its changes. The resync is
// an hour away, so a change can only arrive through a notification.
func TestSentinel(t *testing.T) {
	master := redistest.Start(t)
	mc := client(t, master)
	rpush(t, mc, "frontend:a.test", "a", "http://127.0.0.1:8001")
	rpush(t, mc, "frontend:b.test", "b", "http://127.0.0.1:8002", "http://127.0.0.1:8003")
	sentinel := redistest.StartSentinel(t, master, "mymaster")

	s, rec, logs := run(t, Options{
		SentinelMaster: "mymaster",
		SentinelAddrs:  []string{sentinel.Addr},
		Resync:         time.Hour,
	})
	want := map[string][]string{
		"a.test": {"http://127.0.0.1:8001"},
		"b.test": {"http://127.0.0.1:8002", "http://127.0.0.1:8003"},
	}
	rec.wait(t, want, 5*time.Second)
	if st := s.Status(); !st.Connected || !st.Notifications || st.Routes != 2 {
		t.Fatalf("status %+v, want connected with notifications and 2 routes; logs:\n%s", st, logs)
	}

	start := time.Now()
	master.Cli("RPUSH", "frontend:a.test", "http://127.0.0.1:8004")
	want["a.test"] = []string{"http://127.0.0.1:8001", "http://127.0.0.1:8004"}
	rec.wait(t, want, liveWithin)
	t.Logf("RPUSH on the master published after %v", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	master.Cli("RPUSH", "frontend:c.test", "c", "http://127.0.0.1:8005")
	want["c.test"] = []string{"http://127.0.0.1:8005"}
	rec.wait(t, want, liveWithin)
	t.Logf("new key on the master published after %v", time.Since(start).Round(time.Millisecond))
}

// TestCluster runs a Source against a Cluster of three masters, given the
// address of one: every master's routes must load, and changes to keys of
// the other two masters, made through redis-cli -c, must be published.
func TestCluster(t *testing.T) {
	nodes := redistest.StartCluster(t, 3)
	ctx := context.Background()

	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{nodes[0].Addr}, DisableIdentity: true})
	t.Cleanup(func() { cc.Close() })
	want := make(map[string][]string)
	const n = 20
	for i := range n {
		name := fmt.Sprintf("app%02d.test", i)
		backend := fmt.Sprintf("http://127.0.0.1:%d", 9000+i)
		if err := cc.RPush(ctx, "frontend:"+name, name, backend).Err(); err != nil {
			t.Fatalf("rpush %s: %v", name, err)
		}
		want[name] = []string{backend}
	}
	// Which master holds which key: SCAN on a node sees only its own.
	owner := make(map[string]int)
	for i, node := range nodes {
		keys, err := client(t, node).Keys(ctx, "frontend:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			t.Fatalf("node %s holds none of the %d keys: the test would not cover it", node.Addr, n)
		}
		for _, k := range keys {
			owner[k] = i
		}
	}
	if len(owner) != n {
		t.Fatalf("nodes hold %d keys, want %d", len(owner), n)
	}
	// Keys of the two masters the Source is not given.
	keyOf := func(node int) string {
		for _, k := range slices.Sorted(maps.Keys(owner)) {
			if owner[k] == node {
				return k
			}
		}
		t.Fatalf("no key on node %d", node)
		return ""
	}
	k1, k2 := keyOf(1), keyOf(2)

	s, rec, logs := run(t, Options{ClusterAddrs: []string{nodes[0].Addr}, Resync: time.Hour})
	rec.wait(t, want, 5*time.Second)
	if st := s.Status(); !st.Connected || !st.Notifications || st.Routes != n {
		t.Fatalf("status %+v, want connected with notifications and %d routes; logs:\n%s", st, n, logs)
	}

	// Through node 0, which redirects: redis-cli -c follows MOVED.
	start := time.Now()
	nodes[0].Cli("-c", "RPUSH", k1, "http://127.0.0.1:9999")
	name1 := k1[len(hipachePrefix):]
	want[name1] = append(slices.Clone(want[name1]), "http://127.0.0.1:9999")
	rec.wait(t, want, liveWithin)
	t.Logf("RPUSH %s (node %s) published after %v", k1, nodes[1].Addr, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	nodes[0].Cli("-c", "DEL", k2)
	delete(want, k2[len(hipachePrefix):])
	rec.wait(t, want, liveWithin)
	t.Logf("DEL %s (node %s) published after %v", k2, nodes[2].Addr, time.Since(start).Round(time.Millisecond))
}

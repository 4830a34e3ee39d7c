package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portier/portier/internal/redistest"
)

// redisLoad requests host on fresh connections until stopped, counting
// answers that are not want.
type redisLoad struct {
	stop     atomic.Bool
	wg       sync.WaitGroup
	ok, fail atomic.Int64
	mu       sync.Mutex
	first    string
}

func startRedisLoad(p *process, host, want string, workers int) *redisLoad {
	l := &redisLoad{}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; !l.stop.Load() && i < 200000; i++ {
				if got := served(p.addr("web"), host); got != want {
					l.fail.Add(1)
					l.mu.Lock()
					if l.first == "" {
						l.first = got
					}
					l.mu.Unlock()
				} else {
					l.ok.Add(1)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	return l
}

func (l *redisLoad) finish(t *testing.T) {
	t.Helper()
	l.stop.Store(true)
	l.wg.Wait()
	t.Logf("load: %d requests answered, %d failed", l.ok.Load(), l.fail.Load())
	if l.fail.Load() > 0 || l.ok.Load() == 0 {
		t.Fatalf("%d client requests failed (first: %q), %d succeeded", l.fail.Load(), l.first, l.ok.Load())
	}
}

// TestRedisSentinelFailover: a master, a replica and three Sentinels; the
// master is killed under load, the Sentinels promote the replica, and
// portier follows: within 5 s of the promotion it is subscribed to the new
// master, no client request fails, and a route added on the new master is
// live within a second.
func TestRedisSentinelFailover(t *testing.T) {
	b1, b2 := nameBackend(t, "b1"), nameBackend(t, "b2")
	master := redistest.Start(t)
	master.Cli("RPUSH", "frontend:r1.test", "r1", "http://"+b1)
	replica := redistest.StartReplica(t, master)
	sentinels := redistest.StartSentinels(t, master, "mymaster", 3, 2, time.Second)
	var addrs []string
	for _, s := range sentinels {
		addrs = append(addrs, `"`+s.Addr+`"`)
	}
	p := startRedisPortier(t, fmt.Sprintf(`listeners:
  - {name: web, address: "127.0.0.1:0", protocol: http}
loops: 1
redis:
  sentinel: {master: mymaster, addresses: [%s]}
`, strings.Join(addrs, ", ")))
	waitServed(t, p, "r1.test", "route from the master", 5*time.Second, is("b1"))

	load := startRedisLoad(p, "r1.test", "b1", 4)
	time.Sleep(300 * time.Millisecond)
	killed := time.Now()
	master.Kill()

	rhost, rport, _ := net.SplitHostPort(replica.Addr)
	var promoted time.Time
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if sentinels[0].Cli("SENTINEL", "get-master-addr-by-name", "mymaster") == rhost+"\n"+rport &&
			strings.Contains(replica.Cli("INFO", "replication"), "role:master") {
			promoted = time.Now()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Sentinels did not promote the replica within 30 s")
		}
	}
	var followed time.Time
	for deadline := promoted.Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if strings.Contains(replica.Cli("CLIENT", "LIST", "TYPE", "pubsub"), "psub=1") {
			followed = time.Now()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("portier not subscribed to the new master 5 s after the promotion\n%s", tail(p.logText(), 3000))
		}
	}
	t.Logf("master killed; replica promoted after %v; portier subscribed to it %v later",
		promoted.Sub(killed).Round(time.Millisecond), followed.Sub(promoted).Round(time.Millisecond))

	replica.Cli("RPUSH", "frontend:r2.test", "r2", "http://"+b2)
	waitServed(t, p, "r2.test", "route added on the new master", liveDeadline, is("b2"))
	load.finish(t)
}

// TestRedisClusterReshard moves slots holding route keys between masters
// with redis-cli --cluster reshard while clients use every route and
// portier resyncs every second: no route may be lost at any moment.
func TestRedisClusterReshard(t *testing.T) {
	cli := redistest.Require(t, "redis-cli")
	begin := time.Now()
	nodes := redistest.StartCluster(t, 3)
	be := nameBackend(t, "b1")
	const routes = 150
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{nodes[0].Addr}, DisableIdentity: true})
	defer cc.Close()
	for i := range routes {
		if err := cc.RPush(context.Background(), fmt.Sprintf("frontend:r%03d.test", i), "r", "http://"+be).Err(); err != nil {
			t.Fatal(err)
		}
	}
	p := startRedisPortier(t, fmt.Sprintf(`listeners:
  - {name: web, address: "127.0.0.1:0", protocol: http}
loops: 1
redis:
  cluster: {addresses: ["%s"]}
  resync: 1s
`, nodes[0].Addr))
	for i := range routes {
		waitServed(t, p, fmt.Sprintf("r%03d.test", i), "route before the reshard", 5*time.Second, is("b1"))
	}

	var stop atomic.Bool
	var checked, lost atomic.Int64
	var firstLost atomic.Value
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; !stop.Load(); i += 4 {
				host := fmt.Sprintf("r%03d.test", i%routes)
				if got := served(p.addr("web"), host); got != "b1" {
					lost.Add(1)
					firstLost.CompareAndSwap(nil, host+": "+got)
				}
				checked.Add(1)
			}
		}()
	}
	// Move slots forward and backward in the order a full sync scans the
	// masters (a key moving to a master already scanned is the hard case).
	id := func(n *redistest.Server) string { return strings.TrimSpace(n.Cli("CLUSTER", "MYID")) }
	// 300 slots per move in make test; PORTIER_RESHARD_SLOTS=3000 for more.
	slots := "300"
	if v := os.Getenv("PORTIER_RESHARD_SLOTS"); v != "" {
		slots = v
	}
	t.Logf("cluster and %d routes ready after %v", routes, time.Since(begin).Round(time.Millisecond))
	start := time.Now()
	for _, mv := range []struct{ from, to *redistest.Server }{{nodes[0], nodes[1]}, {nodes[2], nodes[0]}} {
		out, err := runCmdOutput(120*time.Second, cli, "--cluster", "reshard", mv.from.Addr,
			"--cluster-from", id(mv.from), "--cluster-to", id(mv.to), "--cluster-slots", slots,
			"--cluster-yes", "--cluster-pipeline", "5")
		if err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("redis-cli --cluster reshard: %v\n%s", err, tail(out, 2000))
		}
	}
	time.Sleep(1500 * time.Millisecond) // a resync after the moves
	stop.Store(true)
	wg.Wait()
	t.Logf("reshard of 2 x %s slots in %v: %d route checks during it, %d lost", slots,
		time.Since(start).Round(time.Millisecond), checked.Load(), lost.Load())
	if lost.Load() > 0 {
		t.Fatalf("%d requests found a route missing during the reshard (first: %v)\n%s", lost.Load(), firstLost.Load(),
			tail(p.logText(), 3000))
	}
}

// runCmdOutput runs a command with a time limit and returns its combined output.
func runCmdOutput(limit time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

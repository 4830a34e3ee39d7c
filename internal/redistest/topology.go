package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// StartSentinel starts a Sentinel (redis-server --sentinel) on a free
// loopback port that monitors master under name with a quorum of 1, and
// stops it when the test ends. It returns once the Sentinel reports the
// master's address.
func StartSentinel(t testing.TB, master *Server, name string) *Server {
	t.Helper()
	host, mport, err := net.SplitHostPort(master.Addr)
	if err != nil {
		t.Fatalf("redistest: sentinel: master address %q: %v", master.Addr, err)
	}
	s := launch(t, func(port int, dir string) ([]string, error) {
		// Sentinel rewrites its configuration file: it must be writable.
		conf := filepath.Join(dir, "sentinel.conf")
		text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n"+
			"sentinel monitor %s %s %s 1\n",
			port, dir, filepath.Join(dir, "redis.log"), name, host, mport)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			return nil, err
		}
		return []string{conf, "--sentinel"}, nil
	})
	want := host + "\n" + mport
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := s.Cli("SENTINEL", "get-master-addr-by-name", name)
		if got == want {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: sentinel on %s: master %s is %q, want %q; log:\n%s", s.Addr, name, got, want, s.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// StartCluster starts n (at least 3) redis-servers with cluster-enabled on
// loopback, joins them into a Cluster of n masters without replicas with
// redis-cli --cluster create, and waits until every node reports
// cluster_state:ok. The servers stop when the test ends.
func StartCluster(t testing.TB, n int) []*Server {
	t.Helper()
	cli := Require(t, "redis-cli")
	nodes := make([]*Server, n)
	for i := range nodes {
		nodes[i] = launch(t, func(port int, dir string) ([]string, error) {
			// The bus port defaults to port+10000, which may be taken or
			// beyond 65535: pick a free one.
			bus, err := freePort()
			if err != nil {
				return nil, err
			}
			return []string{
				"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
				"--save", "", "--appendonly", "no", "--dir", dir,
				"--logfile", filepath.Join(dir, "redis.log"),
				"--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(bus),
				"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
				"--cluster-node-timeout", "5000",
			}, nil
		})
	}
	args := []string{"--cluster", "create"}
	for _, s := range nodes {
		args = append(args, s.Addr)
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli %s: %v:\n%s", strings.Join(args, " "), err, out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, s := range nodes {
		for {
			info := s.Cli("CLUSTER", "INFO")
			if strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: cluster node %s not ok:\n%s", s.Addr, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nodes
}

// StartSentinels starts n Sentinels monitoring master under name with the
// given quorum, set to notice a dead master after downAfter and to fail
// over promptly, as a production group of three would be configured. It
// returns once each reports the master.
func StartSentinels(t testing.TB, master *Server, name string, n, quorum int, downAfter time.Duration) []*Server {
	t.Helper()
	host, mport, err := net.SplitHostPort(master.Addr)
	if err != nil {
		t.Fatalf("redistest: sentinel: master address %q: %v", master.Addr, err)
	}
	out := make([]*Server, n)
	for i := range out {
		out[i] = launch(t, func(port int, dir string) ([]string, error) {
			conf := filepath.Join(dir, "sentinel.conf")
			text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n"+
				"sentinel monitor %s %s %s %d\n"+
				"sentinel down-after-milliseconds %s %d\n"+
				"sentinel failover-timeout %s 10000\n"+
				"sentinel parallel-syncs %s 1\n",
				port, dir, filepath.Join(dir, "redis.log"), name, host, mport, quorum,
				name, downAfter.Milliseconds(), name, name)
			if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
				return nil, err
			}
			return []string{conf, "--sentinel"}, nil
		})
	}
	want := host + "\n" + mport
	deadline := time.Now().Add(5 * time.Second)
	for _, s := range out {
		for s.Cli("SENTINEL", "get-master-addr-by-name", name) != want {
			if time.Now().After(deadline) {
				t.Fatalf("redistest: sentinel on %s does not report master %s; log:\n%s", s.Addr, name, s.logTail())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return out
}

// StartReplica starts a redis-server replicating master and waits until
// the link is up.
func StartReplica(t testing.TB, master *Server) *Server {
	t.Helper()
	host, port, _ := net.SplitHostPort(master.Addr)
	r := Start(t, "--replicaof", host, port)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(r.Cli("INFO", "replication"), "master_link_status:up") {
		if time.Now().After(deadline) {
			t.Fatalf("redistest: replica %s of %s never linked", r.Addr, master.Addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r
}

// Kill ends the server at once with SIGKILL, as a crash would.
func (s *Server) Kill() { s.kill() }

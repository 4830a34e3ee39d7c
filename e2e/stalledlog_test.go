package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestStalledLogNeverStallsLoops runs portier with stderr on a pipe whose
// reader stops reading once portier has started (a stuck journald, a full
// `| logger`), then floods it with requests for unknown names, each of which
// logs a line. Normal requests must keep succeeding throughout, and once the
// pipe is read again every rejection is accounted for: a line on stderr or a
// count in portier_log_dropped_total. Then, with stderr stalled again,
// SIGTERM still stops portier.
func TestStalledLogNeverStallsLoops(t *testing.T) {
	be := startOpsBackend(t, "alpha", nil)
	admin := freeLoopbackAddr(t)
	cfg := filepath.Join(t.TempDir(), "portier.yaml")
	yaml := fmt.Sprintf("listeners:\n  - {name: web, address: \"127.0.0.1:0\", protocol: http}\nroutes:\n  a.test: [http://%s]\nadmin: %s\n", be.addr, admin)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	// The smallest pipe buffer (one page) fills after a few dozen lines.
	if _, err := unix.FcntlInt(pw.Fd(), unix.F_SETPIPE_SZ, 4096); err != nil {
		t.Fatalf("F_SETPIPE_SZ: %v", err)
	}
	// No per-kind summarising (-log-burst -1) and a short queue: every
	// rejection is queued, so the stalled writer makes the queues overflow.
	cmd := exec.Command(portierBin, "-config", cfg, "-loops", "2", "-log-burst", "-1", "-log-queue", "64")
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	var web string
	var startLog strings.Builder
	rd := bufio.NewReader(pr)
	for web == "" || !strings.Contains(startLog.String(), "portier started") {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("portier exited before starting: %v\n%s", err, startLog.String())
		}
		startLog.WriteString(line)
		if m := listeningRE.FindStringSubmatch(line); m != nil {
			web = m[2]
		}
	}
	// From here nobody reads the pipe.

	const flood = 3000
	var (
		normal          sync.WaitGroup
		floods          sync.WaitGroup
		stop            atomic.Bool
		normalOK        atomic.Int64
		normalFailed    atomic.Int64
		firstNormalFail atomic.Value
		answered        atomic.Int64
	)
	normal.Add(1)
	go func() { // the normal client
		defer normal.Done()
		c := opsClient(nil)
		for !stop.Load() {
			code, body, err := opsGet(c, web, "a.test", "/")
			if err != nil || code != 200 || !strings.Contains(body, "alpha") {
				normalFailed.Add(1)
				firstNormalFail.CompareAndSwap(nil, fmt.Sprintf("status %d err %v", code, err))
				continue
			}
			normalOK.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	for w := range 4 { // the flood: unknown names, each answered 404 and logged
		floods.Add(1)
		go func() {
			defer floods.Done()
			for i := w; i < flood; i += 4 {
				if unknownNameRequest(web, i) {
					answered.Add(1)
				}
			}
		}()
	}
	floods.Wait() // bounded: each request has a 10 s deadline
	stop.Store(true)
	normal.Wait()
	t.Logf("flood: %d/%d unknown-name requests answered 404; normal client: %d ok, %d failed", answered.Load(), flood,
		normalOK.Load(), normalFailed.Load())
	if n := normalFailed.Load(); n > 0 {
		t.Fatalf("%d normal requests failed while the log was stalled (first: %v)", n, firstNormalFail.Load())
	}
	if answered.Load() != flood {
		t.Fatalf("only %d of %d flood requests were answered", answered.Load(), flood)
	}
	if normalOK.Load() == 0 {
		t.Fatal("the normal client made no request")
	}
	// Lines are dropped by a loop's queue (events) or, once formatted, by
	// the process log's queue in front of stderr (process).
	dropped := opsMetricOf(t, admin, "portier_log_dropped_total", map[string]string{"log": "events"}) +
		opsMetricOf(t, admin, "portier_log_dropped_total", map[string]string{"log": "process"})
	rejected := opsMetricOf(t, admin, "portier_rejections_total", map[string]string{"reason": "unknown_name"})
	if dropped == 0 {
		t.Fatalf("no dropped line counted although the log was stalled (%v rejections)", rejected)
	}

	// Unstall: every rejection is now either read from the pipe or dropped.
	lines := make(chan int, 1)
	var seen atomic.Int64
	go func() {
		for {
			line, err := rd.ReadString('\n')
			if strings.Contains(line, "msg=rejected") {
				seen.Add(1)
			}
			if err != nil {
				lines <- int(seen.Load())
				return
			}
		}
	}()
	want := int64(rejected - dropped)
	for deadline := time.Now().Add(10 * time.Second); seen.Load() < want && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("rejections %v = %d lines read after the stall ended + %v dropped", rejected, seen.Load(), dropped)
	if seen.Load() != want {
		t.Fatalf("read %d rejection lines, want %v rejections - %v dropped = %d", seen.Load(), rejected, dropped, want)
	}
	_ = cmd.Process.Signal(unix.SIGTERM)
	select {
	case <-lines:
	case <-time.After(15 * time.Second):
		t.Fatal("portier did not exit after SIGTERM")
	}
	if seen.Load() != want {
		t.Fatalf("%d rejection lines after exit, want %d", seen.Load(), want)
	}
}

// unknownNameRequest sends one request for a name without a route and
// reports whether the answer was portier's 404.
func unknownNameRequest(addr string, i int) bool {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: nobody-%d.test\r\n\r\n", i); err != nil {
		return false
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == 404
}

// freeLoopbackAddr returns a loopback address free at the time of the call.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestStalledStderrShutdown: with stderr on a pipe nobody reads and full,
// SIGTERM (which logs "stopping", "draining", "stopped") still stops
// portier: no log call blocks the signal handler.
func TestStalledStderrShutdown(t *testing.T) {
	be := startOpsBackend(t, "alpha", nil)
	cfg := filepath.Join(t.TempDir(), "portier.yaml")
	yaml := fmt.Sprintf("listeners:\n  - {name: web, address: \"127.0.0.1:0\", protocol: http}\nroutes:\n  a.test: [http://%s]\n", be.addr)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	if _, err := unix.FcntlInt(pw.Fd(), unix.F_SETPIPE_SZ, 4096); err != nil {
		t.Fatalf("F_SETPIPE_SZ: %v", err)
	}
	cmd := exec.Command(portierBin, "-config", cfg, "-loops", "2", "-log-burst", "-1")
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	var web string
	rd := bufio.NewReader(pr)
	for web == "" {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("portier exited before listening: %v", err)
		}
		if m := listeningRE.FindStringSubmatch(line); m != nil {
			web = m[2]
		}
	}
	// Fill the pipe: each unknown name logs a line nobody reads.
	for i := range 300 {
		unknownNameRequest(web, i)
	}
	start := time.Now()
	_ = cmd.Process.Signal(unix.SIGTERM)
	select {
	case err := <-exited:
		t.Logf("exited %v after SIGTERM with stderr stalled (%v)", time.Since(start).Round(time.Millisecond), err)
		if err != nil {
			t.Errorf("exit status %v, want 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("portier did not stop within 15 s of SIGTERM with its stderr stalled")
	}
}

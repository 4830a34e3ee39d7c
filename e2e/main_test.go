// Package e2e runs the real portier binary against real backends and clients.
package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var portierBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "portier-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	portierBin = filepath.Join(dir, "portier")
	build := exec.Command("go", "build", "-o", portierBin, "github.com/portier/portier/cmd/portier")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build portier:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// process is a running portier.
type process struct {
	cmd   *exec.Cmd
	addrs map[string]string // listener name -> bound address
	mu    sync.Mutex
	log   strings.Builder
	done  chan error
}

var listeningRE = regexp.MustCompile(`msg=listening listener=(\S+) address=(\S+)`)

// startPortier writes yaml to a file, runs portier on it and waits until it
// logged its bound listeners.
func startPortier(t *testing.T, yaml string, args ...string) *process {
	t.Helper()
	return startPortierVia(t, nil, yaml, args...)
}

// startPortierVia is startPortier with the binary run by a wrapper command
// (e.g. "ip netns exec NS"), which must exec it in the same process.
func startPortierVia(t *testing.T, wrapper []string, yaml string, args ...string) *process {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "portier.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	argv := append(append(append([]string(nil), wrapper...), portierBin, "-config", cfg), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, addrs: map[string]string{}, done: make(chan error, 1)}
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log.WriteString(line + "\n")
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				p.addrs[m[1]] = m[2]
			}
			p.mu.Unlock()
			if strings.Contains(line, "portier started") {
				once.Do(func() { close(started) })
			}
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
	})
	select {
	case <-started:
	case err := <-p.done:
		t.Fatalf("portier exited early: %v\n%s", err, p.logText())
	case <-time.After(10 * time.Second):
		t.Fatalf("portier did not start\n%s", p.logText())
	}
	return p
}

func (p *process) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func (p *process) addr(name string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addrs[name]
}

// rssKiB reads the process's resident set size from /proc.
func (p *process) rssKiB(t *testing.T) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("read status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// stop sends SIGTERM and returns the exit error.
func (p *process) stop(t *testing.T) error {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		return err
	case <-time.After(15 * time.Second):
		t.Fatal("portier did not exit after SIGTERM")
		return nil
	}
}

func runPortier(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(portierBin, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

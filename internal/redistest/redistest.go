// Package redistest runs a real redis-server on loopback for tests.
//
// When redis-server is not installed the test is skipped with a loud
// message, unless PORTIER_REQUIRE_REDIS=1, in which case it fails.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is a redis-server process bound to 127.0.0.1.
type Server struct {
	Addr string // "127.0.0.1:port"

	t    testing.TB
	bin  string
	dir  string
	args []string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Start starts redis-server on a free port in a temporary directory, with
// persistence off, and stops it when the test ends. extra are more
// command-line arguments, such as "--rename-command", "CONFIG", "".
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	return launch(t, func(port int, dir string) ([]string, error) {
		return append([]string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir,
			"--logfile", filepath.Join(dir, "redis.log"),
		}, extra...), nil
	})
}

// launch starts redis-server in a new temporary directory with the
// arguments that args returns for a free port, and stops it when the test
// ends. The server must log to dir/redis.log.
func launch(t testing.TB, args func(port int, dir string) ([]string, error)) *Server {
	t.Helper()
	bin := Require(t, "redis-server")
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	t.Cleanup(s.kill)
	var err error
	// A free port can be taken between probing and binding: retry.
	for range 3 {
		var port int
		if port, err = freePort(); err != nil {
			continue
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if s.args, err = args(port, s.dir); err != nil {
			continue
		}
		if err = s.start(); err == nil {
			return s
		}
	}
	t.Fatalf("redistest: %v", err)
	return nil
}

// Require returns the path of a program of the Redis suite, or skips the
// test (fails it with PORTIER_REQUIRE_REDIS=1) when it is missing.
func Require(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("PORTIER_REQUIRE_REDIS") == "1" {
		t.Fatalf("redistest: %s not found and PORTIER_REQUIRE_REDIS=1: %v", name, err)
	}
	t.Skipf("\n!!!!!!!! SKIPPED: %s not found in $PATH: this test needs a real Redis !!!!!!!!\n"+
		"!!!!!!!! install redis-server and redis-tools; set PORTIER_REQUIRE_REDIS=1 to fail instead !!!!!!!!", name)
	return ""
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// URL returns "redis://ADDR/0".
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

func (s *Server) start() error {
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := ping(s.Addr); err == nil {
			break
		} else if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server on %s not ready: %v; log:\n%s", s.Addr, err, s.logTail())
		}
		select {
		case err := <-exited:
			return fmt.Errorf("redis-server on %s exited: %v; log:\n%s", s.Addr, err, s.logTail())
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
	go func() {
		// Reap the process whenever it ends; Stop and kill wait on s.cmd
		// through the process state, not a second Wait.
		<-exited
	}()
	return nil
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// ping sends a PING and expects +PONG (or -NOAUTH: the server is up).
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH") {
		return nil
	}
	return fmt.Errorf("PING: %q", strings.TrimSpace(line))
}

// Stop saves the data set to the temporary directory and stops the
// server; Restart brings it back with the same data on the same port.
func (s *Server) Stop() {
	s.t.Helper()
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	c, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err == nil {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("SHUTDOWN SAVE\r\n"))
		// The server closes the connection when it exits.
		bufio.NewReader(c).ReadString('\n')
		c.Close()
	}
	if !waitGone(s.Addr, 5*time.Second) {
		cmd.Process.Kill()
		waitGone(s.Addr, 5*time.Second)
	}
}

// waitGone waits until nothing accepts connections on addr.
func waitGone(addr string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return true
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// Restart starts the server again after Stop, on the same port and with
// the data saved by Stop.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
}

// kill ends the process without saving (test cleanup).
func (s *Server) kill() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd != nil {
		cmd.Process.Kill()
		waitGone(s.Addr, 5*time.Second)
	}
}

// Cli runs redis-cli against the server with args and returns its output
// without the trailing newline; the test fails if redis-cli fails.
func (s *Server) Cli(args ...string) string {
	s.t.Helper()
	bin := Require(s.t, "redis-cli")
	host, port, _ := net.SplitHostPort(s.Addr)
	out, err := exec.Command(bin, append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("redis-cli %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSuffix(string(out), "\n")
}

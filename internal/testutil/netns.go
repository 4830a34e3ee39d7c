package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Netns is a network namespace a test created (ip netns add), removed with
// its interfaces when the test ends.
type Netns struct{ Name string }

// NeedNetns skips (or, with PORTIER_REQUIRE_NETNS set, as CI does, fails)
// where namespaces cannot be built: not root, or a tool missing.
func NeedNetns(t testing.TB, tools ...string) {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("PORTIER_REQUIRE_NETNS") != "" {
		fail = t.Fatalf
	}
	if os.Geteuid() != 0 {
		fail("SKIPPED: network namespace tests need root (CI runs as root); set PORTIER_REQUIRE_NETNS=1 to fail instead")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			fail("SKIPPED: %s is not installed (.ci/run installs it)", tool)
		}
	}
}

// NewNetns creates a namespace named prefix-<pid> with its loopback up.
func NewNetns(t testing.TB, prefix string) *Netns {
	t.Helper()
	n := &Netns{Name: fmt.Sprintf("%s-%d", prefix, os.Getpid())}
	_ = exec.Command("ip", "netns", "del", n.Name).Run() // left by a killed run
	Sh(t, "ip", "netns", "add", n.Name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.Name).Run() })
	n.Run(t, "ip", "link", "set", "lo", "up")
	return n
}

// Run runs a command inside the namespace and fails the test if it fails.
func (n *Netns) Run(t testing.TB, args ...string) string {
	t.Helper()
	return Sh(t, append(n.Exec(), args...)...)
}

// Exec is the wrapper that runs a program inside the namespace (it execs
// the program in the same process).
func (n *Netns) Exec() []string { return []string{"ip", "netns", "exec", n.Name} }

// Do runs f on an OS thread switched into the namespace: sockets f creates
// (listeners, dials) belong to it for their whole life, whatever thread
// later serves them. The thread is discarded afterwards (f's goroutine ends
// still locked), so no other goroutine ever runs in the namespace.
func (n *Netns) Do(t testing.TB, f func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		fd, err := unix.Open("/run/netns/"+n.Name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			errc <- fmt.Errorf("setns %s: %w", n.Name, err)
			return
		}
		defer func() { errc <- nil }()
		f()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// Veth links namespace a's interface an (addresses aAddrs, CIDR form) to
// b's interface bn (bAddrs). IPv6 addresses skip duplicate address
// detection so they are usable at once.
func Veth(t testing.TB, a *Netns, an string, aAddrs []string, b *Netns, bn string, bAddrs []string) {
	t.Helper()
	a.Run(t, "ip", "link", "add", an, "type", "veth", "peer", "name", bn, "netns", b.Name)
	for _, side := range []struct {
		ns    *Netns
		name  string
		addrs []string
	}{{a, an, aAddrs}, {b, bn, bAddrs}} {
		for _, addr := range side.addrs {
			args := []string{"ip", "addr", "add", addr, "dev", side.name}
			if strings.Contains(addr, ":") {
				args = append(args, "nodad")
			}
			side.ns.Run(t, args...)
		}
		side.ns.Run(t, "ip", "link", "set", side.name, "up")
	}
}

// Sh runs a command and fails the test if it fails.
func Sh(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

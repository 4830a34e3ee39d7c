package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// netns is a network namespace the test created (ip netns add), removed
// with its interfaces when the test ends.
type netns struct{ name string }

// needNetns skips (or, with PORTIER_REQUIRE_NETNS set, as CI does, fails)
// where namespaces cannot be built: not root, or no iproute2.
func needNetns(t *testing.T, tools ...string) {
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

// newNetns creates a namespace named prefix-<pid> with its loopback up.
func newNetns(t *testing.T, prefix string) *netns {
	t.Helper()
	n := &netns{name: fmt.Sprintf("%s-%d", prefix, os.Getpid())}
	_ = exec.Command("ip", "netns", "del", n.name).Run() // left by a killed run
	sh(t, "ip", "netns", "add", n.name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.name).Run() })
	n.run(t, "ip", "link", "set", "lo", "up")
	return n
}

// run runs a command inside the namespace and fails the test if it fails.
func (n *netns) run(t *testing.T, args ...string) string {
	t.Helper()
	return sh(t, append([]string{"ip", "netns", "exec", n.name}, args...)...)
}

// exec is the wrapper that runs a program inside the namespace.
func (n *netns) exec() []string { return []string{"ip", "netns", "exec", n.name} }

// do runs f on an OS thread switched into the namespace: sockets f creates
// (listeners, dials) belong to it for their whole life, whatever thread
// later serves them. The thread is discarded afterwards (f's goroutine ends
// still locked), so no other goroutine ever runs in the namespace.
func (n *netns) do(t *testing.T, f func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		fd, err := unix.Open("/run/netns/"+n.name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			errc <- fmt.Errorf("setns %s: %w", n.name, err)
			return
		}
		defer func() { errc <- nil }()
		f()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// veth links namespace a's interface an (addresses aAddrs, CIDR form) to
// b's interface bn (bAddrs). IPv6 addresses skip duplicate address
// detection so they are usable at once.
func veth(t *testing.T, a *netns, an string, aAddrs []string, b *netns, bn string, bAddrs []string) {
	t.Helper()
	a.run(t, "ip", "link", "add", an, "type", "veth", "peer", "name", bn, "netns", b.name)
	for _, side := range []struct {
		ns    *netns
		name  string
		addrs []string
	}{{a, an, aAddrs}, {b, bn, bAddrs}} {
		for _, addr := range side.addrs {
			args := []string{"ip", "addr", "add", addr, "dev", side.name}
			if strings.Contains(addr, ":") {
				args = append(args, "nodad")
			}
			side.ns.run(t, args...)
		}
		side.ns.run(t, "ip", "link", "set", side.name, "up")
	}
}

func sh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

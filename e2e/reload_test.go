package e2e

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSigtermDuringSlowReload: a reload stuck reading its config (here a
// FIFO nobody writes, as a hung network file system would be) must not keep
// SIGTERM from stopping portier at once.
func TestSigtermDuringSlowReload(t *testing.T) {
	be := startOpsBackend(t, "alpha", nil)
	p := startPortier(t, opsConfig("  a.test: [http://"+be.addr+"]", ""))
	cfg := opsConfigPath(t, p)
	if err := os.Remove(cfg); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	if _, ok := opsWait(5*time.Second, func() bool { return strings.Contains(p.logText(), "msg=reloading") }); !ok {
		t.Fatalf("no reload started after SIGHUP:\n%s", p.logText())
	}
	opsWant200(t, p.addr("web"), "a.test", "alpha") // still serving during the reload
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("exit: %v, want 0\n%s", err, p.logText())
		}
		t.Logf("exited %v after SIGTERM with a reload stuck", time.Since(start))
	case <-time.After(10 * time.Second):
		t.Fatalf("portier ignored SIGTERM for 10 s while a reload was stuck\n%s", p.logText())
	}
}

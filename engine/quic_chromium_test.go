package engine

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
)

// Headless Chromium, forced onto QUIC for a.test, loads a page through
// portier's quic listener from a quic-go HTTP/3 backend.
func TestQUICChromium(t *testing.T) {
	chromium := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			chromium = p
			break
		}
	}
	if chromium == "" {
		if os.Getenv("PORTIER_REQUIRE_CHROMIUM") != "" {
			t.Fatal("PORTIER_REQUIRE_CHROMIUM is set but no chromium is on PATH")
		}
		t.Skip("SKIPPED: no chromium on PATH (.ci/run installs it); the browser test of the quic listener did not run")
	}
	a := startH3Backend(t, "A")
	e, addr, _ := startQUICProxy(t, []balancer.RouteSpec{{Name: "a.test", Backends: []string{"quic://" + a.addr}}}, "", nil)
	_, port, _ := net.SplitHostPort(addr)
	leaf, err := x509.ParseCertificate(a.cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(),
		"--origin-to-force-quic-on=a.test:443",
		"--host-resolver-rules=MAP a.test:443 127.0.0.1:"+port,
		"--ignore-certificate-errors-spki-list="+base64.StdEncoding.EncodeToString(spki[:]),
		"--dump-dom", "https://a.test/")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	// The backend answers "A <host> <proto>": HTTP/3.0 proves Chromium spoke
	// QUIC, through portier (the only route to a.test:443).
	if !strings.Contains(string(out), "A a.test HTTP/3.0") {
		t.Fatalf("page: %s", out)
	}
	if s := e.QUICStats(); s.FlowsTotal == 0 || s.DatagramsDown == 0 {
		t.Fatalf("no flow through portier: %+v", s)
	}
}

package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portier/portier/internal/selfsigned"
	"github.com/portier/portier/internal/testutil"
)

// Transparent client addresses (source=client) in the topology of
// testutil.TransparentTopology: client, portier and backend namespaces, the
// backend's default route via portier's, each divert setup of docs/tuning.md.
const (
	tpClient4, tpClient6   = testutil.TPClient4, testutil.TPClient6
	tpListen4, tpListen6   = testutil.TPListen4, testutil.TPListen6
	tpPortier4, tpPortier6 = testutil.TPPortier4, testutil.TPPortier6
	tpBackend4, tpBackend6 = testutil.TPBackend4, testutil.TPBackend6
	tpAnnounced            = "198.51.100.7" // a client announced by a PROXY header
)

// sourceLog records the source address of every connection a backend accepts.
type sourceLog struct {
	mu    sync.Mutex
	count map[string]int // source IP -> connections
}

func (s *sourceLog) add(a net.Addr) {
	ap, _ := netip.ParseAddrPort(a.String())
	s.mu.Lock()
	s.count[ap.Addr().Unmap().String()]++
	s.mu.Unlock()
}

func (s *sourceLog) get(ip string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[ip]
}

type recordingListener struct {
	net.Listener
	log *sourceLog
}

func (l recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.log.add(c.RemoteAddr())
	}
	return c, err
}

// startTransparentBackends runs, in the backend namespace, an HTTP server on
// :8080 and a TLS server on :8443 (both families) that answer with the
// connection's source address.
func startTransparentBackends(t *testing.T, ns *testutil.Netns) *sourceLog {
	seen := &sourceLog{count: map[string]int{}}
	handler := func(kind string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ap, _ := netip.ParseAddrPort(r.RemoteAddr)
			fmt.Fprintf(w, "%s backend saw source=%s\n", kind, ap.Addr().Unmap())
		})
	}
	cert, err := selfsigned.Certificate("sec.test")
	if err != nil {
		t.Fatal(err)
	}
	var web, sec net.Listener
	ns.Do(t, func() {
		if web, err = net.Listen("tcp", ":8080"); err != nil {
			return
		}
		sec, err = net.Listen("tcp", ":8443")
	})
	if err != nil {
		t.Fatalf("backend listen: %v", err)
	}
	// Health checks (tcp) connect and close: the TLS server's handshake
	// errors they cause are not news.
	quiet := log.New(io.Discard, "", 0)
	hs := &http.Server{Handler: handler("http"), ErrorLog: quiet}
	ts := &http.Server{Handler: handler("tls"), ErrorLog: quiet}
	go hs.Serve(recordingListener{web, seen})
	go ts.Serve(tls.NewListener(recordingListener{sec, seen}, &tls.Config{Certificates: []tls.Certificate{cert}}))
	t.Cleanup(func() { hs.Close(); ts.Close() })
	return seen
}

// tpRequest connects from the client namespace to addr, optionally sends a
// PROXY header and a TLS handshake for name, and returns the answer's body.
func tpRequest(t *testing.T, client *testutil.Netns, addr, name string, useTLS bool, proxyHeader string) string {
	t.Helper()
	var body string
	var err error
	client.Do(t, func() {
		var c net.Conn
		if c, err = net.DialTimeout("tcp", addr, 5*time.Second); err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if proxyHeader != "" {
			if _, err = io.WriteString(c, proxyHeader); err != nil {
				return
			}
		}
		if useTLS {
			c = tls.Client(c, &tls.Config{ServerName: name, InsecureSkipVerify: true})
		}
		if _, err = fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", name); err != nil {
			return
		}
		var resp *http.Response
		if resp, err = http.ReadResponse(bufio.NewReader(c), nil); err != nil {
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = strings.TrimSpace(string(b))
	})
	if err != nil {
		t.Fatalf("%s via %s: %v", name, addr, err)
	}
	return body
}

func openFDs(t *testing.T, pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestTransparentSourceClient(t *testing.T) {
	testutil.NeedNetns(t, "nft", "iptables", "ip6tables")
	for i, d := range testutil.Diverts {
		t.Run(d.Name, func(t *testing.T) { testTransparent(t, d, i == 0) })
	}
}

// testTransparent checks source=client over one divert setup; full adds the
// health check sources and the 1,000-connection descriptor check.
func testTransparent(t *testing.T, divert testutil.Divert, full bool) {
	tp := testutil.TransparentTopology(t, divert)
	seen := startTransparentBackends(t, tp.Backend)
	cfg := fmt.Sprintf(`listeners:
  - {name: web4, address: "%[1]s:8080", protocol: http}
  - {name: sec4, address: "%[1]s:8443", protocol: tls}
  - {name: web6, address: "[%[2]s]:8080", protocol: http}
  - {name: sec6, address: "[%[2]s]:8443", protocol: tls}
  - {name: lb, address: "%[1]s:8081", protocol: http, accept_proxy: true, trusted_proxies: ["%[1]s/24"]}
health: {check: tcp, interval: 200ms, timeout: 100ms}
routes:
  web.test: ["http://%[3]s:8080?source=client"]
  sec.test: ["tls://%[3]s:8443?source=client"]
  web6.test: ["http://[%[4]s]:8080?source=client"]
  sec6.test: ["tls://[%[4]s]:8443?source=client"]
`, tpListen4, tpListen6, tpBackend4, tpBackend6)
	p := startPortierVia(t, tp.Portier.Exec(), cfg)

	for _, tc := range []struct {
		listener, name string
		tls            bool
		want           string
	}{
		{tpListen4 + ":8080", "web.test", false, "http backend saw source=" + tpClient4},
		{tpListen4 + ":8443", "sec.test", true, "tls backend saw source=" + tpClient4},
		{"[" + tpListen6 + "]:8080", "web6.test", false, "http backend saw source=" + tpClient6},
		{"[" + tpListen6 + "]:8443", "sec6.test", true, "tls backend saw source=" + tpClient6},
	} {
		if got := tpRequest(t, tp.Client, tc.listener, tc.name, tc.tls, ""); got != tc.want {
			t.Errorf("%s via %s: backend answered %q, want %q\n%s", tc.name, tc.listener, got, tc.want, p.logText())
		}
	}

	// Behind an L4 balancer (accept_proxy), the source is the client it announced.
	hdr := fmt.Sprintf("PROXY TCP4 %s %s 40000 8081\r\n", tpAnnounced, tpListen4)
	if got, want := tpRequest(t, tp.Client, tpListen4+":8081", "web.test", false, hdr), "http backend saw source="+tpAnnounced; got != want {
		t.Errorf("behind accept_proxy: backend answered %q, want %q", got, want)
	}

	if !full {
		return
	}
	// Health checks come from portier's own address, as HAProxy's do.
	deadline := time.Now().Add(5 * time.Second)
	for (seen.get(tpPortier4) == 0 || seen.get(tpPortier6) == 0) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if seen.get(tpPortier4) == 0 || seen.get(tpPortier6) == 0 {
		t.Errorf("no health check from portier's own addresses %s, %s: %v", tpPortier4, tpPortier6, seen.count)
	}

	// 1,000 connections in a row: each seen from the client, none leaving a
	// descriptor behind in portier.
	pid := p.cmd.Process.Pid
	before := openFDs(t, pid)
	fromClient := seen.get(tpClient4)
	var fail error
	tp.Client.Do(t, func() {
		buf := make([]byte, 4096)
		for i := 0; i < 1000 && fail == nil; i++ {
			c, err := net.DialTimeout("tcp", tpListen4+":8080", 5*time.Second)
			if err != nil {
				fail = fmt.Errorf("connection %d: %w", i, err)
				return
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n")
			var resp []byte
			for {
				n, err := c.Read(buf)
				resp = append(resp, buf[:n]...)
				if err != nil {
					break
				}
			}
			c.Close()
			if !strings.HasSuffix(string(resp), "source="+tpClient4+"\n") {
				fail = fmt.Errorf("connection %d: %q", i, resp)
			}
		}
	})
	if fail != nil {
		t.Fatalf("%v\n%s", fail, p.logText())
	}
	if got := seen.get(tpClient4) - fromClient; got != 1000 {
		t.Errorf("backend saw %d connections from %s, want 1000", got, tpClient4)
	}
	after := openFDs(t, pid)
	for deadline := time.Now().Add(5 * time.Second); after > before && time.Now().Before(deadline); after = openFDs(t, pid) {
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("portier descriptors: %d before, %d after 1,000 transparent connections", before, after)
	if after > before {
		t.Errorf("portier holds %d descriptors after 1,000 connections, %d before", after, before)
	}
	if err := p.stop(t); err != nil {
		t.Errorf("portier exit: %v", err)
	}
}

// Without CAP_NET_ADMIN (and CAP_NET_RAW, which the kernel also accepts for
// IP_TRANSPARENT) a source=client route is refused by -check and at start,
// with a message that says why; it is never served from portier's own
// address instead.
func TestTransparentWithoutCapability(t *testing.T) {
	testutil.NeedNetns(t, "setpriv")
	cfg := filepath.Join(t.TempDir(), "portier.yaml")
	yaml := `listeners:
  - {name: web, address: "127.0.0.1:0", protocol: http}
routes:
  web.test: ["http://127.0.0.1:9?source=client"]
`
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	drop := []string{"setpriv", "--inh-caps=-net_admin,-net_raw", "--bounding-set=-net_admin,-net_raw", portierBin}
	const want = `route "web.test": backend "http://127.0.0.1:9?source=client": source=client needs the CAP_NET_ADMIN capability`
	for _, args := range [][]string{{"-check", "-config", cfg}, {"-config", cfg}} {
		cmd := exec.Command(drop[0], append(drop[1:], args...)...)
		done := make(chan struct{})
		var out []byte
		var err error
		go func() { out, err = cmd.CombinedOutput(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("portier %v without the capability kept running: %s", args, out)
		}
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), want) {
			t.Errorf("portier %v without the capability: %v\n%s\nwant exit 1 and %q", args, err, out, want)
		}
	}
	// With the capability the same file is fine.
	if out, code := runPortier(t, "-check", "-config", cfg); code != 0 {
		t.Errorf("-check with the capability: exit %d\n%s", code, out)
	}

	// A running portier without the capability refuses a reload that adds
	// source=client and keeps serving its running configuration.
	plain := strings.Replace(yaml, "?source=client", "", 1)
	p := startPortierVia(t, drop[:len(drop)-1], plain)
	running := opsConfigPath(t, p)
	if err := os.WriteFile(running, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.logText(), "reload failed; keeping the running configuration") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if log := p.logText(); !strings.Contains(log, "reload failed; keeping the running configuration") || !strings.Contains(log, "source=client needs the CAP_NET_ADMIN capability") {
		t.Errorf("reload adding source=client without the capability:\n%s", log)
	}
	if err := p.stop(t); err != nil {
		t.Errorf("portier exit: %v", err)
	}
}

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
	"testing"
	"time"

	"github.com/portier/portier/internal/selfsigned"
)

// Transparent client addresses (source=client) in a topology of its own:
//
//	client ns  10.201.1.2  fd00:201:1::2 ──veth── 10.201.1.1 fd00:201:1::1  portier ns
//	portier ns 10.201.2.1  fd00:201:2::1 ──veth── 10.201.2.2 fd00:201:2::2  backend ns
//
// The backend namespace's default route points at portier's, which diverts
// packets for its transparent sockets to itself (each setup of
// docs/tuning.md in turn: nftables or iptables socket match with a firewall
// mark, or policy routing by interface; then a local route in table 100) and
// does not forward. So a backend answers the client's own address, and only
// portier can take that answer.
const (
	tpClient4, tpClient6   = "10.201.1.2", "fd00:201:1::2"
	tpListen4, tpListen6   = "10.201.1.1", "fd00:201:1::1"
	tpPortier4, tpPortier6 = "10.201.2.1", "fd00:201:2::1"
	tpBackend4, tpBackend6 = "10.201.2.2", "fd00:201:2::2"
	tpAnnounced            = "198.51.100.7" // a client announced by a PROXY header
)

// tpDiverts are the portier host's ways to take the backends' replies to
// client addresses for itself (docs/tuning.md): a socket match that marks
// them (nftables or iptables) plus policy routing by the mark, or policy
// routing of everything TCP from the backend-side interface.
var tpDiverts = []struct {
	name  string
	setup func(t *testing.T, p *netns)
}{
	{"nftables", func(t *testing.T, p *netns) {
		cmd := exec.Command("ip", "netns", "exec", p.name, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(`table inet portier_tproxy {
	chain divert {
		type filter hook prerouting priority mangle; policy accept;
		meta l4proto tcp socket transparent 1 meta mark set 0x1 accept
	}
}
`)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft: %v\n%s", err, out)
		}
		tpLocalTable(t, p, "fwmark", "1")
	}},
	{"iptables", func(t *testing.T, p *netns) {
		for _, ipt := range []string{"iptables", "ip6tables"} {
			p.run(t, ipt, "-t", "mangle", "-N", "DIVERT")
			p.run(t, ipt, "-t", "mangle", "-A", "PREROUTING", "-p", "tcp", "-m", "socket", "-j", "DIVERT")
			p.run(t, ipt, "-t", "mangle", "-A", "DIVERT", "-j", "MARK", "--set-mark", "1")
			p.run(t, ipt, "-t", "mangle", "-A", "DIVERT", "-j", "ACCEPT")
		}
		tpLocalTable(t, p, "fwmark", "1")
	}},
	{"ip-rule-iif", func(t *testing.T, p *netns) {
		tpLocalTable(t, p, "iif", "pb", "ipproto", "tcp")
	}},
}

// tpLocalTable sends packets matching the rule selector to the local stack
// through routing table 100, for both families.
func tpLocalTable(t *testing.T, p *netns, selector ...string) {
	p.run(t, append(append([]string{"ip", "rule", "add"}, selector...), "lookup", "100")...)
	p.run(t, "ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100")
	p.run(t, append(append([]string{"ip", "-6", "rule", "add"}, selector...), "lookup", "100")...)
	p.run(t, "ip", "-6", "route", "add", "local", "::/0", "dev", "lo", "table", "100")
}

type tpTopology struct {
	client, portier, backend *netns
}

func buildTransparentTopology(t *testing.T, divert func(*testing.T, *netns)) *tpTopology {
	tp := &tpTopology{client: newNetns(t, "ptc"), portier: newNetns(t, "ptp"), backend: newNetns(t, "ptb")}
	veth(t, tp.client, "c0", []string{tpClient4 + "/24", tpClient6 + "/64"}, tp.portier, "pc", []string{tpListen4 + "/24", tpListen6 + "/64"})
	veth(t, tp.portier, "pb", []string{tpPortier4 + "/24", tpPortier6 + "/64"}, tp.backend, "b0", []string{tpBackend4 + "/24", tpBackend6 + "/64"})
	tp.client.run(t, "ip", "route", "add", "default", "via", tpListen4)
	tp.client.run(t, "ip", "-6", "route", "add", "default", "via", tpListen6)
	tp.backend.run(t, "ip", "route", "add", "default", "via", tpPortier4)
	tp.backend.run(t, "ip", "-6", "route", "add", "default", "via", tpPortier6)
	// Portier's host never forwards: only the divert lets it take the replies.
	tp.portier.run(t, "sysctl", "-qw", "net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0")
	divert(t, tp.portier)
	return tp
}

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
func startTransparentBackends(t *testing.T, ns *netns) *sourceLog {
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
	ns.do(t, func() {
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
func tpRequest(t *testing.T, client *netns, addr, name string, useTLS bool, proxyHeader string) string {
	t.Helper()
	var body string
	var err error
	client.do(t, func() {
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
	needNetns(t, "nft", "iptables", "ip6tables")
	for i, d := range tpDiverts {
		t.Run(d.name, func(t *testing.T) { testTransparent(t, d.setup, i == 0) })
	}
}

// testTransparent checks source=client over one divert setup; full adds the
// health check sources and the 1,000-connection descriptor check.
func testTransparent(t *testing.T, divert func(*testing.T, *netns), full bool) {
	tp := buildTransparentTopology(t, divert)
	seen := startTransparentBackends(t, tp.backend)
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
	p := startPortierVia(t, tp.portier.exec(), cfg)

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
		if got := tpRequest(t, tp.client, tc.listener, tc.name, tc.tls, ""); got != tc.want {
			t.Errorf("%s via %s: backend answered %q, want %q\n%s", tc.name, tc.listener, got, tc.want, p.logText())
		}
	}

	// Behind an L4 balancer (accept_proxy), the source is the client it announced.
	hdr := fmt.Sprintf("PROXY TCP4 %s %s 40000 8081\r\n", tpAnnounced, tpListen4)
	if got, want := tpRequest(t, tp.client, tpListen4+":8081", "web.test", false, hdr), "http backend saw source="+tpAnnounced; got != want {
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
	tp.client.do(t, func() {
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
	needNetns(t, "setpriv")
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
}

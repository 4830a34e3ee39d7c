package engine

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/portier/portier/balancer"
	"github.com/portier/portier/internal/selfsigned"
	"github.com/portier/portier/internal/testutil"
)

// quicNetnsHelperEnv carries the routes to TestQUICNetnsHelper, which
// serves them from inside portier's namespace.
const quicNetnsHelperEnv = "PORTIER_QUIC_NETNS_HELPER"

// TestQUICNetnsHelper is not a test of its own: TestSourceClientQUICNetns
// runs this test binary again inside portier's network namespace with only
// this test selected, so that the engine's loops (which create the flows'
// backend sockets) run there. It serves quic listeners on both families
// until its standard input closes, then reports the flows left.
func TestQUICNetnsHelper(t *testing.T) {
	spec := os.Getenv(quicNetnsHelperEnv)
	if spec == "" {
		t.Skip("helper process of TestSourceClientQUICNetns")
	}
	var routes []balancer.RouteSpec
	for _, r := range strings.Split(spec, ",") {
		name, url, _ := strings.Cut(r, "=")
		routes = append(routes, balancer.RouteSpec{Name: name, Backends: []string{url}})
	}
	table, err := balancer.NewTable(context.Background(), routes, "", balancer.TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Options{
		Listeners: []ListenerSpec{
			{Name: "h3", Address: testutil.TPListen4 + ":8443", Scheme: balancer.SchemeQUIC},
			{Name: "h3v6", Address: "[" + testutil.TPListen6 + "]:8443", Scheme: balancer.SchemeQUIC},
		},
		Router: balancer.NewRouter(table),
		Loops:  2,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		QUIC:   QUICOptions{IdleTimeout: time.Second, AnswerTimeout: time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.Start()
	defer e.Close()
	fmt.Println("READY")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for deadline := time.Now().Add(10 * time.Second); e.QUICStats().Flows != 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	s := e.QUICStats()
	fmt.Printf("FLOWS open=%d total=%d\n", s.Flows, s.FlowsTotal)
}

// A QUIC backend behind portier sees the client's own address with
// source=client: a real HTTP/3 exchange (quic-go both ends) over IPv4 and
// IPv6 in the namespace topology of e2e/transparent_test.go, and 1,000
// flows in a row that each reach the backend from the client's address and
// leave no descriptor or flow behind.
func TestSourceClientQUICNetns(t *testing.T) {
	testutil.NeedNetns(t, "nft")
	needTransparent(t)
	flight := captureInitials(t, "raw.test")
	tp := testutil.TransparentTopology(t, testutil.Diverts[0])

	// Backends: HTTP/3 on :8443 answering with the datagrams' source, and a
	// raw responder on :9443 that records every datagram's source.
	cert, err := selfsigned.Certificate("h3.test")
	if err != nil {
		t.Fatal(err)
	}
	var h3pc, rawpc net.PacketConn
	tp.Backend.Do(t, func() {
		if h3pc, err = net.ListenPacket("udp", ":8443"); err != nil {
			return
		}
		rawpc, err = net.ListenPacket("udp", ":9443")
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http3.Server{
		TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ap, _ := netip.ParseAddrPort(r.RemoteAddr)
			fmt.Fprintf(w, "source=%s", ap.Addr().Unmap())
		}),
	}
	go func() { _ = srv.Serve(h3pc) }()
	t.Cleanup(func() { _ = srv.Close(); _ = h3pc.Close(); _ = rawpc.Close() })
	var mu sync.Mutex
	rawSources := map[string]int{}
	go func() {
		buf := make([]byte, 2048)
		for {
			_, src, err := rawpc.ReadFrom(buf)
			if err != nil {
				return
			}
			mu.Lock()
			rawSources[src.(*net.UDPAddr).IP.String()]++
			mu.Unlock()
			_, _ = rawpc.WriteTo([]byte{0x40, 1, 2, 3}, src)
		}
	}()

	// portier, in its namespace.
	routes := fmt.Sprintf("h3.test=quic://%s:8443?source=client,h3v6.test=quic://[%s]:8443?source=client,raw.test=quic://%s:9443?source=client",
		testutil.TPBackend4, testutil.TPBackend6, testutil.TPBackend4)
	cmd := exec.Command("ip", append(tp.Portier.Exec()[1:], os.Args[0], "-test.run=^TestQUICNetnsHelper$", "-test.count=1")...)
	cmd.Env = append(os.Environ(), quicNetnsHelperEnv+"="+routes)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitLine := func(prefix string) string {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("helper exited before %q", prefix)
				}
				if strings.HasPrefix(l, prefix) {
					return l
				}
			case <-timeout:
				t.Fatalf("no %q from the helper", prefix)
			}
		}
	}
	waitLine("READY")

	// HTTP/3 through portier from the client's namespace, both families.
	for _, tc := range []struct{ listen, name, want string }{
		{testutil.TPListen4 + ":8443", "h3.test", "source=" + testutil.TPClient4},
		{"[" + testutil.TPListen6 + "]:8443", "h3v6.test", "source=" + testutil.TPClient6},
	} {
		var pc net.PacketConn
		tp.Client.Do(t, func() { pc, err = net.ListenPacket("udp", ":0") })
		if err != nil {
			t.Fatal(err)
		}
		raddr, _ := net.ResolveUDPAddr("udp", tc.listen)
		tr := &http3.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: tc.name},
			QUICConfig:      &quicgo.Config{HandshakeIdleTimeout: 5 * time.Second},
			Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, cfg *quicgo.Config) (*quicgo.Conn, error) {
				return quicgo.Dial(ctx, pc, raddr, tlsCfg, cfg)
			},
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+tc.name+"/", nil)
		resp, err := tr.RoundTrip(req)
		var body []byte
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		cancel()
		tr.Close()
		pc.Close()
		if err != nil || string(body) != tc.want {
			t.Errorf("HTTP/3 %s via %s: %q %v, want %q", tc.name, tc.listen, body, err, tc.want)
		}
	}

	// 1,000 flows in a row, each from a new client socket.
	pid := cmd.Process.Pid
	fds := func() int {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	// Flows of the HTTP/3 requests idle out first (1 s).
	time.Sleep(1500 * time.Millisecond)
	before := fds()
	const n = 1000
	var fail error
	tp.Client.Do(t, func() {
		dst := &net.UDPAddr{IP: net.ParseIP(testutil.TPListen4), Port: 8443}
		buf := make([]byte, 64)
		for i := 0; i < n && fail == nil; i++ {
			c, err := net.DialUDP("udp", nil, dst)
			if err != nil {
				fail = err
				return
			}
			for _, d := range flight {
				if _, err := c.Write(d); err != nil {
					fail = err
				}
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(buf); err != nil {
				fail = fmt.Errorf("flow %d: no answer through portier: %w", i, err)
			}
			c.Close()
		}
	})
	if fail != nil {
		t.Fatal(fail)
	}
	// The last flow's answer can overtake its own later datagrams on their way
	// to the raw backend's reader, so the count is awaited; a lost datagram
	// still fails after the deadline.
	want := n * len(flight)
	counts := func() (fromClient, total int) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range rawSources {
			total += c
		}
		return rawSources[testutil.TPClient4], total
	}
	fromClient, total := counts()
	for deadline := time.Now().Add(5 * time.Second); total < want && time.Now().Before(deadline); fromClient, total = counts() {
		time.Sleep(10 * time.Millisecond)
	}
	if fromClient != want || total != want {
		t.Errorf("raw backend got %d datagrams from the client's %s of %d, want all %d", fromClient, testutil.TPClient4, total, want)
	}
	after := fds()
	for deadline := time.Now().Add(10 * time.Second); after > before && time.Now().Before(deadline); after = fds() {
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("portier's descriptors: %d before, %d after 1,000 transparent QUIC flows", before, after)
	if after > before {
		t.Errorf("%d descriptors after the flows idled out, %d before", after, before)
	}
	stdin.Close()
	if got := waitLine("FLOWS"); !strings.HasPrefix(got, "FLOWS open=0 ") {
		t.Errorf("helper: %s, want no open flow", got)
	}
}

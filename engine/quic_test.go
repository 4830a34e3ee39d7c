package engine

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/portier/portier/accesslog"
	"github.com/portier/portier/balancer"
	"github.com/portier/portier/internal/selfsigned"
)

// h3Backend runs a quic-go HTTP/3 server on loopback answering "id name".
type h3Backend struct {
	addr string
	cert tls.Certificate
	srv  *http3.Server
}

func startH3Backend(t testing.TB, id string, versions ...quicgo.Version) *h3Backend {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := selfsigned.Certificate("a.test", "b.test", "*.test")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http3.Server{
		TLSConfig:  http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}),
		QUICConfig: &quicgo.Config{Versions: versions},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, id+" "+r.Host+" "+r.Proto)
		}),
	}
	go func() { _ = srv.Serve(pc) }()
	t.Cleanup(func() { _ = srv.Close(); _ = pc.Close() })
	return &h3Backend{addr: pc.LocalAddr().String(), cert: cert, srv: srv}
}

// startQUICProxy runs an engine with one quic listener on loopback.
func startQUICProxy(t testing.TB, routes []balancer.RouteSpec, def string, mod func(*Options)) (*Engine, string, *testLogWriter) {
	t.Helper()
	table, err := balancer.NewTable(context.Background(), routes, def, balancer.TableOptions{})
	if err != nil {
		t.Fatalf("NewTable: %v", err)
	}
	lw := &testLogWriter{t: t}
	opts := Options{
		Listeners: []ListenerSpec{{Name: "h3", Address: "127.0.0.1:0", Scheme: balancer.SchemeQUIC}},
		Router:    balancer.NewRouter(table),
		Loops:     2,
		Logger:    slog.New(slog.NewTextHandler(lw, nil)),
	}
	if mod != nil {
		mod(&opts)
	}
	e, err := New(opts)
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	e.Start()
	t.Cleanup(func() { _ = e.Close() })
	return e, e.Addrs()[0].String(), lw
}

// h3Get fetches https://name/ through addr with a fresh connection.
func h3Get(t testing.TB, addr, name string, versions ...quicgo.Version) (string, error) {
	t.Helper()
	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: name},
		QUICConfig:      &quicgo.Config{Versions: versions, HandshakeIdleTimeout: 5 * time.Second},
		Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, cfg *quicgo.Config) (*quicgo.Conn, error) {
			return quicgo.DialAddr(ctx, addr, tlsCfg, cfg)
		},
	}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+name+"/", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestQUICRoutesByName(t *testing.T) {
	a := startH3Backend(t, "A")
	b := startH3Backend(t, "B")
	e, addr, _ := startQUICProxy(t, []balancer.RouteSpec{
		{Name: "a.test", Backends: []string{"quic://" + a.addr}},
		{Name: "b.test", Backends: []string{"quic://" + b.addr}},
	}, "", nil)
	for i := 0; i < 3; i++ {
		for _, tc := range []struct{ name, want string }{{"a.test", "A a.test HTTP/3.0"}, {"b.test", "B b.test HTTP/3.0"}} {
			got, err := h3Get(t, addr, tc.name)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if got != tc.want {
				t.Fatalf("%s: got %q, want %q", tc.name, got, tc.want)
			}
		}
	}
	s := e.QUICStats()
	if s.FlowsTotal != 6 || s.Outcomes[OutcomeRejected] != 0 {
		t.Errorf("flows %d, rejected %d; want 6, 0", s.FlowsTotal, s.Outcomes[OutcomeRejected])
	}
	// Go's default key share (X25519MLKEM768) makes the ClientHello larger
	// than one 1,200-byte Initial: every flow was routed from a reassembly
	// across datagrams.
	if s.SplitHellos != 6 {
		t.Errorf("%d of 6 ClientHellos spanned two or more datagrams", s.SplitHellos)
	}
	if s.DatagramsDown == 0 || s.BytesUp == 0 {
		t.Errorf("counters %+v", s)
	}
}

func TestQUICVersion2(t *testing.T) {
	a := startH3Backend(t, "A", quicgo.Version2)
	_, addr, _ := startQUICProxy(t, []balancer.RouteSpec{{Name: "a.test", Backends: []string{"quic://" + a.addr}}}, "", nil)
	got, err := h3Get(t, addr, "a.test", quicgo.Version2)
	if err != nil {
		t.Fatal(err)
	}
	if got != "A a.test HTTP/3.0" {
		t.Fatalf("got %q", got)
	}
}

// An unknown name gets CONNECTION_CLOSE with TLS alert 112 from portier: the
// client's error carries the alert, not a handshake timeout.
func TestQUICUnknownNameRefused(t *testing.T) {
	a := startH3Backend(t, "A")
	e, addr, lw := startQUICProxy(t, []balancer.RouteSpec{{Name: "a.test", Backends: []string{"quic://" + a.addr}}}, "", nil)
	_, err := h3Get(t, addr, "nope.test")
	var te *quicgo.TransportError
	if !errors.As(err, &te) {
		t.Fatalf("error %v (%T), want a QUIC transport error", err, err)
	}
	if !te.Remote || te.ErrorCode != 0x170 || !strings.Contains(err.Error(), "unrecognized_name") {
		t.Fatalf("error %v: want the peer's CRYPTO_ERROR 0x170 (alert 112 unrecognized_name)", err)
	}
	t.Logf("client error: %v", err)
	// The loop counts and logs right after sending the refusal.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if e.QUICStats().Refused > 0 && strings.Contains(lw.String(), "reason=unknown_name") {
			return
		}
	}
	t.Errorf("refusal not counted or logged: %+v", e.QUICStats())
}

// A backend whose port answers ICMP port unreachable is failed over at once:
// the client's Initials go to the next backend.
func TestQUICFailoverOnPortUnreachable(t *testing.T) {
	a := startH3Backend(t, "A")
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.LocalAddr().String()
	dead.Close()
	e, addr, _ := startQUICProxy(t, []balancer.RouteSpec{{Name: "a.test", Backends: []string{"quic://" + deadAddr, "quic://" + a.addr}}}, "", nil)
	for i := 0; i < 4; i++ {
		got, err := h3Get(t, addr, "a.test")
		if err != nil || got != "A a.test HTTP/3.0" {
			t.Fatalf("request %d: %q %v", i, got, err)
		}
	}
	if n := e.Stats().ConnectFailures.Load(); n == 0 {
		t.Error("no backend failure counted; the dead backend was never picked")
	}
}

// captureInitials returns the datagrams of a quic-go client's first flight
// for name (its ClientHello, which spans two datagrams).
func captureInitials(t testing.TB, name string) [][]byte {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_, _ = quicgo.DialAddr(ctx, pc.LocalAddr().String(), &tls.Config{InsecureSkipVerify: true, ServerName: name, NextProtos: []string{"h3"}}, nil)
	}()
	var out [][]byte
	buf := make([]byte, 2048)
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var from net.Addr
	for {
		n, src, err := pc.ReadFrom(buf)
		if err != nil {
			break
		}
		if from != nil && src.String() != from.String() {
			continue
		}
		from = src
		out = append(out, append([]byte(nil), buf[:n]...))
		// The first flight is sent at once; a retransmission comes later.
		_ = pc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	}
	if len(out) < 2 {
		t.Fatalf("captured %d datagrams, want the two of a split ClientHello", len(out))
	}
	return out
}

// 1,000 flows are created, answered, and expire at the idle timeout: the
// table and the descriptor count return to where they were.
func TestQUICFlowsIdleOut(t *testing.T) {
	flight := captureInitials(t, "a.test")
	// The backend answers every datagram with a small one, like a server's
	// first flight would.
	be, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	_ = be.(*net.UDPConn).SetReadBuffer(8 << 20)
	go func() {
		buf := make([]byte, 2048)
		for {
			_, src, err := be.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = be.WriteTo([]byte{0x40, 1, 2, 3}, src)
		}
	}()
	e, addr, _ := startQUICProxy(t, []balancer.RouteSpec{{Name: "a.test", Backends: []string{"quic://" + be.LocalAddr().String()}}}, "",
		func(o *Options) {
			o.QUIC.IdleTimeout = time.Second
			o.QUIC.AnswerTimeout = time.Second
		})
	const n = 1000
	fdsBefore := openFDs(t)
	dst, _ := net.ResolveUDPAddr("udp", addr)
	clients := make([]*net.UDPConn, 0, n)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		c, err := net.DialUDP("udp", nil, dst)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		for _, d := range flight {
			if _, err := c.Write(d); err != nil {
				t.Fatal(err)
			}
		}
		if i%50 == 49 {
			time.Sleep(10 * time.Millisecond) // bounded load: let the socket buffers drain
		}
	}
	answered := 0
	buf := make([]byte, 64)
	readBy := time.Now().Add(5 * time.Second)
	for _, c := range clients {
		_ = c.SetReadDeadline(readBy)
		if _, err := c.Read(buf); err == nil {
			answered++
		}
	}
	s := e.QUICStats()
	if answered != n || s.FlowsTotal != n {
		t.Fatalf("%d of %d clients answered, %d flows started; stats %+v", answered, n, s.FlowsTotal, s)
	}
	deadline := time.Now().Add(15 * time.Second)
	for e.QUICStats().Flows != 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	s = e.QUICStats()
	if s.Flows != 0 || s.Outcomes[OutcomeIdleTimeout] != n {
		t.Fatalf("after the idle timeout: %d flows open, %d idled out; want 0, %d", s.Flows, s.Outcomes[OutcomeIdleTimeout], n)
	}
	if s.SplitHellos != n {
		t.Errorf("split ClientHellos %d, want %d", s.SplitHellos, n)
	}
	// Every flow's backend socket is closed (the n client sockets are the test's).
	if after := openFDs(t) - n; after > fdsBefore {
		t.Errorf("%d descriptors open beside the clients' after the flows ended, %d before", after, fdsBefore)
	}
}

func openFDs(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// quicResponder is a stand-in backend: it answers a long-header datagram
// with a Handshake-type long header whose Source Connection ID is "SRV1"
// (as a server's first flight names its connection ID) and anything else
// with a short-header datagram. It records the source of every datagram.
func quicResponder(t testing.TB) (addr string, sources chan string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_ = pc.(*net.UDPConn).SetReadBuffer(8 << 20)
	t.Cleanup(func() { pc.Close() })
	sources = make(chan string, 4096)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, src, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			select {
			case sources <- src.String():
			default:
			}
			reply := []byte{0x40, 1, 2, 3}
			if n > 0 && buf[0]&0x80 != 0 {
				reply = []byte{0xe0, 0, 0, 0, 1, 0, 4, 'S', 'R', 'V', '1', 5, 0, 0, 0, 0, 0}
			}
			_, _ = pc.WriteTo(reply, src)
		}
	}()
	return pc.LocalAddr().String(), sources
}

// A client whose address changes (NAT rebinding) keeps its flow: its
// short-header packets name the server's connection ID learned from the
// backend's long header.
func TestQUICNATRebinding(t *testing.T) {
	flight := captureInitials(t, "a.test")
	be, sources := quicResponder(t)
	e, addr, _ := startQUICProxy(t, []balancer.RouteSpec{{Name: "a.test", Backends: []string{"quic://" + be}}}, "", nil)
	buf := make([]byte, 64)
	if _, n := openFlow(t, addr, flight, buf); buf[0]&0x80 == 0 {
		t.Fatalf("no long-header answer: %x", buf[:n])
	}
	first := <-sources
	// The same client from a new address, addressing the server's CID.
	c2, err := net.DialUDP("udp", nil, mustUDPAddr(t, addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.Write(append([]byte{0x40, 'S', 'R', 'V', '1'}, make([]byte, 40)...)); err != nil {
		t.Fatal(err)
	}
	_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, err := c2.Read(buf)
		if err == nil && n > 0 && buf[0]&0x80 != 0 {
			// The backend's answer to the flight's second Initial, sent
			// after the rebinding: it goes to the client's new address.
			continue
		}
		if err != nil || n != 4 || buf[0] != 0x40 {
			t.Fatalf("rebound client got no answer: %x %v", buf[:max(n, 0)], err)
		}
		break
	}
	for len(sources) > 0 {
		if src := <-sources; src != first {
			t.Fatalf("backend saw %s after the rebinding, %s before: a new flow, not the same one", src, first)
		}
	}
	if s := e.QUICStats(); s.Rebinds != 1 || s.FlowsTotal != 1 {
		t.Fatalf("rebinds %d, flows %d; want 1, 1", s.Rebinds, s.FlowsTotal)
	}
}

// Forwarding a datagram of an established flow, both ways, allocates
// nothing (the whole process is measured, loops included).
func TestQUICForwardAllocs(t *testing.T) {
	flight := captureInitials(t, "a.test")
	be, _ := quicResponder(t)
	_, addr, _ := startQUICProxy(t, []balancer.RouteSpec{{Name: "a.test", Backends: []string{"quic://" + be}}}, "", nil)
	buf := make([]byte, 64)
	c, _ := openFlow(t, addr, flight, buf)
	pkt := append([]byte{0x40, 'S', 'R', 'V', '1'}, make([]byte, 1000)...)
	roundTrip := func() {
		if _, err := c.Write(pkt); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	const n = 2000
	for i := 0; i < n; i++ {
		roundTrip()
	}
	runtime.ReadMemStats(&m1)
	// The responder's WriteTo and the test's socket calls allocate a little
	// per datagram; portier's loops must add nothing on top: compare with
	// the same exchange straight to the responder.
	proxied := m1.Mallocs - m0.Mallocs
	direct, err := net.DialUDP("udp", nil, mustUDPAddr(t, be))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	c = direct
	roundTrip()
	runtime.ReadMemStats(&m0)
	for i := 0; i < n; i++ {
		roundTrip()
	}
	runtime.ReadMemStats(&m1)
	straight := m1.Mallocs - m0.Mallocs
	t.Logf("allocations per round trip: %.2f through portier, %.2f direct", float64(proxied)/n, float64(straight)/n)
	// An allocation on the forwarding path costs at least one per round
	// trip (n in all); the timer tasks that wake the loops ten times a second
	// cost a few dozen over the run, so the bound sits at n/10.
	if proxied > straight+n/10 {
		t.Errorf("portier adds %.2f allocations per forwarded round trip", float64(proxied-straight)/n)
	}
}

func mustUDPAddr(t testing.TB, s string) *net.UDPAddr {
	a, err := net.ResolveUDPAddr("udp", s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// One access log line per flow, written when it ends.
func TestQUICAccessLog(t *testing.T) {
	flight := captureInitials(t, "a.test")
	be, _ := quicResponder(t)
	path := t.TempDir() + "/access.log"
	al, err := accesslog.Open(accesslog.Options{Path: path, Format: "json"})
	if err != nil {
		t.Fatal(err)
	}
	e, addr, _ := startQUICProxy(t, []balancer.RouteSpec{{Name: "a.test", Backends: []string{"quic://" + be}}}, "",
		func(o *Options) {
			o.AccessLog = al
			o.QUIC.IdleTimeout = 300 * time.Millisecond
		})
	c, _ := openFlow(t, addr, flight, make([]byte, 64))
	for deadline := time.Now().Add(10 * time.Second); e.QUICStats().Flows != 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if err := al.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	line := string(b)
	for _, want := range []string{`"listener":"h3"`, `"name":"a.test"`, `"backend":"` + be + `"`, `"outcome":"idle_timeout"`, c.LocalAddr().String()} {
		if !strings.Contains(line, want) {
			t.Errorf("access log %q lacks %s", line, want)
		}
	}
	if n := strings.Count(line, "\n"); n != 1 {
		t.Errorf("%d lines, want 1: %s", n, line)
	}
}

// openFlow sends a captured first flight to addr from a new socket and
// returns the socket once the backend's first answer (in buf) arrived.
func openFlow(t testing.TB, addr string, flight [][]byte, buf []byte) (*net.UDPConn, int) {
	t.Helper()
	c, err := net.DialUDP("udp", nil, mustUDPAddr(t, addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for _, d := range flight {
		if _, err := c.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("flow not answered: %v", err)
	}
	return c, n
}

// A quic listener and backend on IPv6 loopback.
func TestQUICIPv6(t *testing.T) {
	pc, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skipf("SKIPPED: no IPv6 loopback: %v", err)
	}
	pc.Close()
	cert, err := selfsigned.Certificate("a.test")
	if err != nil {
		t.Fatal(err)
	}
	bpc, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http3.Server{TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "v6 "+r.Proto) })}
	go func() { _ = srv.Serve(bpc) }()
	t.Cleanup(func() { _ = srv.Close(); _ = bpc.Close() })
	_, addr, _ := startQUICProxy(t, []balancer.RouteSpec{{Name: "a.test", Backends: []string{"quic://" + bpc.LocalAddr().String()}}}, "",
		func(o *Options) { o.Listeners[0].Address = "[::1]:0" })
	got, err := h3Get(t, addr, "a.test")
	if err != nil || got != "v6 HTTP/3.0" {
		t.Fatalf("%q %v", got, err)
	}
}

// max_flows_per_ip: a client address over its limit gets no new flow.
func TestQUICPerIPLimit(t *testing.T) {
	flight := captureInitials(t, "a.test")
	be, _ := quicResponder(t)
	e, addr, _ := startQUICProxy(t, []balancer.RouteSpec{{Name: "a.test", Backends: []string{"quic://" + be}}}, "",
		func(o *Options) { o.QUIC.MaxFlowsPerIP = 2 })
	buf := make([]byte, 64)
	openFlow(t, addr, flight, buf)
	openFlow(t, addr, flight, buf)
	c, err := net.DialUDP("udp", nil, mustUDPAddr(t, addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, d := range flight {
		if _, err := c.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	// The drop is counted when the loop reads the datagram; wait for it.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if s := e.QUICStats(); s.Drops[QUICDropLimit] == int64(len(flight)) {
			if s.FlowsTotal != 2 {
				t.Fatalf("%d flows started, want 2", s.FlowsTotal)
			}
			return
		}
	}
	t.Fatalf("limit drops %d, want %d", e.QUICStats().Drops[QUICDropLimit], len(flight))
}

// Junk from many addresses (random bytes, forged long headers of every
// kind, truncated Initials) is dropped and counted; it leaves no flow
// behind and a real client is served right after.
func TestQUICJunk(t *testing.T) {
	a := startH3Backend(t, "A")
	e, addr, _ := startQUICProxy(t, []balancer.RouteSpec{{Name: "a.test", Backends: []string{"quic://" + a.addr}}}, "", nil)
	flight := captureInitials(t, "a.test")
	rnd := func(n int) []byte {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		return b
	}
	initialHdr := append([]byte{0xc3, 0, 0, 0, 1, 8}, rnd(8)...)
	initialHdr = append(initialHdr, 0, 0, 0x44, 0x00) // no SCID, no token, length 1024
	junk := [][]byte{
		rnd(1), rnd(50), rnd(1200), rnd(1500),
		append([]byte{0x40}, rnd(1300)...),                                     // short header, unknown flow
		append([]byte{0x80, 0, 0, 0, 0, 4, 1, 2, 3, 4, 0}, rnd(1200)...),       // version negotiation
		append([]byte{0xc0, 0xff, 0, 0, 0x1d, 4, 1, 2, 3, 4, 0}, rnd(1200)...), // draft-29
		append(append([]byte(nil), initialHdr...), rnd(1200)...),               // Initial that does not decrypt
		flight[0][:1199], // truncated real Initial
		append(append([]byte(nil), flight[0][:100]...), rnd(1200)...), // real header, junk payload
	}
	var clients []*net.UDPConn
	for i := 0; i < 50; i++ {
		c, err := net.DialUDP("udp", nil, mustUDPAddr(t, addr))
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		for _, d := range junk {
			_, _ = c.Write(d)
		}
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	want := int64(50 * len(junk))
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if e.QUICStats().DatagramsUp >= want {
			break
		}
	}
	s := e.QUICStats()
	var drops int64
	for _, n := range s.Drops {
		drops += n
	}
	if s.DatagramsUp != want || drops != want || s.Flows != 0 {
		t.Fatalf("%d datagrams, %d dropped, %d flows open; want %d, %d, 0: %+v", s.DatagramsUp, drops, s.Flows, want, want, s)
	}
	if got, err := h3Get(t, addr, "a.test"); err != nil || got != "A a.test HTTP/3.0" {
		t.Fatalf("after the junk: %q %v", got, err)
	}
}

// A draining backend (drain=1) gets no new flow.
func TestQUICDrain(t *testing.T) {
	a := startH3Backend(t, "A")
	b := startH3Backend(t, "B")
	_, addr, _ := startQUICProxy(t, []balancer.RouteSpec{{Name: "a.test", Backends: []string{"quic://" + a.addr + "?drain=1", "quic://" + b.addr}}}, "", nil)
	for i := 0; i < 4; i++ {
		if got, err := h3Get(t, addr, "a.test"); err != nil || got != "B a.test HTTP/3.0" {
			t.Fatalf("request %d: %q %v", i, got, err)
		}
	}
}

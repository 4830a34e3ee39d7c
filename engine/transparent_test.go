package engine

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
	"github.com/portier/portier/internal/rawsock"
)

func needTransparent(t *testing.T) {
	t.Helper()
	if err := rawsock.CheckTransparent(false); err != nil {
		t.Skipf("SKIPPED: no transparent binds here (tests run as root in CI): %v", err)
	}
}

// sourceBackend answers with the source address of each connection.
func sourceBackend(t *testing.T, network, addr string) string {
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap, _ := netip.ParseAddrPort(r.RemoteAddr)
		fmt.Fprintf(w, "source=%s", ap.Addr())
	}))
	s.Listener.Close()
	s.Listener = ln
	s.Start()
	t.Cleanup(s.Close)
	return ln.Addr().String()
}

// On loopback every 127/8 address is the host's own, so source=client
// works without policy routing: the backend sees the client's 127.0.0.x
// instead of the 127.0.0.1 portier would connect from. (The real topology,
// with foreign addresses and routing, is e2e/transparent_test.go.)
func TestSourceClientLoopback(t *testing.T) {
	needTransparent(t)
	be := sourceBackend(t, "tcp", "127.0.0.1:0")
	p := startProxy(t, []balancer.RouteSpec{
		{Name: "client.test", Backends: []string{"http://" + be + "?source=client"}},
		{Name: "proxy.test", Backends: []string{"http://" + be}},
	}, "", nil)
	for _, tc := range []struct{ host, from, want string }{
		{"client.test", "127.0.0.7", "source=127.0.0.7"},
		{"client.test", "127.0.0.8", "source=127.0.0.8"},
		{"proxy.test", "127.0.0.7", "source=127.0.0.1"},
	} {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(tc.from)}}
		c, err := d.Dial("tcp", p.httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", tc.host)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		resp, _ := io.ReadAll(c)
		c.Close()
		if !strings.HasSuffix(string(resp), tc.want) {
			t.Errorf("%s from %s: %q, want %s", tc.host, tc.from, resp, tc.want)
		}
	}
}

// An IPv6 client cannot be the source of a connection to an IPv4 backend:
// that backend is skipped for the client with a log line (the next one is
// tried), and its health is not blamed.
func TestSourceClientFamilyMismatch(t *testing.T) {
	needTransparent(t)
	v4 := sourceBackend(t, "tcp", "127.0.0.1:0")
	v6 := sourceBackend(t, "tcp", "[::1]:0")
	table, err := balancer.NewTable(t.Context(), []balancer.RouteSpec{
		{Name: "mixed.test", Backends: []string{"http://" + v4 + "?source=client", "http://" + v6 + "?source=client"}},
		{Name: "v4only.test", Backends: []string{"http://" + v4 + "?source=client"}},
	}, "", balancer.TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, nil, "", func(o *Options) {
		o.Router = balancer.NewRouter(table)
		o.Listeners[0].Address, o.Listeners[1].Address = "[::1]:0", "[::1]:0"
	})
	for i := 0; i < 4; i++ { // round robin starts on either backend
		resp := rawExchange(t, p.httpAddr, []byte("GET / HTTP/1.1\r\nHost: mixed.test\r\nConnection: close\r\n\r\n"))
		if !strings.HasSuffix(string(resp), "source=::1") {
			t.Fatalf("IPv6 client, mixed pool: %q, want the IPv6 backend with source=::1", resp)
		}
	}
	resp := rawExchange(t, p.httpAddr, []byte("GET / HTTP/1.1\r\nHost: v4only.test\r\nConnection: close\r\n\r\n"))
	if !strings.HasPrefix(string(resp), "HTTP/1.1 502") {
		t.Errorf("IPv6 client, IPv4-only pool: %q, want 502", resp)
	}
	if !p.log.has("client address family differs from the backend's") {
		t.Error("no log line for the family mismatch")
	}
	for _, b := range table.Backends() {
		if !b.Up() {
			t.Errorf("%v marked down for a client's address family", b)
		}
	}
}

// What the dial adds per connection for unix sockets and source=client
// allocates nothing.
func TestDialStepsAllocs(t *testing.T) {
	needTransparent(t)
	l := &loop{}
	table, err := balancer.NewTable(t.Context(), []balancer.RouteSpec{
		{Name: "u.test", Backends: []string{"http+unix:///run/app/web.sock"}},
		{Name: "s.test", Backends: []string{"http://192.0.2.1:80?source=client"}},
	}, "", balancer.TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ub, sb := table.Lookup(balancer.SchemeHTTP, []byte("u.test")).Backends[0], table.Lookup(balancer.SchemeHTTP, []byte("s.test")).Backends[0]
	c := &conn{remote: netip.MustParseAddrPort("192.0.2.77:40000")}
	if n := testing.AllocsPerRun(100, func() { l.backendSockaddr(ub) }); n != 0 {
		t.Errorf("unix sockaddr: %v allocations", n)
	}
	var failed error
	n := testing.AllocsPerRun(100, func() {
		fam, _, _ := l.backendSockaddr(sb)
		fd, err := sysSocket(fam)
		if err != nil {
			failed = err
			return
		}
		if err := l.bindSource(fd, fam, c.remote, sb); err != nil {
			failed = err
		}
		sysClose(fd)
	})
	if failed != nil {
		t.Fatal(failed)
	}
	if n != 0 {
		t.Errorf("socket + transparent bind: %v allocations", n)
	}
}

// QUIC flows too: with source=client the flow's backend socket is bound to
// the client's address, so the backend sees the client as the datagrams'
// source, and its answers still reach the client through portier.
func TestSourceClientQUICLoopback(t *testing.T) {
	needTransparent(t)
	flight := captureInitials(t, "a.test")
	be, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	sources := make(chan string, 16)
	go func() {
		buf := make([]byte, 2048)
		for {
			_, src, err := be.ReadFrom(buf)
			if err != nil {
				return
			}
			select {
			case sources <- src.(*net.UDPAddr).IP.String():
			default:
			}
			_, _ = be.WriteTo([]byte{0x40, 1, 2, 3}, src)
		}
	}()
	for _, tc := range []struct{ opt, want string }{{"?source=client", "127.0.0.7"}, {"", "127.0.0.1"}} {
		_, addr, _ := startQUICProxy(t, []balancer.RouteSpec{{Name: "a.test", Backends: []string{"quic://" + be.LocalAddr().String() + tc.opt}}}, "", nil)
		dst, _ := net.ResolveUDPAddr("udp", addr)
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.7")}, dst)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range flight {
			if _, err := c.Write(d); err != nil {
				t.Fatal(err)
			}
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		_, err = c.Read(buf)
		c.Close()
		if err != nil {
			t.Fatalf("quic%s: no answer through portier: %v", tc.opt, err)
		}
		for range flight {
			if got := <-sources; got != tc.want {
				t.Errorf("quic%s: backend saw datagrams from %s, want %s", tc.opt, got, tc.want)
			}
		}
	}
}

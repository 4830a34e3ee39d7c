package engine

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
	"github.com/portier/portier/internal/testutil"
	"github.com/portier/portier/proxyproto"
)

// ppEchoBackend parses the PROXY header portier sends and answers with what
// it announced, as an HTTP response.
func ppEchoBackend(t *testing.T) string {
	return testutil.RawBackend(t, func(c *net.TCPConn) { ppEcho(c) })
}

// ppEcho serves one connection of ppEchoBackend.
func ppEcho(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	buf, _ := br.Peek(16)
	var h proxyproto.Header
	var n int
	var err error
	for {
		n, err = proxyproto.Parse(buf, &h)
		if err != proxyproto.ErrNeedMore {
			break
		}
		if buf, err = br.Peek(len(buf) + 1); err != nil {
			return
		}
	}
	body := fmt.Sprintf("err=%v", err)
	if err == nil {
		br.Discard(n)
		body = fmt.Sprintf("v%d src=%s dst=%s authority=%s alpn=%s", h.Version, h.Src, h.Dst, h.Authority, h.ALPN)
	}
	testutil.SkipHead(br)
	fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
}

func TestProxyProtocolToBackends(t *testing.T) {
	be := ppEchoBackend(t)
	p := startProxy(t, []balancer.RouteSpec{
		{Name: "v1.test", Backends: []string{"http://" + be + "?proxy=v1"}},
		{Name: "v2.test", Backends: []string{"http://" + be + "?proxy=v2"}},
	}, "", nil)
	for _, tc := range []struct{ host, src, want string }{
		{"v1.test", "127.0.0.7", "v1 src=127.0.0.7:"},
		{"v2.test", "127.0.0.9", "v2 src=127.0.0.9:"},
	} {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(tc.src)}}
		c, err := d.Dial("tcp", p.httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", tc.host)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		resp, _ := io.ReadAll(c)
		c.Close()
		if !strings.Contains(string(resp), tc.want) || !strings.Contains(string(resp), "dst="+p.httpAddr) {
			t.Errorf("%s: backend saw %q, want %q and dst=%s", tc.host, resp, tc.want, p.httpAddr)
		}
		if tc.host == "v2.test" && !strings.Contains(string(resp), "authority=v2.test") {
			t.Errorf("v2 header lacks the routed name: %q", resp)
		}
	}
}

func TestAcceptProxyFromTrustedOnly(t *testing.T) {
	be := ppEchoBackend(t)
	routes := []balancer.RouteSpec{{Name: "app.test", Backends: []string{"http://" + be + "?proxy=v2"}}}
	trusting := func(prefix string) func(*Options) {
		return func(o *Options) {
			o.Listeners[0].AcceptProxy = true
			o.Listeners[0].TrustedProxies = []netip.Prefix{netip.MustParsePrefix(prefix)}
		}
	}
	req := "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"
	announced := string(proxyproto.AppendV1(nil, netip.MustParseAddrPort("203.0.113.7:5555"), netip.MustParseAddrPort("198.51.100.1:80")))

	p := startProxy(t, routes, "", trusting("127.0.0.0/8"))
	resp := rawExchange(t, p.httpAddr, []byte(announced+req))
	if !strings.Contains(string(resp), "src=203.0.113.7:5555") {
		t.Errorf("announced client not passed on: %q", resp)
	}
	// A listener that requires the header closes connections without one.
	if resp := rawExchange(t, p.httpAddr, []byte(req)); len(resp) != 0 {
		t.Errorf("no PROXY header: got %q, want a close", resp)
	}
	if !p.log.has("missing or malformed PROXY header") {
		t.Error("no log line for the missing header")
	}
	// Not from a trusted proxy: closed and logged.
	q := startProxy(t, routes, "", trusting("10.0.0.0/8"))
	if resp := rawExchange(t, q.httpAddr, []byte(announced+req)); len(resp) != 0 {
		t.Errorf("untrusted peer: got %q, want a close", resp)
	}
	if !q.log.has("not in trusted_proxies") {
		t.Error("no log line for the untrusted peer")
	}
}

package engine

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
)

func TestHTTPRoutingByHostWithCurl(t *testing.T) {
	curl := need(t, "curl")
	a, b, w := httpBackend(t, "a"), httpBackend(t, "b"), httpBackend(t, "w")
	p := startProxy(t, []balancer.RouteSpec{
		{Name: "app1.test", Backends: []string{"http://" + a, "http://" + b + "?weight=2"}},
		{Name: "*.apps.test", Backends: []string{"http://" + w}},
	}, "", nil)

	tests := []struct{ host, want string }{
		{"x.apps.test", "backend=w host=x.apps.test"},
		{"deep.x.APPS.test.", "backend=w"},
		{"x.apps.test:8080", "backend=w"},
	}
	for _, tc := range tests {
		out, err := runCmd(t, 10*time.Second, curl, "-sS", "-H", "Host: "+tc.host, "http://"+p.httpAddr+"/")
		if err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("curl Host %q: %v: %q, want %q", tc.host, err, out, tc.want)
		}
	}
	// Weighted round robin: one connection per request, 1:2 split.
	counts := map[string]int{}
	for i := 0; i < 30; i++ {
		out, err := runCmd(t, 10*time.Second, curl, "-sS", "-H", "Host: App1.Test", "http://"+p.httpAddr+"/")
		if err != nil {
			t.Fatalf("curl: %v: %s", err, out)
		}
		counts[strings.Fields(out)[0]]++
	}
	if counts["backend=a"] != 10 || counts["backend=b"] != 20 {
		t.Errorf("split = %v, want a:10 b:20", counts)
	}
}

func TestTLSRoutingBySNI(t *testing.T) {
	curl := need(t, "curl")
	one, two := tlsBackend(t, "one"), tlsBackend(t, "two")
	p := startProxy(t, []balancer.RouteSpec{
		{Name: "one.test", Backends: []string{"tls://" + one}},
		{Name: "*.two.test", Backends: []string{"tls://" + two}},
	}, "", nil)

	for _, tc := range []struct{ name, want string }{{"one.test", "backend=one"}, {"a.two.test", "backend=two"}} {
		url := fmt.Sprintf("https://%s:%s/", tc.name, p.tlsPortNo)
		out, err := runCmd(t, 10*time.Second, curl, "-sSk", "--resolve", tc.name+":"+p.tlsPortNo+":127.0.0.1", url)
		if err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("curl %s: %v: %q", url, err, out)
		}
	}
	// Go's crypto/tls client: its default X25519MLKEM768 key share makes a ClientHello over 1 KB.
	for _, proto := range []string{"h2", "http/1.1"} {
		cfg := tlsClientConfig("one.test")
		cfg.NextProtos = []string{proto}
		conn, err := tls.Dial("tcp", p.tlsAddr, cfg)
		if err != nil {
			t.Fatalf("tls.Dial: %v", err)
		}
		if got := conn.ConnectionState().NegotiatedProtocol; got != proto {
			t.Errorf("ALPN through the proxy = %q, want %q", got, proto)
		}
		conn.Close()
	}
	resp := tlsGet(t, p.tlsAddr, "one.test", nil)
	if !strings.Contains(resp, "backend=one") {
		t.Errorf("Go TLS client got %q", resp)
	}
}

// tlsGet does one HTTP/1.1 request over TLS through the proxy; wrap may
// change how the client's bytes are written.
func tlsGet(t *testing.T, addr, name string, wrap func(net.Conn) net.Conn) string {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(20 * time.Second))
	if wrap != nil {
		raw = wrap(raw)
	}
	conn := tls.Client(raw, tlsClientConfig(name))
	if err := conn.Handshake(); err != nil {
		t.Fatalf("handshake with %s through the proxy: %v", name, err)
	}
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", name)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// dribbleConn writes its first limit bytes chunk bytes at a time, pausing so
// that each lands in its own TCP segment and its own read on the proxy.
type dribbleConn struct {
	net.Conn
	chunk, limit int
}

func (d *dribbleConn) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 && d.limit > 0 {
		k := min(d.chunk, len(b), d.limit)
		w, err := d.Conn.Write(b[:k])
		n += w
		if err != nil {
			return n, err
		}
		b, d.limit = b[k:], d.limit-k
		time.Sleep(200 * time.Microsecond)
	}
	w, err := d.Conn.Write(b)
	return n + w, err
}

// rerecordConn splits the first TLS handshake record it writes into records
// carrying at most size bytes of the handshake message each.
type rerecordConn struct {
	net.Conn
	size int
	done bool
}

func (r *rerecordConn) Write(b []byte) (int, error) {
	if r.done || len(b) < 5 || b[0] != 22 {
		return r.Conn.Write(b)
	}
	r.done = true
	n := int(b[3])<<8 | int(b[4])
	body, rest := b[5:5+n], b[5+n:]
	var out []byte
	for len(body) > 0 {
		k := min(r.size, len(body))
		out = append(out, 22, b[1], b[2], byte(k>>8), byte(k))
		out = append(out, body[:k]...)
		body = body[k:]
	}
	out = append(out, rest...)
	if _, err := r.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}

func TestClientHelloDeliveredInPieces(t *testing.T) {
	be := tlsBackend(t, "one")
	p := startProxy(t, []balancer.RouteSpec{{Name: "one.test", Backends: []string{"tls://" + be}}}, "", nil)
	cases := map[string]func(net.Conn) net.Conn{
		"one byte per write": func(c net.Conn) net.Conn {
			c.(*net.TCPConn).SetNoDelay(true)
			return &dribbleConn{Conn: c, chunk: 1, limit: 4096}
		},
		"64-byte TLS records": func(c net.Conn) net.Conn { return &rerecordConn{Conn: c, size: 64} },
		"64-byte records, 7 bytes per write": func(c net.Conn) net.Conn {
			return &rerecordConn{Conn: &dribbleConn{Conn: c, chunk: 7, limit: 4096}, size: 64}
		},
	}
	for name, wrap := range cases {
		t.Run(name, func(t *testing.T) {
			if got := tlsGet(t, p.tlsAddr, "one.test", wrap); !strings.Contains(got, "backend=one") {
				t.Errorf("got %q", got)
			}
		})
	}
}

package engine

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
	"github.com/portier/portier/internal/testutil"
)

// unixListener listens on a fresh socket path in the test's directory.
func unixListener(t testing.TB, name string) (net.Listener, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, path
}

// unixHTTPBackend serves backendHandler(name) with Go's net/http on a unix socket.
func unixHTTPBackend(t testing.TB, name string) string {
	ln, path := unixListener(t, name+".sock")
	s := &http.Server{Handler: backendHandler(name)}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Close() })
	return path
}

// unixTLSBackend serves backendHandler(name) over Go's TLS stack on a unix socket.
func unixTLSBackend(t testing.TB, name string) string {
	ln, path := unixListener(t, name+".sock")
	s := httptest.NewUnstartedServer(backendHandler(name))
	s.Listener.Close()
	s.Listener = ln
	s.TLS = &tls.Config{NextProtos: []string{"http/1.1"}}
	s.StartTLS()
	t.Cleanup(s.Close)
	return path
}

func TestUnixSocketBackends(t *testing.T) {
	web := unixHTTPBackend(t, "web")
	sec := unixTLSBackend(t, "sec")
	missing := filepath.Join(t.TempDir(), "gone.sock")
	p := startProxy(t, []balancer.RouteSpec{
		{Name: "web.test", Backends: []string{"http+unix://" + web}},
		{Name: "sec.test", Backends: []string{"tls+unix://" + sec + "?weight=2"}},
		// A path nobody listens on fails its connect at once; the retry
		// goes to the live socket and the client never notices.
		{Name: "retry.test", Backends: []string{"http+unix://" + missing, "http+unix://" + web}},
	}, "", nil)

	for i := 0; i < 20; i++ { // keep-alive off: a new backend connection each time
		host := "web.test"
		if i%2 == 1 {
			host = "retry.test"
		}
		resp := rawExchange(t, p.httpAddr, []byte("GET / HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n"))
		if !strings.HasPrefix(string(resp), "HTTP/1.1 200") || !strings.Contains(string(resp), "backend=web host="+host) {
			t.Fatalf("%s over a unix socket: %q", host, resp)
		}
	}
	if !p.log.has("backend=unix:"+missing) || !p.log.has("no such file or directory") {
		t.Errorf("the failed connect to %s is not logged by its path and cause", missing)
	}

	// TLS passthrough to a unix socket: the client completes its handshake
	// with the backend's own certificate.
	for i := 0; i < 5; i++ {
		c, err := tls.Dial("tcp", p.tlsAddr, tlsClientConfig("sec.test"))
		if err != nil {
			t.Fatalf("TLS through portier to tls+unix://: %v", err)
		}
		fmt.Fprintf(c, "GET /x HTTP/1.1\r\nHost: sec.test\r\nConnection: close\r\n\r\n")
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		resp, _ := io.ReadAll(c)
		c.Close()
		if !strings.Contains(string(resp), "backend=sec host=sec.test proto=HTTP/1.1") {
			t.Fatalf("TLS over a unix socket: %q", resp)
		}
	}
}

// A unix-socket backend still learns the client's TCP addresses from a
// PROXY header: the header describes the client's connection to portier
// (the PROXY spec's "original connection"), not portier's to the backend,
// which is what HAProxy sends to a unix-socket server too. AF_UNIX appears
// in a header only when the client itself came over a unix socket, and
// portier's listeners are TCP.
func TestUnixSocketBackendProxyHeader(t *testing.T) {
	ln, path := unixListener(t, "pp.sock")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); ppEcho(c) }()
		}
	}()
	p := startProxy(t, []balancer.RouteSpec{
		{Name: "v1.test", Backends: []string{"http+unix://" + path + "?proxy=v1"}},
		{Name: "v2.test", Backends: []string{"http+unix://" + path + "?proxy=v2"}},
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
			t.Errorf("%s: unix backend saw %q, want %q and dst=%s", tc.host, resp, tc.want, p.httpAddr)
		}
	}
}

// nginx serving on a unix socket, as a PaaS application server would.
func TestUnixSocketBackendNginx(t *testing.T) {
	var sock string
	testutil.StartNginx(t, func(dir string, port int) string {
		sock = filepath.Join(dir, "nginx.sock")
		return fmt.Sprintf(`events {}
http {
  %s
  access_log off;
  server {
    listen [::1]:%d;
    listen unix:%s;
    location / { return 200 "nginx on a unix socket: $request_uri\n"; }
  }
}
`, testutil.NginxTempPaths(dir), port, sock)
	})
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("nginx did not create %s: %v", sock, err)
	}
	p := startProxy(t, []balancer.RouteSpec{{Name: "ng.test", Backends: []string{"http+unix://" + sock}}}, "", nil)
	c, err := net.Dial("tcp", p.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := 0; i < 3; i++ { // keep-alive: several requests on one connection
		fmt.Fprintf(c, "GET /req%d HTTP/1.1\r\nHost: ng.test\r\n\r\n", i)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("nginx on a unix socket: /req%d\n", i); resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("request %d: %d %q, want %q", i, resp.StatusCode, body, want)
		}
	}
}

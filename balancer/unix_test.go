package balancer

import (
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portier/portier/internal/selfsigned"
)

func TestParseUnixBackend(t *testing.T) {
	good := []struct {
		raw  string
		want BackendSpec
	}{
		{"http+unix:///run/app/web.sock", BackendSpec{Scheme: SchemeHTTP, Path: "/run/app/web.sock", Weight: 1}},
		{"tls+unix:///run/app/tls.sock?proxy=v2&weight=3", BackendSpec{Scheme: SchemeTLS, Path: "/run/app/tls.sock", Weight: 3, Proxy: ProxyV2}},
		{"HTTP+UNIX:///s?drain=1", BackendSpec{Scheme: SchemeHTTP, Path: "/s", Weight: 1, Drain: true}},
		{"http://10.0.0.5:8000?source=client", BackendSpec{Scheme: SchemeHTTP, Host: "10.0.0.5", Port: 8000, Weight: 1, Source: SourceClient}},
		{"tls://[2001:db8::5]?source=proxy", BackendSpec{Scheme: SchemeTLS, Host: "2001:db8::5", Port: 443, Weight: 1}},
	}
	for _, tc := range good {
		got, err := ParseBackend(tc.raw)
		if err != nil {
			t.Errorf("ParseBackend(%q): %v", tc.raw, err)
			continue
		}
		tc.want.Raw = tc.raw
		if got != tc.want {
			t.Errorf("ParseBackend(%q) = %+v, want %+v", tc.raw, got, tc.want)
		}
	}
	bad := []struct{ raw, err string }{
		{"http+unix://", "missing socket path"},
		{"http+unix://run/app.sock", `socket path "run/app.sock" must be absolute (want three slashes: http+unix:///path)`},
		{"tls+unix://", "missing socket path"},
		{"http+unix:///run/app/", "names a directory"},
		{"http+unix:///" + strings.Repeat("a", 107), "socket path is 108 bytes, the kernel takes at most 107"},
		{"http+unix:///s#x", "fragment not allowed"},
		{"http+unix:///s?source=client", "source=client needs a TCP backend"},
		{"http+unix:///s?weight=0", `weight "0"`},
		{"http://x?source=me", `source "me": want client or proxy`},
		{"http://x?source=client&source=client", `duplicate option "source"`},
	}
	for _, tc := range bad {
		_, err := ParseBackend(tc.raw)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseBackend(%q) = %v, want %q", tc.raw, err, tc.err)
		}
	}
}

// Unix-socket backends are checked over their socket: an HTTP check asks
// for the path with Host "localhost", a TLS check completes a handshake,
// and a vanished socket goes down.
func TestHealthUnixSockets(t *testing.T) {
	dir := t.TempDir()
	webPath, tlsPath := filepath.Join(dir, "web.sock"), filepath.Join(dir, "tls.sock")
	var hosts atomic.Value
	webLn, err := net.Listen("unix", webPath)
	if err != nil {
		t.Fatal(err)
	}
	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hosts.Store(r.Host + " " + r.URL.Path)
	})}
	go web.Serve(webLn)
	t.Cleanup(func() { web.Close() })
	cert, err := selfsigned.Certificate("tls.test")
	if err != nil {
		t.Fatal(err)
	}
	tlsLn, err := tls.Listen("unix", tlsPath, &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tlsLn.Close() })
	go func() {
		for {
			c, err := tlsLn.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				_ = c.(*tls.Conn).Handshake()
			}()
		}
	}()

	var ch changes
	h := NewHealth(HealthOptions{Defaults: fast, Logger: quietLogger(), OnChange: ch.on})
	tab := healthTable(t, h, []RouteSpec{
		{Name: "web.test", Health: HealthCheck{Kind: CheckHTTP, Path: "/up"}, Backends: []string{"http+unix://" + webPath}},
		{Name: "tls.test", Health: HealthCheck{Kind: CheckTLS}, Backends: []string{"tls+unix://" + tlsPath}},
	})
	h.Track(tab)
	runHealth(t, h)
	eventually(t, "both checked and up", func() bool {
		st := h.States()
		return len(st) == 2 && !st[0].LastCheck.IsZero() && !st[1].LastCheck.IsZero() && st[0].Up && st[1].Up
	})
	if got, _ := hosts.Load().(string); got != "localhost /up" {
		t.Errorf("HTTP check over the socket asked %q, want \"localhost /up\"", got)
	}
	if st := h.States(); st[0].Addr != "unix:"+tlsPath || st[1].Addr != "unix:"+webPath {
		t.Errorf("states named %q and %q, want unix:<path>", st[0].Addr, st[1].Addr)
	}

	web.Close()
	os.Remove(webPath)
	b := tab.Backends()[0]
	eventually(t, "vanished socket goes down", func() bool { return !b.Up() })
	for _, s := range h.States() {
		if s.Addr == "unix:"+webPath && !strings.Contains(s.LastError, "no such file or directory") {
			t.Errorf("last error %q", s.LastError)
		}
	}
	// A unix socket is this host's own: its health is not offered to the fleet.
	time.Sleep(100 * time.Millisecond)
	if got := ch.get(); len(got) != 0 {
		t.Errorf("OnChange told about unix sockets: %v", got)
	}
}

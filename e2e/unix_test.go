package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// -check says what is wrong with a unix-socket backend's path.
func TestCheckUnixSocketPath(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "app.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, url string
		code      int
		want      string
	}{
		{"exists", "http+unix://" + sock, 0, "ok (1 listeners, 1 routes)"},
		{"missing", "http+unix://" + dir + "/gone.sock",
			1, `route "app.test": backend "http+unix://` + dir + `/gone.sock": unix socket ` + dir + `/gone.sock does not exist (is the application running, and is the path right?)`},
		{"regular file", "tls+unix://" + file, 1, file + " is not a unix socket (it is a regular file)"},
		{"directory", "http+unix://" + dir, 1, dir + " is not a unix socket (it is a directory)"},
		{"relative", "http+unix://app.sock", 1, `socket path "app.sock" must be absolute (want three slashes: http+unix:///path)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "portier.yaml")
			yaml := fmt.Sprintf("listeners:\n  - {name: web, address: \"127.0.0.1:0\", protocol: http}\nroutes:\n  app.test: [%q]\n", tc.url)
			if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			out, code := runPortier(t, "-check", "-config", cfg)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Errorf("-check: exit %d %q, want exit %d and %q", code, out, tc.code, tc.want)
			}
		})
	}
}

// The binary serves a route whose backend is a unix socket; the admin API
// names it unix:<path>, drains it by that name, and a socket that appears
// after portier started is picked up by the health checks.
func TestUnixSocketBackendBinary(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "app.sock")
	p := startPortier(t, fmt.Sprintf(`listeners:
  - {name: web, address: "127.0.0.1:0", protocol: http}
admin: "127.0.0.1:0"
health: {check: http, path: /healthz, interval: 100ms, timeout: 100ms, rise: 1, fall: 1}
routes:
  app.test: ["http+unix://%s"]
`, sock))
	adminAddr := opsAdminAddr(t, p)
	get := func() (int, string) {
		req, _ := http.NewRequest("GET", "http://"+p.addr("web")+"/hello", nil)
		req.Host = "app.test"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// Started before its application: 502 until the socket exists.
	if code, _ := get(); code != 502 {
		t.Errorf("before the socket exists: %d, want 502", code)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app on a unix socket: %s %s xff=%s", r.Host, r.URL.Path, r.Header.Get("X-Forwarded-For"))
	})}
	go srv.Serve(ln)
	defer srv.Close()
	deadline := time.Now().Add(5 * time.Second)
	code, body := get()
	for code != 200 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		code, body = get()
	}
	if code != 200 || body != "app on a unix socket: app.test /hello xff=127.0.0.1" {
		t.Fatalf("through portier: %d %q\n%s", code, body, p.logText())
	}

	resp, err := http.Post("http://"+adminAddr+"/backends/drain?addr="+url.QueryEscape("unix:"+sock)+"&on=1", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var dr struct {
		Addr     string `json:"addr"`
		Draining bool   `json:"draining"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&dr)
	resp.Body.Close()
	if resp.StatusCode != 200 || dr.Addr != "unix:"+sock || !dr.Draining {
		t.Fatalf("drain unix:%s: %d %+v", sock, resp.StatusCode, dr)
	}
	routes := healthRoutes(t, adminAddr)
	if len(routes) != 1 || len(routes[0].Backends) != 1 || routes[0].Backends[0].Addr != "unix:"+sock || !routes[0].Backends[0].Draining {
		t.Errorf("/routes: %+v", routes)
	}
}

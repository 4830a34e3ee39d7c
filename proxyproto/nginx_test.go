package proxyproto

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// startNginx runs the Debian nginx in the foreground as a child, listening
// with proxy_protocol on 127.0.0.1:port and [::1]:port and answering every
// request with the address the PROXY header announced.
func startNginx(t *testing.T) (port int) {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
			if _, e := os.Stat(p); e == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		if os.Getenv("PORTIER_REQUIRE_NGINX") != "" {
			t.Fatalf("nginx not found and PORTIER_REQUIRE_NGINX is set: %v", err)
		}
		t.Skip("nginx not installed")
	}
	dir := t.TempDir()
	// The port is picked free on both loopbacks; another process could take
	// it before nginx binds, so a failed start is retried with a new port.
	for attempt := 0; attempt < 3; attempt++ {
		port = freePort(t)
		conf := filepath.Join(dir, "nginx.conf")
		cfg := fmt.Sprintf(`worker_processes 1;
master_process off;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    server {
        listen 127.0.0.1:%[2]d proxy_protocol;
        listen [::1]:%[2]d proxy_protocol;
        default_type text/plain;
        return 200 "$proxy_protocol_addr:$proxy_protocol_port";
    }
}
`, dir, port)
		if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		errLog := filepath.Join(dir, "error.log")
		cmd := exec.Command(bin, "-p", dir, "-e", errLog, "-c", conf,
			"-g", fmt.Sprintf("daemon off; pid %s; error_log %s;", filepath.Join(dir, "nginx.pid"), errLog))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatalf("start nginx: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		ready := false
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
			select {
			case <-exited:
			default:
				if c, err := net.DialTimeout("tcp", net.JoinHostPort("::1", strconv.Itoa(port)), 200*time.Millisecond); err == nil {
					c.Close()
					ready = true
				} else {
					time.Sleep(20 * time.Millisecond)
					continue
				}
			}
			break
		}
		if ready {
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
			})
			return port
		}
		_ = cmd.Process.Kill()
		<-exited
		log, _ := os.ReadFile(errLog)
		t.Logf("nginx start attempt %d failed: %s %s", attempt, out.String(), log)
	}
	t.Fatal("nginx did not start")
	return 0
}

func freePort(t *testing.T) int {
	t.Helper()
	for i := 0; i < 20; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l6, err := net.Listen("tcp", net.JoinHostPort("::1", strconv.Itoa(port)))
		l.Close()
		if err == nil {
			l6.Close()
			return port
		}
	}
	t.Fatal("no port free on both 127.0.0.1 and ::1")
	return 0
}

// TestNginxAcceptsHeaders sends AppendV1/AppendV2 headers to a real nginx and
// checks it reports the announced client address.
func TestNginxAcceptsHeaders(t *testing.T) {
	port := startNginx(t)
	tests := []struct {
		name     string
		loopback string
		src, dst netip.AddrPort
	}{
		{"ipv4 over 127.0.0.1", "127.0.0.1", netip.MustParseAddrPort("203.0.113.7:4711"), netip.MustParseAddrPort("198.51.100.1:443")},
		{"ipv6 over ::1", "::1", netip.MustParseAddrPort("[2001:db8::7]:65535"), netip.MustParseAddrPort("[2001:db8::1]:80")},
		{"ipv6 over 127.0.0.1", "127.0.0.1", netip.MustParseAddrPort("[2001:db8:1:2:3:4:5:6]:1"), netip.MustParseAddrPort("[2001:db8::1]:80")},
		{"ipv4 over ::1", "::1", netip.MustParseAddrPort("192.0.2.200:1"), netip.MustParseAddrPort("192.0.2.1:8080")},
		{"v4-mapped", "127.0.0.1", netip.MustParseAddrPort("[::ffff:192.0.2.9]:2"), netip.MustParseAddrPort("[::ffff:192.0.2.1]:8080")},
		// No valid address: PROXY UNKNOWN / v2 AF_UNSPEC; nginx then reports nothing.
		{"unknown", "127.0.0.1", netip.AddrPort{}, netip.MustParseAddrPort("192.0.2.1:8080")},
	}
	for _, tt := range tests {
		for _, v := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s v%d", tt.name, v), func(t *testing.T) {
				var hdr []byte
				if v == 1 {
					hdr = AppendV1(nil, tt.src, tt.dst)
				} else {
					hdr = AppendV2(nil, tt.src, tt.dst, []byte("example.com"), []byte("http/1.1"))
				}
				body := nginxGet(t, net.JoinHostPort(tt.loopback, strconv.Itoa(port)), hdr)
				want := tt.src.Addr().Unmap().String() + ":" + strconv.Itoa(int(tt.src.Port()))
				if !tt.src.IsValid() {
					want = ":"
				}
				if body != want {
					t.Fatalf("nginx saw %q, want %q (header %q)", body, want, hdr)
				}
			})
		}
	}
}

func nginxGet(t *testing.T, addr string, hdr []byte) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	req := append(hdr, "GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"...)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	return string(b)
}

package testutil

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// StartNginx runs the Debian nginx in the foreground as a child of the test.
// conf renders the whole nginx.conf for a temporary directory (for temp
// paths and files) and a port free on both 127.0.0.1 and ::1, which the
// config must listen on at least on ::1 (readiness is checked there). A
// failed start is retried with a new port, since another process may take the
// port first. Without nginx the test is skipped, unless PORTIER_REQUIRE_NGINX
// is set.
func StartNginx(t *testing.T, conf func(dir string, port int) string) (port int) {
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
		t.Skip("SKIPPED: nginx is not installed (apt-get install nginx); set PORTIER_REQUIRE_NGINX=1 to fail instead")
	}
	dir := t.TempDir()
	for attempt := 0; attempt < 3; attempt++ {
		port = FreeDualPort(t)
		cfgPath := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(cfgPath, []byte(conf(dir, port)), 0o644); err != nil {
			t.Fatal(err)
		}
		errLog := filepath.Join(dir, "error.log")
		cmd := exec.Command(bin, "-p", dir, "-e", errLog, "-c", cfgPath,
			"-g", fmt.Sprintf("daemon off; master_process off; pid %s; error_log %s;", filepath.Join(dir, "nginx.pid"), errLog))
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

// NginxTempPaths is the http-block lines that keep nginx's temp files in dir.
func NginxTempPaths(dir string) string {
	return fmt.Sprintf(`client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;`, dir)
}

// FreeDualPort returns a TCP port free on both 127.0.0.1 and ::1.
func FreeDualPort(t *testing.T) int {
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

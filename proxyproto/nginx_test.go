package proxyproto

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/portier/portier/internal/testutil"
)

// startNginx runs a real nginx listening with proxy_protocol on 127.0.0.1
// and ::1 that answers every request with the address the PROXY header
// announced.
func startNginx(t *testing.T) (port int) {
	return testutil.StartNginx(t, func(dir string, port int) string {
		return fmt.Sprintf(`worker_processes 1;
events { worker_connections 64; }
http {
    access_log off;
    %s
    server {
        listen 127.0.0.1:%[2]d proxy_protocol;
        listen [::1]:%[2]d proxy_protocol;
        default_type text/plain;
        return 200 "$proxy_protocol_addr:$proxy_protocol_port";
    }
}
`, testutil.NginxTempPaths(dir), port)
	})
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

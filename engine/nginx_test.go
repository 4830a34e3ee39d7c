package engine

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
	"github.com/portier/portier/internal/selfsigned"
	"github.com/portier/portier/internal/testutil"
)

// startTLSNginx runs a real nginx terminating TLS with proxy_protocol on its
// listen socket, answering every request with $proxy_protocol_addr.
func startTLSNginx(t *testing.T) int {
	t.Helper()
	cert, err := selfsigned.Certificate("pp.test")
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	return testutil.StartNginx(t, func(dir string, port int) string {
		certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600)
		_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
		return fmt.Sprintf(`worker_processes 1;
events { worker_connections 64; }
http {
    access_log off;
    %s
    server {
        listen 127.0.0.1:%[2]d ssl proxy_protocol;
        listen [::1]:%[2]d ssl proxy_protocol;
        ssl_certificate %[3]s;
        ssl_certificate_key %[4]s;
        default_type text/plain;
        return 200 "$proxy_protocol_addr";
    }
}
`, testutil.NginxTempPaths(dir), port, certFile, keyFile)
	})
}

// TestNginxSeesClientBehindTLSPassthrough: portier passes TLS through to a
// real nginx that terminates it with `listen ... ssl proxy_protocol`; nginx
// must report the client's own address (127.0.0.x chosen here), for PROXY
// v1 and v2.
func TestNginxSeesClientBehindTLSPassthrough(t *testing.T) {
	port := startTLSNginx(t)
	be := "127.0.0.1:" + strconv.Itoa(port)
	p := startProxy(t, []balancer.RouteSpec{
		{Name: "v1.pp.test", Backends: []string{"tls://" + be + "?proxy=v1"}},
		{Name: "v2.pp.test", Backends: []string{"tls://" + be + "?proxy=v2"}},
	}, "", nil)
	for i, name := range []string{"v1.pp.test", "v2.pp.test"} {
		src := fmt.Sprintf("127.0.0.%d", 20+i)
		t.Run(name, func(t *testing.T) {
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
			tr := &http.Transport{
				// Every name resolves to portier's TLS listener.
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					return d.DialContext(ctx, network, p.tlsAddr)
				},
				TLSClientConfig: &tls.Config{ServerName: name, InsecureSkipVerify: true,
					NextProtos: []string{"http/1.1"}},
			}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for req := 0; req < 2; req++ { // the header is sent once; a second request rides the same connection
				resp, err := client.Get("https://" + net.JoinHostPort(name, p.tlsPortNo) + "/")
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(body) != src {
					t.Fatalf("nginx saw %q (status %d), want %q", body, resp.StatusCode, src)
				}
			}
		})
	}
}

package engine

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
	"github.com/portier/portier/internal/testutil"
)

// dyingBackend accepts connections and drops them without answering: what
// clients of a backend that dies with connections in its accept queue see.
// reset chooses a reset (SO_LINGER 0) over a plain close.
func dyingBackend(t *testing.T, reset bool, hits *atomic.Int64) string {
	return testutil.RawBackend(t, func(c *net.TCPConn) {
		hits.Add(1)
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		var b [1]byte
		_, _ = c.Read(b[:]) // the request has begun to arrive
		if reset {
			_ = c.SetLinger(0)
		}
	})
}

// TestReplayWhenBackendFailsBeforeAnswering: a backend that takes the
// connection and then closes or resets it without a byte back is replaced by
// another; clients of idempotent requests and TLS handshakes never notice.
// A POST is not replayed: it may have had its effect.
func TestReplayWhenBackendFailsBeforeAnswering(t *testing.T) {
	for _, reset := range []bool{false, true} {
		var hits atomic.Int64
		bad := dyingBackend(t, reset, &hits)
		good := httpBackend(t, "good")
		goodTLS := tlsBackend(t, "goodtls")
		p := startProxy(t, []balancer.RouteSpec{{Name: "r.test", Backends: []string{
			"http://" + bad, "http://" + good, "tls://" + bad, "tls://" + goodTLS}}}, "", func(o *Options) {
			o.Retries = 2
		})
		for i := 0; i < 6; i++ {
			got := string(rawExchange(t, p.httpAddr, []byte("GET /x HTTP/1.1\r\nHost: r.test\r\nConnection: close\r\n\r\n")))
			if !strings.Contains(got, "backend=good ") {
				t.Fatalf("reset=%v: GET %d: %q", reset, i, got)
			}
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", p.tlsAddr, tlsClientConfig("r.test"))
			if err != nil {
				t.Fatalf("reset=%v: TLS handshake %d: %v", reset, i, err)
			}
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: r.test\r\nConnection: close\r\n\r\n")
			body, _ := io.ReadAll(c)
			c.Close()
			if !strings.Contains(string(body), "backend=goodtls") {
				t.Fatalf("reset=%v: TLS %d: %q", reset, i, body)
			}
		}
		if hits.Load() == 0 {
			t.Fatalf("reset=%v: the dying backend was never tried", reset)
		}
		if !p.log.has("backend failed before answering; trying another") {
			t.Errorf("reset=%v: no log line for the replay", reset)
		}
	}

	// A POST that reached the dying backend is not sent again.
	var hits atomic.Int64
	bad := dyingBackend(t, true, &hits)
	p := startProxy(t, []balancer.RouteSpec{{Name: "r.test", Backends: []string{"http://" + bad}}}, "", nil)
	got := rawExchange(t, p.httpAddr, []byte("POST /x HTTP/1.1\r\nHost: r.test\r\nContent-Length: 2\r\n\r\nok"))
	if len(got) != 0 || hits.Load() != 1 {
		t.Fatalf("POST: got %q after %d backend connections, want a close after one", got, hits.Load())
	}
}

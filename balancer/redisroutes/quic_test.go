package redisroutes

import (
	"slices"
	"testing"
)

// quic:// backends come from Redis like the others (hipache schema: full URLs).
func TestHipacheQUICBackends(t *testing.T) {
	e, problem, ok := parseHipache(hipachePrefix+"a.test", []string{"a", "quic://127.0.0.1:9443", "tls://127.0.0.1:9443"})
	if !ok || problem != "" || !slices.Equal(e.backends, []string{"quic://127.0.0.1:9443", "tls://127.0.0.1:9443"}) {
		t.Fatalf("%+v %q %v", e, problem, ok)
	}
}

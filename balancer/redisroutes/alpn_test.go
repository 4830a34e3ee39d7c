package redisroutes

import (
	"fmt"
	"testing"
)

// TestMergeALPN: frontend:<name>@<alpn> keys become the route's ALPN pools,
// merged per protocol; only ALPN keys make no route.
func TestMergeALPN(t *testing.T) {
	byKey := map[string][]string{}
	for key, vals := range map[string][]string{
		"frontend:a.test":            {"id", "tls://10.0.0.1"},
		"frontend:a.test@h2":         {"id", "tls://10.0.0.2"},
		"frontend:A.test@h2":         {"id", "tls://10.0.0.3"},
		"frontend:a.test@acme-tls/1": {"id", "tls://10.0.0.4"},
	} {
		e, problem, ok := hipache.parse(key, vals)
		if !ok || problem != "" || e.name != "a.test" {
			t.Fatalf("%s: %+v %q %v", key, e, problem, ok)
		}
		if name, ok := hipache.keyName(key); !ok || name != "a.test" {
			t.Errorf("keyName(%s) = %q %v", key, name, ok)
		}
		byKey[key] = e.backends
	}
	r, ok := merge("a.test", byKey)
	// Keys sort as A.test@h2 < a.test < a.test@acme-tls/1 < a.test@h2.
	if got, want := fmt.Sprintf("%v %v %v", ok, r.Backends, r.ALPN),
		"true [tls://10.0.0.1] [{h2 [tls://10.0.0.3 tls://10.0.0.2]} {acme-tls/1 [tls://10.0.0.4]}]"; got != want {
		t.Errorf("merge:\n got %s\nwant %s", got, want)
	}
	delete(byKey, "frontend:a.test")
	if _, ok := merge("a.test", byKey); ok {
		t.Error("a route of ALPN keys only is usable")
	}
	other, _ := merge("a.test", map[string][]string{"frontend:a.test": {"tls://10.0.0.1"}})
	if sameRoute(r, other) {
		t.Error("sameRoute ignores ALPN pools")
	}
}

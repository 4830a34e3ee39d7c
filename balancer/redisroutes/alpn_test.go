package redisroutes

import (
	"fmt"
	"slices"
	"testing"
)

// TestBuildALPN: frontend:<name>@<alpn> keys become the route's ALPN pools,
// merged per protocol, after the route's own backends.
func TestBuildALPN(t *testing.T) {
	entries := map[string]entry{}
	for key, vals := range map[string][]string{
		"frontend:a.test":            {"id", "tls://10.0.0.1"},
		"frontend:a.test@h2":         {"id", "tls://10.0.0.2"},
		"frontend:A.test@h2":         {"id", "tls://10.0.0.3"},
		"frontend:a.test@acme-tls/1": {"id", "tls://10.0.0.4"},
		"frontend:b.test@h2":         {"id", "tls://10.0.0.5"},
	} {
		e, problem, ok := hipache.parse(key, vals)
		if !ok || problem != "" {
			t.Fatalf("%s: %q %v", key, problem, ok)
		}
		entries[key] = e
	}
	var got []string
	for _, r := range build(entries) {
		got = append(got, fmt.Sprintf("%s %v %v", r.Name, r.Backends, r.ALPN))
	}
	// Keys sort as A.test@h2 < a.test < a.test@acme-tls/1 < a.test@h2 within
	// the name; the route's own backends come from frontend:a.test.
	want := []string{
		"a.test [tls://10.0.0.1] [{h2 [tls://10.0.0.3 tls://10.0.0.2]} {acme-tls/1 [tls://10.0.0.4]}]",
		"b.test [] [{h2 [tls://10.0.0.5]}]",
	}
	if !slices.Equal(got, want) {
		t.Errorf("build:\n got %q\nwant %q", got, want)
	}
	if sameRoutes(build(entries), build(map[string]entry{"frontend:a.test": entries["frontend:a.test"], "frontend:b.test@h2": entries["frontend:b.test@h2"]})) {
		t.Error("sameRoutes ignores ALPN pools")
	}
}

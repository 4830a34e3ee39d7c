package balancer

import (
	"context"
	"strings"
	"testing"
)

func TestALPNPools(t *testing.T) {
	routes := []RouteSpec{{Name: "a.test", Backends: []string{"tls://127.0.0.1:1", "http://127.0.0.1:9"},
		ALPN: []ALPNRoute{{Protocol: "acme-tls/1", Backends: []string{"tls://127.0.0.1:2"}}, {Protocol: "h2", Backends: []string{"tls://127.0.0.1:3", "tls://127.0.0.1:4"}}}}}
	tb := mustTable(t, routes, "")
	p := tb.Lookup(SchemeTLS, []byte("a.test"))
	check := func(tb *Table, proto, want string) {
		t.Helper()
		p := tb.Lookup(SchemeTLS, []byte("a.test"))
		ap := p.ForProtocol([]byte(proto))
		got := ""
		if ap != nil {
			var addrs []string
			for _, b := range ap.Backends {
				addrs = append(addrs, b.Addr.String())
			}
			got = strings.Join(addrs, " ")
			if ap.Name != "a.test" {
				t.Errorf("%s pool named %q", proto, ap.Name)
			}
		}
		if got != want {
			t.Errorf("%s: backends %q, want %q", proto, got, want)
		}
	}
	check(tb, "acme-tls/1", "127.0.0.1:2")
	check(tb, "h2", "127.0.0.1:3 127.0.0.1:4")
	check(tb, "http/1.1", "")
	if tb.Lookup(SchemeHTTP, []byte("a.test")).ALPN != nil {
		t.Error("the http pool got ALPN pools")
	}
	// ALPN backends are the table's backends (health checks track them).
	if n := len(tb.Backends()); n != 5 {
		t.Errorf("%d backends, want 5", n)
	}
	if got := tb.Routes()[0].ALPN; len(got) != 2 || got[1].Protocol != "h2" {
		t.Errorf("Routes() ALPN %v", got)
	}
	if n := testing.AllocsPerRun(100, func() { p.ForProtocol([]byte("h2")) }); n != 0 {
		t.Errorf("ForProtocol allocates %v", n)
	}

	// An update replaces the ALPN pools with the route.
	nt, _, err := tb.Update(context.Background(), []RouteSpec{{Name: "a.test", Backends: []string{"tls://127.0.0.1:1"},
		ALPN: []ALPNRoute{{Protocol: "h2", Backends: []string{"tls://127.0.0.1:5"}}}}}, nil, "", TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	check(nt, "h2", "127.0.0.1:5")
	check(nt, "acme-tls/1", "")
	check(tb, "h2", "127.0.0.1:3 127.0.0.1:4") // the old table is untouched

	bad := []struct {
		r    RouteSpec
		want string
	}{
		{RouteSpec{Name: "b.test", Backends: []string{"tls://127.0.0.1:1"}, ALPN: []ALPNRoute{{Protocol: "h2", Backends: []string{"http://127.0.0.1:2"}}}}, "want a tls:// URL"},
		{RouteSpec{Name: "b.test", Backends: []string{"http://127.0.0.1:1"}, ALPN: []ALPNRoute{{Protocol: "h2", Backends: []string{"tls://127.0.0.1:2"}}}}, "alpn needs tls:// backends"},
		{RouteSpec{Name: "b.test", Backends: []string{"tls://127.0.0.1:1"}, ALPN: []ALPNRoute{{Protocol: "", Backends: []string{"tls://127.0.0.1:2"}}}}, "1 to 255 bytes"},
		{RouteSpec{Name: "b.test", Backends: []string{"tls://127.0.0.1:1"}, ALPN: []ALPNRoute{{Protocol: "h2", Backends: []string{"tls://127.0.0.1:2"}}, {Protocol: "h2", Backends: []string{"tls://127.0.0.1:3"}}}}, "listed twice"},
	}
	for _, tc := range bad {
		_, err := NewTable(context.Background(), []RouteSpec{tc.r}, "", TableOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.r.ALPN, err, tc.want)
		}
	}
}

package balancer

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func mustTable(t testing.TB, routes []RouteSpec, def string) *Table {
	t.Helper()
	tab, err := NewTable(context.Background(), routes, def, TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

var lookupRoutes = []RouteSpec{
	{Name: "app1.test", Backends: []string{"http://127.0.0.1:9001", "tls://127.0.0.1:9443"}},
	{Name: "App2.Test", Backends: []string{"http://127.0.0.1:9002"}},
	{Name: "secure.test", Backends: []string{"tls://127.0.0.1:9444"}},
	{Name: "*.apps.test", Backends: []string{"http://127.0.0.1:9003"}},
	{Name: "*.b.apps.test", Backends: []string{"http://127.0.0.1:9004"}},
	{Name: "x.b.apps.test", Backends: []string{"http://127.0.0.1:9005"}},
	{Name: "*.tlsonly.test", Backends: []string{"tls://127.0.0.1:9445"}},
	{Name: "127.0.0.1", Backends: []string{"http://127.0.0.1:9006"}},
	{Name: "fallback.test", Backends: []string{"http://127.0.0.1:9007"}},
}

func TestLookup(t *testing.T) {
	withDef := mustTable(t, lookupRoutes, "fallback.test")
	noDef := mustTable(t, lookupRoutes, "")
	long := strings.Repeat("a", 250) + ".test" // 255 bytes: still a candidate
	tests := []struct {
		s     Scheme
		name  string
		want  string // pool name with default "fallback.test"
		noDef string // pool name without a default; "" for nil
	}{
		{SchemeHTTP, "app1.test", "app1.test", "app1.test"},
		{SchemeHTTP, "APP1.Test", "app1.test", "app1.test"},
		{SchemeHTTP, "app2.test", "app2.test", "app2.test"},
		{SchemeHTTP, "app1.test.", "app1.test", "app1.test"},
		{SchemeHTTP, "app1.test..", "fallback.test", ""},
		{SchemeHTTP, "app1.test:8080", "app1.test", "app1.test"},
		{SchemeHTTP, "app1.test.:8080", "app1.test", "app1.test"},
		{SchemeHTTP, "app1.test:", "app1.test", "app1.test"},
		{SchemeHTTP, "app1.test:http", "fallback.test", ""},
		{SchemeHTTP, "127.0.0.1:8080", "127.0.0.1", "127.0.0.1"},
		{SchemeHTTP, "[::1]:8080", "fallback.test", ""},
		{SchemeHTTP, "[::1]", "fallback.test", ""},
		{SchemeHTTP, "::1", "fallback.test", ""},
		{SchemeHTTP, "[::1", "fallback.test", ""},
		{SchemeHTTP, "[::1]x", "fallback.test", ""},
		{SchemeHTTP, "[app1.test]:80", "app1.test", "app1.test"},
		{SchemeHTTP, "a.apps.test", "*.apps.test", "*.apps.test"},
		{SchemeHTTP, "A.APPS.TEST:80", "*.apps.test", "*.apps.test"},
		{SchemeHTTP, "a.b.c.apps.test", "*.apps.test", "*.apps.test"},
		{SchemeHTTP, "apps.test", "fallback.test", ""},
		{SchemeHTTP, ".apps.test", "fallback.test", ""},
		{SchemeHTTP, "xapps.test", "fallback.test", ""},
		{SchemeHTTP, "y.b.apps.test", "*.b.apps.test", "*.b.apps.test"}, // longest wildcard wins
		{SchemeHTTP, "z.y.b.apps.test", "*.b.apps.test", "*.b.apps.test"},
		{SchemeHTTP, "b.apps.test", "*.apps.test", "*.apps.test"},
		{SchemeHTTP, "x.b.apps.test", "x.b.apps.test", "x.b.apps.test"}, // exact beats wildcard
		{SchemeHTTP, "unknown.test", "fallback.test", ""},
		{SchemeHTTP, "", "fallback.test", ""},
		{SchemeHTTP, ".", "fallback.test", ""},
		{SchemeHTTP, long, "fallback.test", ""},
		{SchemeHTTP, "a" + long, "", ""},                    // 256 bytes
		{SchemeHTTP, "secure.test", "fallback.test", ""},    // tls-only route
		{SchemeHTTP, "a.tlsonly.test", "fallback.test", ""}, // tls-only wildcard
		{SchemeTLS, "app1.test", "app1.test", "app1.test"},
		{SchemeTLS, "secure.test", "secure.test", "secure.test"},
		{SchemeTLS, "a.tlsonly.test", "*.tlsonly.test", "*.tlsonly.test"},
		{SchemeTLS, "app2.test", "", ""}, // http-only route; the default has no tls backends
		{SchemeTLS, "a.apps.test", "", ""},
		{SchemeTLS, "", "", ""},
		{Scheme(0), "app1.test", "", ""},
		{Scheme(3), "app1.test", "", ""},
	}
	name := func(p *Pool) string {
		if p == nil {
			return ""
		}
		return p.Name
	}
	for _, tc := range tests {
		if got := name(withDef.Lookup(tc.s, []byte(tc.name))); got != tc.want {
			t.Errorf("with default: Lookup(%v, %q) = %q, want %q", tc.s, tc.name, got, tc.want)
		}
		if got := name(noDef.Lookup(tc.s, []byte(tc.name))); got != tc.noDef {
			t.Errorf("without default: Lookup(%v, %q) = %q, want %q", tc.s, tc.name, got, tc.noDef)
		}
	}

	// The pools keep only the backends of their scheme.
	if p := withDef.Lookup(SchemeTLS, []byte("app1.test")); len(p.Backends) != 1 || p.Backends[0].Spec.Port != 9443 {
		t.Errorf("tls pool of app1.test: %v", p.Backends)
	}
}

func TestLookupDefaultScheme(t *testing.T) {
	// A default with tls backends only serves tls listeners.
	tab := mustTable(t, lookupRoutes, "secure.test")
	if p := tab.Lookup(SchemeTLS, []byte("nope.test")); p == nil || p.Name != "secure.test" {
		t.Errorf("tls default: %v", p)
	}
	if p := tab.Lookup(SchemeHTTP, []byte("nope.test")); p != nil {
		t.Errorf("http default: %v, want nil", p.Name)
	}
	// A wildcard can be the default.
	tab = mustTable(t, lookupRoutes, "*.Apps.Test")
	if p := tab.Lookup(SchemeHTTP, []byte("")); p == nil || p.Name != "*.apps.test" {
		t.Errorf("wildcard default: %v", p)
	}
}

func TestLookupAllocs(t *testing.T) {
	tab := mustTable(t, lookupRoutes, "fallback.test")
	for _, name := range []string{"APP1.test.:8080", "z.y.b.apps.test", "[::1]:80", "unknown.test", strings.Repeat("a", 300)} {
		b := []byte(name)
		if n := testing.AllocsPerRun(1000, func() { tab.Lookup(SchemeHTTP, b) }); n != 0 {
			t.Errorf("Lookup(%q) allocates %v times per call", name, n)
		}
	}
}

func TestNewTableErrors(t *testing.T) {
	tests := []struct {
		routes []RouteSpec
		def    string
		err    string
	}{
		{[]RouteSpec{{Name: "a.test", Backends: []string{"htp://x"}}}, "",
			`route "a.test": parse backend "htp://x": unknown scheme "htp" (want http, tls, quic, http+unix or tls+unix)`},
		{[]RouteSpec{{Name: "a.test"}}, "", `route "a.test": no backends`},
		{[]RouteSpec{{Name: "a..test", Backends: []string{"http://127.0.0.1"}}}, "", `invalid route name "a..test"`},
		{[]RouteSpec{{Name: "a.*.test", Backends: []string{"http://127.0.0.1"}}}, "", `invalid route name "a.*.test"`},
		{[]RouteSpec{
			{Name: "a.test", Backends: []string{"http://127.0.0.1"}},
			{Name: "A.Test.", Backends: []string{"http://127.0.0.1"}},
		}, "", `route "A.Test.": duplicate of route "a.test"`},
		{[]RouteSpec{{Name: "a.test", Backends: []string{"http://127.0.0.1"}}}, "b.test", `default: route "b.test" is not defined`},
		{[]RouteSpec{{Name: "a.test", Backends: []string{"http://127.0.0.1"}}}, "*", `default: route "*" is not defined`},
	}
	for _, tc := range tests {
		_, err := NewTable(context.Background(), tc.routes, tc.def, TableOptions{})
		if err == nil || err.Error() != tc.err && !strings.HasPrefix(err.Error(), tc.err) {
			t.Errorf("NewTable(%v, %q): error %v, want %q", tc.routes, tc.def, err, tc.err)
		}
	}
}

func TestNewTableResolve(t *testing.T) {
	var calls []string
	var errDown = errors.New("server misbehaving")
	resolve := func(ctx context.Context, host string) ([]netip.Addr, error) {
		calls = append(calls, host)
		switch host {
		case "v6.internal":
			return []netip.Addr{netip.MustParseAddr("2001:db8::7")}, nil
		case "dual.internal":
			return []netip.Addr{netip.MustParseAddr("2001:db8::8"), netip.MustParseAddr("::ffff:10.0.0.8")}, nil
		case "empty.internal":
			return nil, nil
		}
		return nil, errDown
	}
	opts := TableOptions{Resolve: resolve}
	tab, err := NewTable(context.Background(), []RouteSpec{
		{Name: "a.test", Backends: []string{"http://v6.internal:8080", "tls://V6.internal", "http://dual.internal:81"}},
		{Name: "b.test", Backends: []string{"http://v6.internal:8080", "http://127.0.0.1:1"}},
	}, "", opts)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(calls, []string{"v6.internal", "dual.internal"}) {
		t.Errorf("resolver calls %q: want each host once, IP literals never", calls)
	}
	a := tab.Lookup(SchemeHTTP, []byte("a.test"))
	if got := fmt.Sprint(a.Backends[0].Addr, " ", a.Backends[1].Addr); got != "[2001:db8::7]:8080 10.0.0.8:81" {
		t.Errorf("resolved http backends: %s", got)
	}
	if got := tab.Lookup(SchemeTLS, []byte("a.test")).Backends[0].Addr.String(); got != "[2001:db8::7]:443" {
		t.Errorf("resolved tls backend: %s", got)
	}
	if a.Backends[0] != tab.Lookup(SchemeHTTP, []byte("b.test")).Backends[0] {
		t.Errorf("the same backend URL should be built once per table")
	}

	for _, tc := range []struct{ url, err string }{
		{"http://down.internal:80", `route "c.test": resolve backend "http://down.internal:80": server misbehaving`},
		{"http://empty.internal:80", `route "c.test": resolve backend "http://empty.internal:80": no addresses`},
	} {
		_, err := NewTable(context.Background(), []RouteSpec{{Name: "c.test", Backends: []string{tc.url}}}, "", opts)
		if err == nil || err.Error() != tc.err {
			t.Errorf("NewTable with %s: error %v, want %q", tc.url, err, tc.err)
		}
		if !errors.Is(err, errDown) && strings.Contains(tc.url, "down") {
			t.Errorf("resolver error not wrapped: %v", err)
		}
	}
}

// TestNewTableResolveLocalhost uses the system resolver (net.DefaultResolver
// reads /etc/hosts, so no network is needed).
func TestNewTableResolveLocalhost(t *testing.T) {
	tab := mustTable(t, []RouteSpec{{Name: "l.test", Backends: []string{"http://localhost:9001"}}}, "")
	b := tab.Lookup(SchemeHTTP, []byte("l.test")).Backends[0]
	if !b.Addr.Addr().IsLoopback() || b.Addr.Port() != 9001 || b.Spec.Host != "localhost" {
		t.Errorf("localhost resolved to %v (host %q)", b.Addr, b.Spec.Host)
	}
}

func TestNewTablePassesContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	resolve := func(ctx context.Context, host string) ([]netip.Addr, error) { return nil, ctx.Err() }
	_, err := NewTable(ctx, []RouteSpec{{Name: "c.test", Backends: []string{"http://c.internal:80"}}}, "", TableOptions{Resolve: resolve})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}

func TestTableRoutes(t *testing.T) {
	tab := mustTable(t, lookupRoutes, "")
	if tab.Len() != len(lookupRoutes) {
		t.Errorf("Len() = %d, want %d", tab.Len(), len(lookupRoutes))
	}
	routes := tab.Routes()
	var names []string
	for _, r := range routes {
		names = append(names, r.Name)
	}
	want := []string{"*.apps.test", "*.b.apps.test", "*.tlsonly.test", "127.0.0.1", "app1.test", "app2.test",
		"fallback.test", "secure.test", "x.b.apps.test"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("Routes() names %q, want %q", names, want)
	}
	if !reflect.DeepEqual(routes[4].Backends, lookupRoutes[0].Backends) {
		t.Errorf("Routes()[4].Backends = %q", routes[4].Backends)
	}
	// Routes returns a copy: changing it leaves the table alone.
	routes[4].Backends[0] = "changed"
	if tab.Routes()[4].Backends[0] != lookupRoutes[0].Backends[0] {
		t.Errorf("Routes() exposes the table's slices")
	}
}

func TestRouter(t *testing.T) {
	t1 := mustTable(t, lookupRoutes[:1], "")
	t2 := mustTable(t, lookupRoutes[:2], "")
	r := NewRouter(t1)
	if r.Load() != t1 {
		t.Fatal("Load after NewRouter")
	}
	// Readers racing with a writer always see a whole table (run with -race).
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				if n := r.Load().Len(); n != 1 && n != 2 {
					t.Errorf("Len() = %d", n)
					return
				}
			}
		})
	}
	for i := range 1000 {
		if i%2 == 0 {
			r.Store(t2)
		} else {
			r.Store(t1)
		}
	}
	wg.Wait()
	r.Store(t2)
	if r.Load() != t2 {
		t.Fatal("Load after Store")
	}
}

func BenchmarkLookup(b *testing.B) {
	tab := mustTable(b, lookupRoutes, "fallback.test")
	for _, bc := range []struct{ name, host string }{
		{"exact", "app1.test"},
		{"exact-port-upper", "APP1.test:8080"},
		{"wildcard", "z.y.b.apps.test"},
		{"default", "unknown.example.test"},
	} {
		host := []byte(bc.host)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tab.Lookup(SchemeHTTP, host)
			}
		})
	}

	// Tables of 1,000,000 names: scale_bench_test.go.
}

func TestNewTableOnInvalid(t *testing.T) {
	resolve := func(ctx context.Context, host string) ([]netip.Addr, error) {
		if host == "ok.internal" {
			return []netip.Addr{netip.MustParseAddr("10.0.0.1")}, nil
		}
		return nil, errors.New("no such host")
	}
	routes := []RouteSpec{
		{Name: "good.test", Backends: []string{"http://127.0.0.1:9001"}},
		{Name: "bad name!", Backends: []string{"http://127.0.0.1:9002"}},
		{Name: "badurl.test", Backends: []string{"http://127.0.0.1:9003", "htp://x"}},
		{Name: "nxdomain.test", Backends: []string{"http://127.0.0.1:9004", "http://gone.internal"}},
		{Name: "empty.test"},
		{Name: "Good.Test", Backends: []string{"http://127.0.0.1:9005"}},
		{Name: "dns.test", Backends: []string{"http://ok.internal:81"}},
	}
	type report struct{ route, err string }
	var got []report
	opts := TableOptions{Resolve: resolve, OnInvalid: func(route string, err error) {
		got = append(got, report{route, err.Error()})
	}}
	tab, err := NewTable(context.Background(), routes, "missing.test", opts)
	if err != nil {
		t.Fatal(err)
	}
	want := []report{
		{"bad name!", `invalid route name "bad name!" (want a host name, *.suffix or *)`},
		{"badurl.test", `route "badurl.test": parse backend "htp://x": unknown scheme "htp" (want http, tls, quic, http+unix or tls+unix)`},
		{"nxdomain.test", `route "nxdomain.test": resolve backend "http://gone.internal": no such host`},
		{"empty.test", `route "empty.test": no backends`},
		{"Good.Test", `route "Good.Test": duplicate of route "good.test"`},
		{"missing.test", `default: route "missing.test" is not defined`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("reports:\n%q\nwant\n%q", got, want)
	}
	var names []string
	for _, r := range tab.Routes() {
		names = append(names, r.Name)
	}
	if !reflect.DeepEqual(names, []string{"dns.test", "good.test"}) {
		t.Errorf("routes %q", names)
	}
	// Backends of skipped routes leave no trace.
	var addrs []string
	for _, b := range tab.Backends() {
		addrs = append(addrs, b.Addr.String())
	}
	if !reflect.DeepEqual(addrs, []string{"127.0.0.1:9001", "10.0.0.1:81"}) {
		t.Errorf("Backends() %q", addrs)
	}
	if p := tab.Lookup(SchemeHTTP, []byte("good.test")); p == nil || p.Backends[0].Spec.Port != 9001 {
		t.Errorf("first of the duplicates should win: %v", p)
	}
	if p := tab.Lookup(SchemeHTTP, []byte("nope.test")); p != nil {
		t.Errorf("missing default: Lookup gave %q", p.Name)
	}
	// Without OnInvalid each of them fails the build.
	for _, r := range routes[1:6] {
		if _, err := NewTable(context.Background(), []RouteSpec{routes[0], r}, "", TableOptions{Resolve: resolve}); err == nil {
			t.Errorf("route %q: no error without OnInvalid", r.Name)
		}
	}
}

func TestCatchAll(t *testing.T) {
	routes := append([]RouteSpec{{Name: "*", Backends: []string{"http://127.0.0.1:9100", "tls://127.0.0.1:9101"}}}, lookupRoutes...)
	name := func(p *Pool) string {
		if p == nil {
			return ""
		}
		return p.Name
	}
	for _, tc := range []struct {
		def        string
		s          Scheme
		host, want string
	}{
		{"", SchemeHTTP, "nope.test", "*"},
		{"", SchemeHTTP, "", "*"},
		{"", SchemeHTTP, "app1.test", "app1.test"},
		{"", SchemeHTTP, "a.apps.test", "*.apps.test"},
		{"", SchemeHTTP, "*", "*"},
		{"", SchemeTLS, "nope.test", "*"},
		{"*", SchemeHTTP, "nope.test", "*"},
		{"fallback.test", SchemeHTTP, "nope.test", "fallback.test"}, // an explicit default wins
		{"fallback.test", SchemeTLS, "nope.test", ""},               // even where it has no backends
	} {
		tab := mustTable(t, routes, tc.def)
		if got := name(tab.Lookup(tc.s, []byte(tc.host))); got != tc.want {
			t.Errorf("default %q: Lookup(%v, %q) = %q, want %q", tc.def, tc.s, tc.host, got, tc.want)
		}
	}
	tab := mustTable(t, routes, "")
	if r := tab.Routes(); r[0].Name != "*" || len(r) != len(routes) {
		t.Errorf("Routes()[0] = %+v of %d", r[0], len(r))
	}
}

func TestTableBackends(t *testing.T) {
	tab := mustTable(t, lookupRoutes, "")
	bs := tab.Backends()
	if len(bs) != 10 { // 10 distinct URLs in lookupRoutes
		t.Fatalf("Backends() has %d, want 10", len(bs))
	}
	seen := make(map[*Backend]bool)
	for _, b := range bs {
		if seen[b] {
			t.Errorf("%v listed twice", b)
		}
		seen[b] = true
	}
	if bs[0].Spec.Raw != "http://127.0.0.1:9001" || bs[1].Spec.Raw != "tls://127.0.0.1:9443" {
		t.Errorf("Backends() not in order of first use: %v %v", bs[0], bs[1])
	}
}

package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
)

func TestLoadGood(t *testing.T) {
	tests := []struct {
		file string
		want Config
	}{
		{"issue.yaml", Config{
			Listeners: []Listener{
				{Name: "web", Address: "127.0.0.1:8080", Protocol: "http", Line: 2},
				{Name: "secure", Address: "127.0.0.1:8443", Protocol: "tls", Line: 5},
			},
			Routes: []balancer.RouteSpec{
				{Name: "app1.test", Backends: []string{"http://127.0.0.1:9001", "http://127.0.0.1:9002?weight=2", "tls://127.0.0.1:9443"}},
				{Name: "*.apps.test", Backends: []string{"http://127.0.0.1:9003"}},
			},
			Default:   "app1.test",
			Timeouts:  Timeouts{Handshake: 5 * time.Second, Connect: 3 * time.Second, Idle: 300 * time.Second, Shutdown: DefaultShutdown, QUICIdle: DefaultQUICIdle, DrainGrace: DefaultDrainGrace},
			Keepalive: balancer.Reuse{MaxIdle: DefaultMaxIdle, IdleTimeout: DefaultKeepalive},
			Limits:    Limits{MaxHeaderBytes: 16384},
		}},
		{"minimal.yaml", Config{
			Listeners: []Listener{{Name: "web", Address: "127.0.0.1:8080", Protocol: "http", Line: 2}},
			Timeouts:  Timeouts{Handshake: DefaultHandshake, Connect: DefaultConnect, Idle: DefaultIdle, Shutdown: DefaultShutdown, QUICIdle: DefaultQUICIdle, DrainGrace: DefaultDrainGrace},
			Keepalive: balancer.Reuse{MaxIdle: DefaultMaxIdle, IdleTimeout: DefaultKeepalive},
			Limits:    Limits{MaxHeaderBytes: DefaultMaxHeaderBytes},
		}},
		{"full.yaml", Config{
			Listeners: []Listener{
				{Name: "web6", Address: "[::1]:8080", Protocol: "http", Line: 3},
				{Name: "tls-any", Address: "0.0.0.0:443", Protocol: "tls", Line: 6},
			},
			Routes: []balancer.RouteSpec{
				{Name: "shop.example", Backends: []string{"tls://[::1]:9443?weight=3&proxy=v2", "tls://backend.internal?drain=1", "http://backend.internal:8080?proxy=v1"}},
				{Name: "*.example", Backends: []string{"tls://[::1]:9443?weight=3&proxy=v2"}},
			},
			Default:   "shop.example",
			Timeouts:  Timeouts{Handshake: 1500 * time.Millisecond, Connect: time.Second, Idle: time.Hour, Shutdown: DefaultShutdown, QUICIdle: DefaultQUICIdle, DrainGrace: DefaultDrainGrace},
			Keepalive: balancer.Reuse{MaxIdle: DefaultMaxIdle, IdleTimeout: DefaultKeepalive},
			Limits:    Limits{MaxHeaderBytes: 65536},
			Loops:     4,
		}},
	}
	for _, tc := range tests {
		path := filepath.Join("testdata", tc.file)
		got, err := Load(path)
		if err != nil {
			t.Errorf("Load(%s): %v", path, err)
			continue
		}
		tc.want.Path = path
		if !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("Load(%s) =\n%+v\nwant\n%+v", path, *got, tc.want)
		}
	}
}

// TestDemo checks that the shipped example parses and that its routes build
// a table (IP literals only, so no resolution happens).
func TestDemo(t *testing.T) {
	cfg, err := Load("../examples/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Listeners) != 3 || cfg.Listeners[0].Address != "127.0.0.1:8080" || cfg.Listeners[1].Protocol != "tls" ||
		cfg.Listeners[2].Protocol != "quic" {
		t.Errorf("listeners: %+v", cfg.Listeners)
	}
	tab, err := balancer.NewTable(context.Background(), cfg.Routes, cfg.Default, balancer.TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p := tab.Lookup(balancer.SchemeTLS, []byte("app1.test")); p == nil || len(p.Backends) != 2 {
		t.Errorf("tls pool of app1.test: %+v", p)
	}
	if p := tab.Lookup(balancer.SchemeHTTP, []byte("x.apps.test")); p == nil || p.Backends[0].Addr.String() != "127.0.0.1:9003" {
		t.Errorf("http pool of x.apps.test: %+v", p)
	}
}

func TestLoadBad(t *testing.T) {
	tests := []struct{ file, err string }{
		{"bad_backend.yaml", `testdata/bad_backend.yaml:14: routes["app1.test"][1]: parse backend "htp://x": unknown scheme "htp" (want http, tls, quic, http+unix or tls+unix)`},
		{"unknown_key.yaml", `testdata/unknown_key.yaml:5: timeout: unknown key (want listeners, routes, default, timeouts, limits, loops, redis, health, retries, admin, access_log, route_metrics, keepalive)`},
		{"duplicate_listener.yaml", `testdata/duplicate_listener.yaml:5: listeners[1].name: duplicate listener name "web" (first at line 2)`},
		{"duplicate_route.yaml", `testdata/duplicate_route.yaml:5: routes["APP1.test."]: duplicate route name (first at line 4)`},
		{"unknown_default.yaml", `testdata/unknown_default.yaml:5: default: route "app2.test" is not defined in routes`},
		{"syntax.yaml", `testdata/syntax.yaml:4: did not find expected '-' indicator`},
		{"empty.yaml", `testdata/empty.yaml: no listeners`},
		{"missing.yaml", `load config: open testdata/missing.yaml: no such file or directory`},
	}
	for _, tc := range tests {
		_, err := Load(filepath.Join("testdata", tc.file))
		if err == nil || err.Error() != tc.err {
			t.Errorf("Load(%s):\n got %v\nwant %s", tc.file, err, tc.err)
		}
	}
}

func TestParseErrorUnwraps(t *testing.T) {
	_, err := Load("testdata/bad_backend.yaml")
	var ce *Error
	if !errors.As(err, &ce) || ce.Line != 14 || ce.Path != `routes["app1.test"][1]` || ce.File != "testdata/bad_backend.yaml" {
		t.Fatalf("error %#v", err)
	}
	if _, err := Load("testdata/missing.yaml"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v is not os.ErrNotExist", err)
	}
}

// head is a valid listeners section (lines 1-2) that inline cases extend.
const head = "listeners:\n  - {name: web, address: 127.0.0.1:8080, protocol: http}\n"

func TestParseBad(t *testing.T) {
	tests := []struct {
		name, yaml, err string // err after "c.yaml:", starting with the line number when one is known
	}{
		// top level
		{"not a mapping", "- a\n- b\n", `1: want a mapping, got a list`},
		{"null document", "~\n", `no listeners`},
		{"comments only", "# nothing\n", `no listeners`},
		{"no listeners key", "loops: 1\n", `1: no listeners`},
		{"empty listeners", "listeners: []\n", `1: listeners: no listeners`},
		{"null listeners", "listeners:\n", `1: listeners: no listeners`},
		{"duplicate key", head + "loops: 1\nloops: 2\n", `4: loops: duplicate key (first at line 3)`},
		{"unknown key", head + "routes: {}\nbogus: 1\n", `4: bogus: unknown key (want listeners, routes, default, timeouts, limits, loops, redis, health, retries, admin, access_log, route_metrics, keepalive)`},
		{"bad reuse", head + "routes:\n  a.test:\n    backends: [http://127.0.0.1:1]\n    reuse: always\n", `6: routes["a.test"].reuse: unknown value "always" (want safe or never)`},
		{"zero max_idle", head + "keepalive: {max_idle: 0}\n", `3: keepalive.max_idle: 0 out of range 1..65536 (reuse: never turns the pool off)`},
		{"merge key", head + "<<: {loops: 1}\n", `3: <<: unknown key (want listeners, routes, default, timeouts, limits, loops, redis, health, retries, admin, access_log, route_metrics, keepalive)`},
		{"complex key", head + "? [a]\n: 1\n", `3: want a key, got a list`},

		// listeners
		{"listeners not a list", "listeners: {name: web}\n", `1: listeners: want a list, got a mapping`},
		{"listener not a mapping", "listeners:\n  - web\n", `2: listeners[0]: want a mapping, got "web"`},
		{"listener unknown key", "listeners:\n  - name: web\n    adress: 127.0.0.1:80\n", `3: listeners[0].adress: unknown key (want name, address, protocol, accept_proxy, trusted_proxies, forwarded_headers)`},
		{"listener missing protocol", "listeners:\n  - name: web\n    address: 127.0.0.1:80\n", `2: listeners[0]: missing "protocol"`},
		{"listener missing name", "listeners:\n  - {address: 127.0.0.1:80, protocol: http}\n", `2: listeners[0]: missing "name"`},
		{"listener empty name", "listeners:\n  - {name: '', address: 127.0.0.1:80, protocol: http}\n", `2: listeners[0].name: empty name`},
		{"listener null name", "listeners:\n  - name:\n    address: 127.0.0.1:80\n", `2: listeners[0].name: want a string, got nothing`},
		{"listener name list", "listeners:\n  - name: [a]\n", `2: listeners[0].name: want a string, got a list`},
		{"bad protocol", "listeners:\n  - name: web\n    address: 127.0.0.1:80\n    protocol: https\n", `4: listeners[0].protocol: unknown protocol "https" (want http, tls or quic)`},
		{"duplicate address", head + "  - name: web2\n    address: 127.0.0.1:8080\n    protocol: tls\n", `4: listeners[1].address: duplicate listener address 127.0.0.1:8080 (first at line 2)`},
		{"duplicate address canonical", "listeners:\n  - {name: a, address: '[::1]:80', protocol: http}\n  - {name: b, address: '[0:0::1]:80', protocol: tls}\n",
			`3: listeners[1].address: duplicate listener address [::1]:80 (first at line 2)`},
		{"unbracketed IPv6", "listeners:\n  - {name: a, address: '::1:8080', protocol: http}\n", `2: listeners[0].address: address "::1:8080": IPv6 address must be in brackets, like [::1]:8080`},
		{"missing port", "listeners:\n  - {name: a, address: 127.0.0.1, protocol: http}\n", `2: listeners[0].address: address "127.0.0.1": missing port in address (want ip:port)`},
		{"port too big", "listeners:\n  - {name: a, address: '127.0.0.1:65536', protocol: http}\n", `2: listeners[0].address: address "127.0.0.1:65536": port "65536" out of range 0..65535`},
		{"port name", "listeners:\n  - {name: a, address: '127.0.0.1:http', protocol: http}\n", `2: listeners[0].address: address "127.0.0.1:http": port "http" out of range 0..65535`},
		{"empty host", "listeners:\n  - {name: a, address: ':8080', protocol: http}\n", `2: listeners[0].address: address ":8080": missing IP (use 0.0.0.0 or [::] for all addresses)`},
		{"host name", "listeners:\n  - {name: a, address: 'localhost:8080', protocol: http}\n", `2: listeners[0].address: address "localhost:8080": "localhost" is not an IP address`},
		{"zoned", "listeners:\n  - {name: a, address: '[fe80::1%eth0]:8080', protocol: http}\n", `2: listeners[0].address: address "[fe80::1%eth0]:8080": zoned IPv6 addresses are not supported`},

		// routes
		{"routes not a mapping", head + "routes:\n  - http://127.0.0.1:1\n", `4: routes: want a mapping of route name to backend URLs, got a list`},
		{"bad route name", head + "routes:\n  app_1..test: [http://127.0.0.1:1]\n", `4: routes["app_1..test"]: invalid route name "app_1..test" (want a host name, *.suffix or *)`},
		{"wildcard in middle", head + "routes:\n  'a.*.test': [http://127.0.0.1:1]\n", `4: routes["a.*.test"]: invalid route name "a.*.test" (want a host name, *.suffix or *)`},
		{"null route name", head + "routes:\n  ~: [http://127.0.0.1:1]\n", `4: routes: want a route name, got nothing`},
		{"route not a list", head + "routes:\n  a.test: http://127.0.0.1:1\n", `4: routes["a.test"]: want a list of backend URLs, got "http://127.0.0.1:1"`},
		{"route null", head + "routes:\n  a.test:\n", `4: routes["a.test"]: want a list of backend URLs, got nothing`},
		{"route empty", head + "routes:\n  a.test: []\n", `4: routes["a.test"]: no backends`},
		{"backend not a string", head + "routes:\n  a.test:\n    - {url: x}\n", `5: routes["a.test"][0]: want a string, got a mapping`},
		{"backend bad option", head + "routes:\n  a.test:\n    - http://127.0.0.1:1\n    - tls://[::1]:2?weight=0\n",
			`6: routes["a.test"][1]: parse backend "tls://[::1]:2?weight=0": weight "0": want an integer 1..1000`},
		{"backend unknown option", head + "routes:\n  a.test: [\"http://127.0.0.1:1?wieght=2\"]\n",
			`4: routes["a.test"][0]: parse backend "http://127.0.0.1:1?wieght=2": unknown option "wieght" (want weight, proxy, drain or source)`},
		{"duplicate wildcard", head + "routes:\n  '*.a.test': [http://127.0.0.1:1]\n  '*.A.test': [http://127.0.0.1:1]\n", `5: routes["*.A.test"]: duplicate route name (first at line 4)`},

		// default
		{"default without routes", head + "default: a.test\n", `3: default: route "a.test" is not defined in routes`},
		{"default invalid", head + "routes: {a.test: [http://127.0.0.1:1]}\ndefault: 'a b'\n", `4: default: invalid route name "a b" (want a host name, *.suffix or *)`},
		{"default null", head + "default:\n", `3: default: want a string, got nothing`},

		// timeouts
		{"timeout unknown key", head + "timeouts: {handshake: 1s, read: 2s}\n", `3: timeouts.read: unknown key (want handshake, connect, idle, shutdown, quic_idle, drain_grace)`},
		{"timeout no unit", head + "timeouts:\n  idle: 300\n", `4: timeouts.idle: invalid duration "300" (want a number with a unit, like 5s or 300ms)`},
		{"timeout garbage", head + "timeouts:\n  connect: soon\n", `4: timeouts.connect: invalid duration "soon" (want a number with a unit, like 5s or 300ms)`},
		{"timeout zero", head + "timeouts:\n  connect: 0s\n", `4: timeouts.connect: duration "0s" must be positive`},
		{"timeout zero no unit", head + "timeouts:\n  connect: 0\n", `4: timeouts.connect: duration "0" must be positive`},
		{"timeout negative", head + "timeouts:\n  handshake: -1s\n", `4: timeouts.handshake: duration "-1s" must be positive`},
		{"timeouts not a mapping", head + "timeouts: 5s\n", `3: timeouts: want a mapping, got "5s"`},

		// limits
		{"limit too small", head + "limits: {max_header_bytes: 1023}\n", `3: limits.max_header_bytes: 1023 out of range 1024..1048576`},
		{"limit too big", head + "limits:\n  max_header_bytes: 1048577\n", `4: limits.max_header_bytes: 1048577 out of range 1024..1048576`},
		{"limit not an int", head + "limits:\n  max_header_bytes: 16k\n", `4: limits.max_header_bytes: want an integer, got "16k"`},
		{"limit float", head + "limits:\n  max_header_bytes: 2048.0\n", `4: limits.max_header_bytes: want an integer, got "2048.0"`},
		{"limit unknown key", head + "limits:\n  max_body_bytes: 2048\n", `4: limits.max_body_bytes: unknown key (want max_header_bytes, max_connections, max_connections_per_ip, per_ip_ipv6_prefix, max_flows, max_flows_per_ip)`},

		// loops
		{"loops negative", head + "loops: -1\n", `3: loops: -1 out of range 0..1024 (0: one per CPU)`},
		{"loops too many", head + "loops: 1025\n", `3: loops: 1025 out of range 0..1024 (0: one per CPU)`},
		{"loops string", head + "loops: many\n", `3: loops: want an integer, got "many"`},
		{"loops quoted", head + "loops: '4'\n", `3: loops: want an integer, got "4"`},
		{"loops overflow", head + "loops: 99999999999999999999\n", `3: loops: want an integer, got "99999999999999999999"`},

		// per-route metrics
		{"metrics not bool", head + "routes:\n  a.test: {metrics: yes please, backends: [http://127.0.0.1:1]}\n", `4: routes["a.test"].metrics: want true or false, got "yes please"`},
		{"route_metrics no top", head + "route_metrics: {window: 1m}\n", `3: route_metrics: missing "top" (how many routes to keep, 1..100)`},
		{"route_metrics top too big", head + "route_metrics: {top: 101}\n", `3: route_metrics.top: 101 out of range 1..100`},
		{"route_metrics short window", head + "route_metrics: {top: 5, window: 10ms}\n", `3: route_metrics.window: 10ms is shorter than 1s`},

		// YAML syntax
		{"bad indentation", head + "routes:\n  a.test:\n    - x\n   - y\n", `6: did not find expected key`},
		{"unclosed flow list", head + "routes:\n  a.test: [http://127.0.0.1:1\n  b.test: x\n", `4: did not find expected ',' or ']'`},
		{"nested under scalar", head + "loops: 1\n  x: 2\n", `4: mapping values are not allowed in this context`},
		{"unterminated quote", head + "routes:\n  a.test: \"abc\n\nloops: 1\n", `4: found unexpected end of stream`},
		// Valid YAML (a plain scalar continued on the next line) that the
		// backend check catches.
		{"continued scalar", head + "routes:\n  a.test:\n  - http://127.0.0.1:1\n   - x\n",
			`5: routes["a.test"][0]: parse backend "http://127.0.0.1:1 - x": invalid port "1 - x"`},
		{"tab", "listeners:\n\t- x\n", `2: found character that cannot start any token`},
		// A URL with a query in a flow list: the error says to quote it.
		{"query in flow list", head + "routes:\n  a.test: [tls://10.0.0.5:443?proxy=v2]\n",
			`4: did not find expected ',' or ']': a URL with "?" inside [...] must be quoted: write ["tls://10.0.0.5:443?proxy=v2"] (or list it as "- tls://10.0.0.5:443?proxy=v2" on its own line)`},
		{"query in second flow item", head + "routes:\n  a.test: [http://127.0.0.1:1]\n  # b.test: [http://x:1?weight=3]\n  b.test: {backends: [http://127.0.0.1:2, http://127.0.0.1:3?weight=2]}\n",
			`6: did not find expected ',' or ']': a URL with "?" inside [...] must be quoted: write ["http://127.0.0.1:3?weight=2"] (or list it as "- http://127.0.0.1:3?weight=2" on its own line)`},
		{"query in one-line flow list", "routes: {a.test: [http://x:1?weight=2]}\n",
			`1: did not find expected ',' or ']': a URL with "?" inside [...] must be quoted: write ["http://x:1?weight=2"] (or list it as "- http://x:1?weight=2" on its own line)`},
	}
	for _, tc := range tests {
		_, err := Parse([]byte(tc.yaml), "c.yaml")
		want := "c.yaml: " + tc.err // no line known
		if tc.err[0] >= '0' && tc.err[0] <= '9' {
			want = "c.yaml:" + tc.err
		}
		if err == nil || err.Error() != want {
			t.Errorf("%s:\n got %v\nwant %s", tc.name, err, want)
		}
	}
}

func TestParseGood(t *testing.T) {
	tests := []struct {
		name, yaml string
		check      func(*Config) bool
	}{
		{"defaults", head, func(c *Config) bool {
			return c.Timeouts == Timeouts{5 * time.Second, 3 * time.Second, 300 * time.Second, 30 * time.Second, 30 * time.Second, time.Second} &&
				c.Keepalive == balancer.Reuse{MaxIdle: 32, IdleTimeout: 15 * time.Second} &&
				c.Limits.MaxHeaderBytes == 16384 && c.Loops == 0 && c.Default == "" && c.Routes == nil
		}},
		{"partial timeouts keep defaults", head + "timeouts: {idle: 1m}\n", func(c *Config) bool {
			return c.Timeouts == Timeouts{5 * time.Second, 3 * time.Second, time.Minute, 30 * time.Second, 30 * time.Second, time.Second}
		}},
		{"keepalive", head + "keepalive: {max_idle: 4, timeout: 5s}\ntimeouts: {drain_grace: 300ms}\nroutes:\n  a.test:\n    backends: [http://127.0.0.1:1]\n    reuse: never\n  b.test:\n    backends: [http://127.0.0.1:2]\n    keepalive: {max_idle: 2}\n", func(c *Config) bool {
			return c.Keepalive == balancer.Reuse{MaxIdle: 4, IdleTimeout: 5 * time.Second} && c.Timeouts.DrainGrace == 300*time.Millisecond &&
				c.Routes[0].Reuse == balancer.Reuse{Never: true} && c.Routes[1].Reuse == balancer.Reuse{MaxIdle: 2}
		}},
		{"limit bounds", head + "limits: {max_header_bytes: 1024}\n", func(c *Config) bool { return c.Limits.MaxHeaderBytes == 1024 }},
		{"limit hex", head + "limits: {max_header_bytes: 0x100000}\n", func(c *Config) bool { return c.Limits.MaxHeaderBytes == 1<<20 }},
		{"null routes", head + "routes:\n", func(c *Config) bool { return c.Routes == nil }},
		{"routes in file order", head + "routes:\n  z.test: [http://127.0.0.1:1]\n  a.test: [http://127.0.0.1:2]\n  '*.m.test': [tls://127.0.0.1:3]\n",
			func(c *Config) bool {
				return len(c.Routes) == 3 && c.Routes[0].Name == "z.test" && c.Routes[1].Name == "a.test" && c.Routes[2].Name == "*.m.test"
			}},
		{"quoted query in flow list", head + "routes:\n  a.test: [\"tls://127.0.0.1:1?proxy=v2\", 'tls://127.0.0.1:2?weight=3']\n", func(c *Config) bool {
			return len(c.Routes) == 1 && c.Routes[0].Backends[0] == "tls://127.0.0.1:1?proxy=v2" && c.Routes[0].Backends[1] == "tls://127.0.0.1:2?weight=3"
		}},
		{"per-route metrics", head + "routes:\n  a.test: {metrics: true, backends: [http://127.0.0.1:1]}\n  b.test: [http://127.0.0.1:2]\nroute_metrics: {top: 10}\n", func(c *Config) bool {
			return c.Routes[0].Metrics && !c.Routes[1].Metrics && c.RouteMetrics != nil &&
				*c.RouteMetrics == RouteMetrics{Top: 10, Window: time.Minute, Queue: 65536}
		}},
		{"wildcard default", head + "routes: {'*.a.test': [http://127.0.0.1:1]}\ndefault: '*.A.test.'\n", func(c *Config) bool { return c.Default == "*.a.test" }},
		{"ipv6 listeners", "listeners:\n  - {name: a, address: '[::1]:8080', protocol: http}\n  - {name: b, address: '[::]:8443', protocol: tls}\n  - {name: c, address: '[::ffff:127.0.0.1]:1', protocol: tls}\n",
			func(c *Config) bool {
				return c.Listeners[0].Address == "[::1]:8080" && c.Listeners[1].Address == "[::]:8443" && c.Listeners[2].Address == "[::ffff:127.0.0.1]:1"
			}},
	}
	for _, tc := range tests {
		c, err := Parse([]byte(tc.yaml), "c.yaml")
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !tc.check(c) {
			t.Errorf("%s: unexpected config %+v", tc.name, *c)
		}
	}
}

func TestListenerAcceptProxy(t *testing.T) {
	good := "listeners:\n  - name: a\n    address: 127.0.0.1:80\n    protocol: tls\n    accept_proxy: true\n    trusted_proxies: [10.0.0.0/8, 192.0.2.7]\n"
	cfg, err := Parse([]byte(good), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Listeners[0]
	if !l.AcceptProxy || len(l.TrustedProxies) != 2 || l.TrustedProxies[1].String() != "192.0.2.7/32" {
		t.Errorf("listener = %+v", l)
	}
	bad := []struct{ yaml, want string }{
		{"listeners:\n  - name: a\n    address: 127.0.0.1:80\n    protocol: tls\n    accept_proxy: true\n",
			"c.yaml:5: listeners[0].accept_proxy: accept_proxy needs trusted_proxies"},
		{"listeners:\n  - name: a\n    address: 127.0.0.1:80\n    protocol: tls\n    accept_proxy: yes please\n",
			"c.yaml:5: listeners[0].accept_proxy: want true or false"},
		{"listeners:\n  - name: a\n    address: 127.0.0.1:80\n    protocol: tls\n    trusted_proxies: [10.0.0.0/33]\n",
			`c.yaml:5: listeners[0].trusted_proxies[0]: "10.0.0.0/33" is neither a CIDR prefix nor an IP address`},
	}
	for _, tc := range bad {
		_, err := Parse([]byte(tc.yaml), "c.yaml")
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("got %v, want prefix %q", err, tc.want)
		}
	}
}

package config

import (
	"strings"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
)

const sectionsHead = "listeners: [{name: web, address: 127.0.0.1:80, protocol: http}]\n"

func TestSectionsGood(t *testing.T) {
	tests := []struct {
		name, yaml string
		check      func(*Config) bool
	}{
		{"route long form", "routes:\n  a.test:\n    balance: least_conn\n    health: {check: http, path: /healthz, expect: 204, interval: 1s, timeout: 500ms, rise: 1, fall: 5}\n    backends: [http://127.0.0.1:1]\n",
			func(c *Config) bool {
				r := c.Routes[0]
				return r.Balance == balancer.LeastConn && r.Health == balancer.HealthCheck{Kind: balancer.CheckHTTP, Path: "/healthz",
					Expect: 204, Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 1, Fall: 5} && len(r.Backends) == 1
			}},
		{"tls check", "health: {check: tls}\n", func(c *Config) bool { return c.Health.Kind == balancer.CheckTLS }},
		{"default health", "health: {check: none, interval: 5s}\n", func(c *Config) bool {
			return c.Health.Kind == balancer.CheckNone && c.Health.Interval == 5*time.Second
		}},
		{"redis", "redis: {url: 'redis://127.0.0.1:6379/2', schema: sets, resync: 5s, snapshot_file: /tmp/r.json, share_health: false, notify_keyspace_events: off}\n",
			func(c *Config) bool {
				r := c.Redis
				return r != nil && r.URL == "redis://127.0.0.1:6379/2" && r.Schema == "sets" && r.Resync == 5*time.Second &&
					r.SnapshotFile == "/tmp/r.json" && !r.ShareHealth && r.NotifyOff
			}},
		{"redis defaults", "redis: {url: 'redis://127.0.0.1'}\n", func(c *Config) bool {
			return c.Redis.Schema == "hipache" && c.Redis.Resync == DefaultResync && c.Redis.ShareHealth && !c.Redis.NotifyOff
		}},
		{"redis sentinel", "redis: {sentinel: {master: m, addresses: ['127.0.0.1:26379']}}\n", func(c *Config) bool {
			return c.Redis.SentinelMaster == "m" && len(c.Redis.SentinelAddrs) == 1
		}},
		{"redis cluster", "redis: {cluster: {addresses: ['127.0.0.1:7000', '127.0.0.1:7001']}}\n", func(c *Config) bool {
			return len(c.Redis.ClusterAddrs) == 2
		}},
		{"admin short", "admin: 127.0.0.1:9090\n", func(c *Config) bool { return c.Admin.Address == "127.0.0.1:9090" }},
		{"admin public", "admin: {address: '0.0.0.0:9090', allow_public: true}\n", func(c *Config) bool { return c.Admin.AllowPublic }},
		{"access log", "access_log: {path: /var/log/portier.log, format: text, queue: 100}\n", func(c *Config) bool {
			return *c.AccessLog == AccessLog{Path: "/var/log/portier.log", Format: "text", Queue: 100}
		}},
		{"access log short", "access_log: '-'\n", func(c *Config) bool { return c.AccessLog.Path == "-" && c.AccessLog.Format == "json" }},
		{"retries 0", "retries: 0\n", func(c *Config) bool { return c.Retries == -1 }},
		{"limits", "limits: {max_connections: 1000, max_connections_per_ip: 10, per_ip_ipv6_prefix: 56}\n", func(c *Config) bool {
			return c.Limits.MaxConnections == 1000 && c.Limits.MaxConnectionsPerIP == 10 && c.Limits.MaxHeaderBytes == DefaultMaxHeaderBytes &&
				c.Limits.PerIPIPv6Prefix == 56
		}},
		{"shutdown", "timeouts: {shutdown: 2s}\n", func(c *Config) bool { return c.Timeouts.Shutdown == 2*time.Second }},
	}
	for _, tc := range tests {
		c, err := Parse([]byte(sectionsHead+tc.yaml), "c.yaml")
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !tc.check(c) {
			t.Errorf("%s: unexpected config %+v", tc.name, *c)
		}
	}
	c, err := Parse([]byte("listeners: [{name: a, address: 127.0.0.1:0, protocol: http}, {name: b, address: 127.0.0.1:0, protocol: tls}]\n"), "c.yaml")
	if err != nil || len(c.Listeners) != 2 {
		t.Errorf("two listeners on port 0: %v", err)
	}
	c, err = Parse([]byte("listeners: [{name: web, address: 127.0.0.1:80, protocol: http, forwarded_headers: [X-Forwarded-For, forwarded]}]\n"), "c.yaml")
	if err != nil || strings.Join(c.Listeners[0].ForwardedHeaders, ",") != "x-forwarded-for,forwarded" {
		t.Errorf("forwarded_headers: %v %+v", err, c)
	}
}

func TestSectionsBad(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"balance", "routes:\n  a.test: {balance: random, backends: [http://127.0.0.1:1]}\n", "c.yaml:3: routes[\"a.test\"].balance: "},
		{"no backends", "routes:\n  a.test: {balance: p2c}\n", "c.yaml:3: routes[\"a.test\"]: missing \"backends\""},
		{"check kind", "health: {check: icmp}\n", "c.yaml:2: health.check: "},
		{"path without http", "health: {path: /x}\n", "c.yaml:2: health.path: path needs check: http"},
		{"bad path", "health: {check: http, path: x}\n", "c.yaml:2: health.path: \"x\" is not an absolute path"},
		{"timeout > interval", "health: {interval: 1s, timeout: 2s}\n", "c.yaml:2: health: timeout 2s is longer than interval 1s"},
		{"fall", "health: {fall: 0}\n", "c.yaml:2: health.fall: 0 out of range 1..100"},
		{"redis url", "redis: {url: 'http://x'}\n", "c.yaml:2: redis.url: \"http://x\" is not a redis://"},
		{"redis empty", "redis: {schema: hipache}\n", "c.yaml:2: redis: want url, sentinel or cluster"},
		{"redis schema", "redis: {url: 'redis://x', schema: lists}\n", "c.yaml:2: redis.schema: unknown schema \"lists\""},
		{"sentinel half", "redis: {sentinel: {master: m}}\n", "c.yaml:2: redis.sentinel: want both master and addresses"},
		{"admin public", "admin: 0.0.0.0:9090\n", "c.yaml:2: admin.address: 0.0.0.0:9090 is not a loopback address"},
		{"admin host", "admin: example.com:9090\n", "c.yaml:2: admin.address: \"example.com\": want an IP address"},
		{"access log format", "access_log: {format: xml}\n", "c.yaml:2: access_log.format: unknown format \"xml\""},
		{"retries", "retries: 11\n", "c.yaml:2: retries: 11 out of range 0..10"},
		{"max conns", "limits: {max_connections: -1}\n", "c.yaml:2: limits.max_connections: -1 out of range"},
		{"v6 prefix", "limits: {per_ip_ipv6_prefix: 129}\n", "c.yaml:2: limits.per_ip_ipv6_prefix: 129 out of range 1..128"},
	}
	for _, tc := range tests {
		_, err := Parse([]byte(sectionsHead+tc.yaml), "c.yaml")
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want prefix %q", tc.name, err, tc.want)
		}
	}
	_, err := Parse([]byte("listeners: [{name: s, address: 127.0.0.1:443, protocol: tls, forwarded_headers: [forwarded]}]\n"), "c.yaml")
	if err == nil || !strings.Contains(err.Error(), "only http listeners add forwarding headers") {
		t.Errorf("forwarded_headers on tls: %v", err)
	}
	_, err = Parse([]byte("listeners: [{name: s, address: 127.0.0.1:80, protocol: http, forwarded_headers: [x-real-ip]}]\n"), "c.yaml")
	if err == nil || !strings.Contains(err.Error(), `unknown header "x-real-ip"`) {
		t.Errorf("unknown forwarded header: %v", err)
	}
}

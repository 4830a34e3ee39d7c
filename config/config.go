// Package config reads portier's YAML configuration file. Every error names
// the file, the line and the key it is about, on one line:
//
//	examples/demo.yaml:14: routes["app1.test"][1]: parse backend "htp://x": unknown scheme "htp" (want http, tls, quic, http+unix or tls+unix)
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/portier/portier/balancer"
)

// Listener is one listening socket.
type Listener struct {
	Name     string
	Address  string // canonical "ip:port": "127.0.0.1:8080", "[::1]:8443"
	Protocol string // "http" (route by Host header), "tls" (route by SNI) or "quic" (UDP, route by the SNI of QUIC Initials)
	// AcceptProxy: connections start with a PROXY protocol header (v1 or v2)
	// from a load balancer in front, accepted only from TrustedProxies.
	AcceptProxy    bool
	TrustedProxies []netip.Prefix // `trusted_proxies: [10.0.0.0/8, 192.0.2.7]`
	// ForwardedHeaders lists the forwarding headers an http listener adds
	// to every request (ForwardedHeaderNames); nil means all of them.
	ForwardedHeaders []string
	Line             int // line of the listener in the file
}

// Timeouts bound the phases of a proxied connection.
type Timeouts struct {
	Handshake time.Duration // until the route name (Host header or SNI) is read
	Connect   time.Duration // to connect to a backend
	Idle      time.Duration // without traffic in either direction
	Shutdown  time.Duration // SIGTERM: how long open connections may finish (default 30s)
	QUICIdle  time.Duration // quic flows without a datagram either way (default 30s)
	// DrainGrace: on SIGTERM, how long a kept-alive http connection idle at
	// that moment may still send a request (answered with Connection:
	// close) before it is closed (default 1s).
	DrainGrace time.Duration
}

// Limits bound per-connection resources.
type Limits struct {
	MaxHeaderBytes      int // bytes buffered while looking for the Host header or SNI
	MaxConnections      int // open client connections overall; 0: unlimited
	MaxConnectionsPerIP int // open client connections per client address; 0: unlimited
	// PerIPIPv6Prefix is how many leading bits of an IPv6 client address
	// max_connections_per_ip counts as one client (default 64: a host
	// usually owns a whole /64).
	PerIPIPv6Prefix int
	MaxFlows        int // open quic flows overall; 0: the engine's default (100000)
	MaxFlowsPerIP   int // open quic flows per client address; 0: unlimited
}

// Defaults and bounds.
const (
	DefaultHandshake      = 5 * time.Second
	DefaultConnect        = 3 * time.Second
	DefaultIdle           = 300 * time.Second
	DefaultShutdown       = 30 * time.Second
	DefaultQUICIdle       = 30 * time.Second // QUIC's common max_idle_timeout
	DefaultDrainGrace     = time.Second
	DefaultMaxIdle        = 32
	DefaultKeepalive      = 15 * time.Second
	MaxMaxIdle            = 1 << 16
	DefaultMaxHeaderBytes = 16384
	MinMaxHeaderBytes     = 1024
	MaxMaxHeaderBytes     = 1 << 20
	MaxLoops              = 1024
)

// Config is a parsed and validated configuration file.
type Config struct {
	Path      string
	Listeners []Listener
	Routes    []balancer.RouteSpec // in file order, names normalised (lower case, no trailing dot)
	Default   string               // normalised route name, or ""
	Timeouts  Timeouts
	Limits    Limits
	Loops     int    // event loops, 0 = one per CPU
	Redis     *Redis // nil: routes come from this file only
	// Health is the default active health check, for routes that set none
	// (every Redis route).
	Health    balancer.HealthCheck
	Retries   int        // further backends tried after a failed connect (default 2; -1: none)
	Admin     *Admin     // nil: no admin server
	AccessLog *AccessLog // nil: no access log
	// RouteMetrics: top routes by traffic in the metrics; nil: off.
	RouteMetrics *RouteMetrics
	// Keepalive is the default pool of idle connections to http://
	// backends (routes may override it): per backend address and event loop.
	Keepalive balancer.Reuse
}

// Admin configures the admin HTTP server (metrics, pprof, health, routes).
type Admin struct {
	Address     string // "127.0.0.1:9090"
	AllowPublic bool   // required to bind anything but a loopback address
}

// AccessLog configures the per-connection access log.
type AccessLog struct {
	Path   string // file, "-" or "" for stdout, "stderr"
	Format string // "json" (default) or "text"
	Queue  int    // lines buffered before dropping (default 8192)
}

// Redis configures the Redis route source (hipache-compatible schema).
type Redis struct {
	URL            string        // redis:// or rediss://, password may be in the URL
	SentinelMaster string        // with SentinelAddrs: use Redis Sentinel
	SentinelAddrs  []string      // "host:port"
	ClusterAddrs   []string      // "host:port": use Redis Cluster
	Schema         string        // "hipache" (default) or "sets"
	Resync         time.Duration // full resync period (default 30s)
	SnapshotFile   string        // last routes seen, loaded at start when Redis is down
	ShareHealth    bool          // share backend health with the fleet through Redis (default true)
	// NotifyOff (notify_keyspace_events: off) leaves the server's
	// notify-keyspace-events alone; by default (auto) portier adds the
	// classes it needs with CONFIG SET.
	NotifyOff bool
}

// Error is a configuration error at a line of a file. Err is the underlying
// cause (a balancer parse error, for instance), reachable with errors.As.
type Error struct {
	File string
	Line int    // 0 when unknown
	Path string // the key, like `listeners[0].address` or `routes["app1.test"][1]`; may be empty
	Err  error
}

func (e *Error) Error() string {
	var sb strings.Builder
	sb.WriteString(e.File)
	if e.Line > 0 {
		sb.WriteByte(':')
		sb.WriteString(strconv.Itoa(e.Line))
	}
	sb.WriteString(": ")
	if e.Path != "" {
		sb.WriteString(e.Path)
		sb.WriteString(": ")
	}
	sb.WriteString(e.Err.Error())
	return sb.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Load reads and parses the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	return Parse(data, path)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// Parse parses and validates a configuration; filename is used in errors
// and stored as Config.Path.
func Parse(data []byte, filename string) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, syntaxError(data, filename, err)
	}
	p := parser{file: filename}
	cfg := &Config{
		Path: filename,
		Timeouts: Timeouts{Handshake: DefaultHandshake, Connect: DefaultConnect, Idle: DefaultIdle, Shutdown: DefaultShutdown,
			QUICIdle: DefaultQUICIdle, DrainGrace: DefaultDrainGrace},
		Keepalive: balancer.Reuse{MaxIdle: DefaultMaxIdle, IdleTimeout: DefaultKeepalive},
		Limits:    Limits{MaxHeaderBytes: DefaultMaxHeaderBytes},
	}
	if err := p.config(&doc, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// syntaxError rewrites yaml.v3's "yaml: line N: msg" into our format. For
// parse errors yaml.v3 gives the line where the enclosing block starts
// (0-based), not the offending line; since YAML cut at a line boundary stays
// well-formed up to the cut, the first prefix of the file that fails with the
// same message ends on the offending line. Found by binary search: only the
// error path pays for it.
func syntaxError(data []byte, filename string, err error) error {
	line, msg, ok := splitYAMLError(err)
	lines := strings.SplitAfter(string(data), "\n")
	if !ok {
		if hint, at := syntaxHint(lines, 0, msg); hint != "" {
			return &Error{File: filename, Line: at, Err: fmt.Errorf("%s: %s", msg, hint)}
		}
		return &Error{File: filename, Err: errors.New(msg)}
	}
	fails := func(k int) bool {
		var n yaml.Node
		err := yaml.Unmarshal([]byte(strings.Join(lines[:k], "")), &n)
		if err == nil {
			return false
		}
		_, m, _ := splitYAMLError(err)
		return m == msg
	}
	lo, hi := 0, len(lines) // fails(hi) holds; find the smallest such hi
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	if hi > 0 {
		line = hi
	}
	if hint, at := syntaxHint(lines, line, msg); hint != "" {
		return &Error{File: filename, Line: at, Err: fmt.Errorf("%s: %s", msg, hint)}
	}
	return &Error{File: filename, Line: line, Err: errors.New(msg)}
}

func splitYAMLError(err error) (line int, msg string, ok bool) {
	msg = strings.ReplaceAll(err.Error(), "\n", " ")
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		return line, m[2], true
	}
	return 0, strings.TrimPrefix(msg, "yaml: "), false
}

type parser struct {
	file string
}

func (p *parser) errorf(n *yaml.Node, path, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &Error{File: p.file, Line: line, Path: path, Err: fmt.Errorf(format, args...)}
}

func (p *parser) wrap(n *yaml.Node, path string, err error) error {
	return &Error{File: p.file, Line: n.Line, Path: path, Err: err}
}

// deref follows aliases so that anchors work everywhere.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "unexpected YAML"
}

// fields walks a mapping, rejecting unknown and repeated keys. Keys whose
// value is null are passed to fn like any other.
func (p *parser) fields(n *yaml.Node, path string, known []string, fn func(key string, k, v *yaml.Node) error) error {
	if n.Kind != yaml.MappingNode {
		return p.errorf(n, path, "want a mapping, got %s", kindName(n))
	}
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			return p.errorf(k, path, "want a key, got %s", kindName(k))
		}
		key := k.Value
		kp := key
		if path != "" {
			kp = path + "." + key
		}
		if first, dup := seen[key]; dup {
			return p.errorf(k, kp, "duplicate key (first at line %d)", first)
		}
		seen[key] = k.Line
		found := false
		for _, f := range known {
			found = found || f == key
		}
		if !found {
			return p.errorf(k, kp, "unknown key (want %s)", strings.Join(known, ", "))
		}
		if err := fn(key, k, v); err != nil {
			return err
		}
	}
	return nil
}

// str returns a scalar's text; null and non-scalars are errors.
func (p *parser) str(n *yaml.Node, path string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		return "", p.errorf(n, path, "want a string, got %s", kindName(n))
	}
	return n.Value, nil
}

func (p *parser) integer(n *yaml.Node, path string) (int, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		return 0, p.errorf(n, path, "want an integer, got %s", kindName(n))
	}
	v, err := strconv.ParseInt(n.Value, 0, 64)
	if err != nil {
		return 0, p.errorf(n, path, "want an integer, got %q", n.Value)
	}
	return int(v), nil
}

func (p *parser) duration(n *yaml.Node, path string) (time.Duration, error) {
	s, err := p.str(n, path)
	if err != nil {
		return 0, err
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, p.errorf(n, path, "invalid duration %q (want a number with a unit, like 5s or 300ms)", s)
	}
	if d <= 0 {
		return 0, p.errorf(n, path, "duration %q must be positive", s)
	}
	return d, nil
}

func (p *parser) config(doc *yaml.Node, cfg *Config) error {
	var root *yaml.Node
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		root = deref(doc.Content[0])
	}
	if root == nil || root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return p.errorf(nil, "", "no listeners")
	}
	var defaultNode, listenersNode *yaml.Node
	known := []string{"listeners", "routes", "default", "timeouts", "limits", "loops",
		"redis", "health", "retries", "admin", "access_log", "route_metrics", "keepalive"}
	err := p.fields(root, "", known, func(key string, k, v *yaml.Node) error {
		switch key {
		case "listeners":
			listenersNode = k
			return p.listeners(v, cfg)
		case "routes":
			return p.routes(v, cfg)
		case "default":
			defaultNode = v
			s, err := p.str(v, key)
			cfg.Default = s
			return err
		case "timeouts":
			return p.timeouts(v, &cfg.Timeouts)
		case "redis":
			return p.redis(v, cfg)
		case "health":
			return p.health(v, "health", &cfg.Health)
		case "admin":
			return p.admin(v, cfg)
		case "access_log":
			return p.accessLog(v, cfg)
		case "route_metrics":
			return p.routeMetrics(v, cfg)
		case "keepalive":
			return p.keepalive(v, key, &cfg.Keepalive)
		case "retries":
			n, err := p.integer(v, key)
			if err != nil {
				return err
			}
			if n < 0 || n > 10 {
				return p.errorf(v, key, "%d out of range 0..10", n)
			}
			cfg.Retries = n
			if n == 0 {
				cfg.Retries = -1
			}
		case "limits":
			return p.limits(v, &cfg.Limits)
		case "loops":
			n, err := p.integer(v, key)
			if err != nil {
				return err
			}
			if n < 0 || n > MaxLoops {
				return p.errorf(v, key, "%d out of range 0..%d (0: one per CPU)", n, MaxLoops)
			}
			cfg.Loops = n
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(cfg.Listeners) == 0 {
		if listenersNode != nil {
			return p.errorf(listenersNode, "listeners", "no listeners")
		}
		return p.errorf(root, "", "no listeners")
	}
	if defaultNode != nil {
		name, err := balancer.NormalizeRouteName(cfg.Default)
		if err != nil {
			return p.wrap(defaultNode, "default", err)
		}
		found := false
		for _, r := range cfg.Routes {
			found = found || r.Name == name
		}
		if !found {
			return p.errorf(defaultNode, "default", "route %q is not defined in routes", cfg.Default)
		}
		cfg.Default = name
	}
	return nil
}

func (p *parser) listeners(n *yaml.Node, cfg *Config) error {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil // reported as "no listeners"
	}
	if n.Kind != yaml.SequenceNode {
		return p.errorf(n, "listeners", "want a list, got %s", kindName(n))
	}
	names := map[string]int{}
	addrs := map[string]int{}
	for i, item := range n.Content {
		item = deref(item)
		path := fmt.Sprintf("listeners[%d]", i)
		l := Listener{Line: item.Line}
		var nodes [3]*yaml.Node // name, address, protocol
		var acceptNode *yaml.Node
		var fwdNode *yaml.Node
		err := p.fields(item, path, []string{"name", "address", "protocol", "accept_proxy", "trusted_proxies", "forwarded_headers"}, func(key string, k, v *yaml.Node) error {
			switch key {
			case "forwarded_headers":
				fwdNode = v
				return p.forwardedHeaders(v, path+".forwarded_headers", &l)
			case "accept_proxy":
				acceptNode = v
				if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!bool" {
					return p.errorf(v, path+".accept_proxy", "want true or false")
				}
				return v.Decode(&l.AcceptProxy)
			case "trusted_proxies":
				return p.trustedProxies(v, path+".trusted_proxies", &l)
			}
			s, err := p.str(v, path+"."+key)
			if err != nil {
				return err
			}
			switch key {
			case "name":
				l.Name, nodes[0] = s, v
			case "address":
				l.Address, nodes[1] = s, v
			case "protocol":
				l.Protocol, nodes[2] = s, v
			}
			return nil
		})
		if err != nil {
			return err
		}
		for j, key := range []string{"name", "address", "protocol"} {
			if nodes[j] == nil {
				return p.errorf(item, path, "missing %q", key)
			}
		}
		if l.Name == "" {
			return p.errorf(nodes[0], path+".name", "empty name")
		}
		if first, dup := names[l.Name]; dup {
			return p.errorf(nodes[0], path+".name", "duplicate listener name %q (first at line %d)", l.Name, first)
		}
		names[l.Name] = nodes[0].Line
		addr, err := parseListenAddress(l.Address)
		if err != nil {
			return p.wrap(nodes[1], path+".address", err)
		}
		l.Address = addr
		// Port 0 asks the kernel for a free port each time: never a duplicate.
		akey := addr // a quic listener binds UDP: the same address may serve tcp too
		if l.Protocol == "quic" {
			akey = "udp " + addr
		}
		if first, dup := addrs[akey]; dup && !strings.HasSuffix(addr, ":0") {
			return p.errorf(nodes[1], path+".address", "duplicate listener address %s (first at line %d)", addr, first)
		}
		addrs[akey] = nodes[1].Line
		if l.Protocol != "http" && l.Protocol != "tls" && l.Protocol != "quic" {
			return p.errorf(nodes[2], path+".protocol", "unknown protocol %q (want http, tls or quic)", l.Protocol)
		}
		if l.Protocol == "quic" && l.AcceptProxy {
			return p.errorf(acceptNode, path+".accept_proxy", "the PROXY protocol is TCP only; a quic listener cannot take it")
		}
		if fwdNode != nil && l.Protocol != "http" {
			return p.errorf(fwdNode, path+".forwarded_headers", "only http listeners add forwarding headers (TLS passes through; use ?proxy=v1|v2 on backends)")
		}
		if l.AcceptProxy && len(l.TrustedProxies) == 0 {
			return p.errorf(acceptNode, path+".accept_proxy", "accept_proxy needs trusted_proxies (the addresses of the load balancers in front)")
		}
		cfg.Listeners = append(cfg.Listeners, l)
	}
	return nil
}

// trustedProxies reads a list of CIDR prefixes or single IP addresses.
func (p *parser) trustedProxies(n *yaml.Node, path string, l *Listener) error {
	if n.Kind != yaml.SequenceNode {
		return p.errorf(n, path, "want a list of CIDR prefixes, got %s", kindName(n))
	}
	for i, item := range n.Content {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		s, err := p.str(item, ipath)
		if err != nil {
			return err
		}
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			ip, ierr := netip.ParseAddr(s)
			if ierr != nil {
				return p.errorf(item, ipath, "%q is neither a CIDR prefix nor an IP address", s)
			}
			pfx = netip.PrefixFrom(ip, ip.BitLen())
		}
		l.TrustedProxies = append(l.TrustedProxies, pfx.Masked())
	}
	return nil
}

// parseListenAddress checks an "ip:port" listen address and returns it in
// canonical form. The host must be an IP literal: the engine binds without
// name resolution.
func parseListenAddress(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "[") {
			return "", fmt.Errorf("address %q: IPv6 address must be in brackets, like [::1]:8080", s)
		}
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return "", fmt.Errorf("address %q: %s (want ip:port)", s, ae.Err)
		}
		return "", fmt.Errorf("address %q: %v", s, err)
	}
	if host == "" {
		return "", fmt.Errorf("address %q: missing IP (use 0.0.0.0 or [::] for all addresses)", s)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return "", fmt.Errorf("address %q: %q is not an IP address", s, host)
	}
	if ip.Zone() != "" {
		return "", fmt.Errorf("address %q: zoned IPv6 addresses are not supported", s)
	}
	// Port 0 lets the kernel pick a free port (logged at start); tests use it.
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", fmt.Errorf("address %q: port %q out of range 0..65535", s, port)
	}
	return netip.AddrPortFrom(ip, uint16(n)).String(), nil
}

func (p *parser) routes(n *yaml.Node, cfg *Config) error {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil // routes may come from another source
	}
	if n.Kind != yaml.MappingNode {
		return p.errorf(n, "routes", "want a mapping of route name to backend URLs, got %s", kindName(n))
	}
	seen := map[string]int{}
	withMetrics := 0
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!null" {
			return p.errorf(k, "routes", "want a route name, got %s", kindName(k))
		}
		path := fmt.Sprintf("routes[%q]", k.Value)
		name, err := balancer.NormalizeRouteName(k.Value)
		if err != nil {
			return p.wrap(k, path, err)
		}
		if first, dup := seen[name]; dup {
			return p.errorf(k, path, "duplicate route name (first at line %d)", first)
		}
		seen[name] = k.Line
		r := balancer.RouteSpec{Name: name}
		if v.Kind == yaml.MappingNode {
			// The long form: {backends: [...], balance: ..., health: {...}}.
			var list, alpnNode *yaml.Node
			err := p.fields(v, path, []string{"backends", "balance", "health", "metrics", "alpn", "reuse", "keepalive"}, func(key string, k, fv *yaml.Node) error {
				switch key {
				case "backends":
					list = fv
				case "balance":
					s, err := p.str(fv, path+".balance")
					if err != nil {
						return err
					}
					a, err := balancer.ParseAlgorithm(s)
					if err != nil {
						return p.wrap(fv, path+".balance", err)
					}
					r.Balance = a
				case "health":
					return p.health(fv, path+".health", &r.Health)
				case "metrics":
					return p.routeMetricsFlag(fv, path+".metrics", &r, &withMetrics)
				case "alpn":
					alpnNode = fv
					return p.alpn(fv, path+".alpn", &r)
				case "reuse":
					s, err := p.str(fv, path+".reuse")
					if err != nil {
						return err
					}
					switch s {
					case "safe":
					case "never":
						r.Reuse.Never = true
					default:
						return p.errorf(fv, path+".reuse", "unknown value %q (want safe or never)", s)
					}
				case "keepalive":
					return p.keepalive(fv, path+".keepalive", &r.Reuse)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if list == nil {
				return p.errorf(v, path, "missing \"backends\"")
			}
			if alpnNode != nil && !hasTLSBackend(list) {
				return p.errorf(alpnNode, path+".alpn", "needs tls:// URLs in backends too: they serve clients offering none of these protocols")
			}
			path += ".backends"
			v = list
		}
		if v.Kind != yaml.SequenceNode {
			return p.errorf(v, path, "want a list of backend URLs, got %s", kindName(v))
		}
		if len(v.Content) == 0 {
			return p.errorf(v, path, "no backends")
		}
		r.Backends = make([]string, 0, len(v.Content))
		for j, item := range v.Content {
			item = deref(item)
			ipath := fmt.Sprintf("%s[%d]", path, j)
			raw, err := p.str(item, ipath)
			if err != nil {
				return err
			}
			if _, err := balancer.ParseBackend(raw); err != nil {
				return p.wrap(item, ipath, err)
			}
			r.Backends = append(r.Backends, raw)
		}
		cfg.Routes = append(cfg.Routes, r)
	}
	return nil
}

func (p *parser) timeouts(n *yaml.Node, t *Timeouts) error {
	return p.fields(n, "timeouts", []string{"handshake", "connect", "idle", "shutdown", "quic_idle", "drain_grace"}, func(key string, k, v *yaml.Node) error {
		d, err := p.duration(v, "timeouts."+key)
		if err != nil {
			return err
		}
		switch key {
		case "handshake":
			t.Handshake = d
		case "connect":
			t.Connect = d
		case "idle":
			t.Idle = d
		case "shutdown":
			t.Shutdown = d
		case "quic_idle":
			t.QUICIdle = d
		case "drain_grace":
			t.DrainGrace = d
		}
		return nil
	})
}

// keepalive reads the pool of idle http:// backend connections:
// {max_idle: N, timeout: D}.
func (p *parser) keepalive(n *yaml.Node, path string, r *balancer.Reuse) error {
	return p.fields(n, path, []string{"max_idle", "timeout"}, func(key string, k, v *yaml.Node) error {
		kp := path + "." + key
		if key == "timeout" {
			d, err := p.duration(v, kp)
			r.IdleTimeout = d
			return err
		}
		m, err := p.integer(v, kp)
		if err != nil {
			return err
		}
		if m < 1 || m > MaxMaxIdle {
			return p.errorf(v, kp, "%d out of range 1..%d (reuse: never turns the pool off)", m, MaxMaxIdle)
		}
		r.MaxIdle = m
		return nil
	})
}

func (p *parser) limits(n *yaml.Node, l *Limits) error {
	return p.fields(n, "limits", []string{"max_header_bytes", "max_connections", "max_connections_per_ip", "per_ip_ipv6_prefix", "max_flows", "max_flows_per_ip"}, func(key string, k, v *yaml.Node) error {
		path := "limits." + key
		n, err := p.integer(v, path)
		if err != nil {
			return err
		}
		switch key {
		case "per_ip_ipv6_prefix":
			if n < 1 || n > 128 {
				return p.errorf(v, path, "%d out of range 1..128", n)
			}
			l.PerIPIPv6Prefix = n
			return nil
		case "max_connections", "max_connections_per_ip", "max_flows", "max_flows_per_ip":
			if n < 0 || n > 1<<30 {
				return p.errorf(v, path, "%d out of range 0..%d (0: unlimited)", n, 1<<30)
			}
			switch key {
			case "max_connections":
				l.MaxConnections = n
			case "max_connections_per_ip":
				l.MaxConnectionsPerIP = n
			case "max_flows":
				l.MaxFlows = n
			default:
				l.MaxFlowsPerIP = n
			}
			return nil
		}
		if n < MinMaxHeaderBytes || n > MaxMaxHeaderBytes {
			return p.errorf(v, path, "%d out of range %d..%d", n, MinMaxHeaderBytes, MaxMaxHeaderBytes)
		}
		l.MaxHeaderBytes = n
		return nil
	})
}

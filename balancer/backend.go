// Package balancer holds the routing table (route name -> pool of backends),
// the load-balancing algorithms and backend health (active checks, passive
// connect failures, drain, active connection counts). Everything the event
// loops touch per connection (Table.Lookup, Pool.Pick, the Backend state
// methods) is lock-free and allocates nothing; parsing, validation and DNS
// resolution happen once, when a Table is built, and checks run on their own
// goroutines.
package balancer

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Scheme is the protocol a backend speaks and, equally, the kind of listener
// it serves: http:// backends serve http listeners, tls:// backends serve tls
// listeners.
type Scheme uint8

const (
	SchemeHTTP Scheme = 1
	SchemeTLS  Scheme = 2
	SchemeQUIC Scheme = 3 // QUIC over UDP, routed by the SNI of its Initial packets

	schemeLast = SchemeQUIC
)

// String returns the URL scheme name ("http", "tls").
func (s Scheme) String() string {
	switch s {
	case SchemeHTTP:
		return "http"
	case SchemeTLS:
		return "tls"
	case SchemeQUIC:
		return "quic"
	}
	return "scheme(" + strconv.Itoa(int(s)) + ")"
}

// ProxyProtocol selects the PROXY protocol header sent to a backend before
// the client's bytes.
type ProxyProtocol uint8

const (
	ProxyNone ProxyProtocol = 0
	ProxyV1   ProxyProtocol = 1
	ProxyV2   ProxyProtocol = 2
)

// String returns the option value that selects p ("v1", "v2"), or "none".
func (p ProxyProtocol) String() string {
	switch p {
	case ProxyNone:
		return "none"
	case ProxyV1:
		return "v1"
	case ProxyV2:
		return "v2"
	}
	return "proxy(" + strconv.Itoa(int(p)) + ")"
}

// MaxWeight bounds a backend's weight so that weighted sequences stay small.
const MaxWeight = 1000

// BackendSpec is a parsed backend URL such as "http://127.0.0.1:9001",
// "tls://[::1]:9443?weight=2&proxy=v2&drain=1", "http://backend.internal:8080"
// or "http+unix:///run/app/web.sock".
type BackendSpec struct {
	Raw    string        // the URL as written
	Scheme Scheme        // SchemeHTTP, SchemeTLS or SchemeQUIC
	Host   string        // IP literal (without brackets) or lower-case host name; "" for a unix socket
	Port   uint16        // explicit, or 80 for http and 443 for tls; 0 for a unix socket
	Path   string        // http+unix:// and tls+unix://: the socket's absolute path
	Weight int           // 1..MaxWeight, default 1
	Proxy  ProxyProtocol // PROXY protocol header to send, default none
	Drain  bool          // receives no new connections
	Source Source        // source address of backend connections (source=client)
}

// ParseBackend parses a backend URL. It performs no DNS lookups: a host name
// is kept as written (lower-cased) and resolved when a Table is built.
func ParseBackend(raw string) (BackendSpec, error) {
	spec, err := parseBackend(raw)
	if err != nil {
		return BackendSpec{}, fmt.Errorf("parse backend %q: %w", raw, err)
	}
	return spec, nil
}

func parseBackend(raw string) (BackendSpec, error) {
	spec := BackendSpec{Raw: raw, Weight: 1}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return spec, errors.New("missing scheme (want http://, tls://, quic://, http+unix:// or tls+unix://)")
	}
	switch strings.ToLower(scheme) {
	case "http":
		spec.Scheme, spec.Port = SchemeHTTP, 80
	case "tls":
		spec.Scheme, spec.Port = SchemeTLS, 443
	case "quic":
		spec.Scheme, spec.Port = SchemeQUIC, 443
	case "http+unix":
		spec.Scheme = SchemeHTTP
		return parseUnixBackend(spec, rest)
	case "tls+unix":
		spec.Scheme = SchemeTLS
		return parseUnixBackend(spec, rest)
	default:
		return spec, fmt.Errorf("unknown scheme %q (want http, tls, quic, http+unix or tls+unix)", scheme)
	}

	authority, query, hasQuery := strings.Cut(rest, "?")
	if i := strings.IndexByte(authority, '#'); i >= 0 {
		return spec, errors.New("fragment not allowed")
	}
	if i := strings.IndexByte(authority, '/'); i >= 0 {
		// A backend is a TCP endpoint; a path would be silently ignored.
		if authority[i:] != "/" {
			return spec, fmt.Errorf("path %q not allowed", authority[i:])
		}
		authority = authority[:i]
	}
	if strings.IndexByte(authority, '@') >= 0 {
		return spec, errors.New("user info not allowed")
	}
	host, port, err := splitAuthority(authority)
	if err != nil {
		return spec, err
	}
	spec.Host = host
	if port != "" {
		p, err := parsePort(port)
		if err != nil {
			return spec, err
		}
		spec.Port = p
	}
	if hasQuery {
		if err := parseOptions(&spec, query); err != nil {
			return spec, err
		}
	}
	return spec, nil
}

// IsUnix reports whether the backend is a unix-domain socket (Path).
func (s *BackendSpec) IsUnix() bool { return s.Path != "" }

// splitAuthority splits "host", "host:port", "[v6]" or "[v6]:port" and
// validates the host. port is "" when absent.
func splitAuthority(a string) (host, port string, err error) {
	if a == "" {
		return "", "", errors.New("missing host")
	}
	if a[0] == '[' {
		end := strings.IndexByte(a, ']')
		if end < 0 {
			return "", "", errors.New("missing ']' in IPv6 address")
		}
		host, rest := a[1:end], a[end+1:]
		if strings.IndexByte(host, '%') >= 0 {
			return "", "", fmt.Errorf("zoned IPv6 address %q not supported", host)
		}
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is6() {
			return "", "", fmt.Errorf("invalid IPv6 address %q", host)
		}
		if rest != "" {
			if rest[0] != ':' {
				return "", "", fmt.Errorf("unexpected %q after IPv6 address", rest)
			}
			if rest == ":" {
				return "", "", errors.New("empty port")
			}
			port = rest[1:]
		}
		return ip.String(), port, nil
	}
	switch strings.Count(a, ":") {
	case 0:
		host = a
	case 1:
		host, port, _ = strings.Cut(a, ":")
		if port == "" {
			return "", "", errors.New("empty port")
		}
	default:
		return "", "", fmt.Errorf("IPv6 address %q must be in brackets", a)
	}
	if host == "" {
		return "", "", errors.New("missing host")
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.String(), port, nil
	}
	if !validHostname(host, true) {
		return "", "", fmt.Errorf("invalid host %q", host)
	}
	return strings.ToLower(host), port, nil
}

func parsePort(s string) (uint16, error) {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("invalid port %q", s)
		}
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port %q out of range 1..65535", s)
	}
	return uint16(n), nil
}

func parseOptions(spec *BackendSpec, query string) error {
	var seen [4]bool // weight, proxy, drain, source
	for opt := range strings.SplitSeq(query, "&") {
		key, val, _ := strings.Cut(opt, "=")
		idx := -1
		switch key {
		case "":
			return errors.New("empty option")
		case "weight":
			idx = 0
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > MaxWeight {
				return fmt.Errorf("weight %q: want an integer 1..%d", val, MaxWeight)
			}
			spec.Weight = n
		case "proxy":
			idx = 1
			switch val {
			case "v1", "v2":
				if spec.Scheme == SchemeQUIC {
					// Datagrams are forwarded unchanged; a PROXY header would
					// not be QUIC (see the README on client addresses).
					return errors.New("proxy is not supported for quic backends")
				}
				spec.Proxy = ProxyV1
				if val == "v2" {
					spec.Proxy = ProxyV2
				}
			default:
				return fmt.Errorf("proxy %q: want v1 or v2", val)
			}
		case "drain":
			idx = 2
			switch val {
			case "0":
				spec.Drain = false
			case "1":
				spec.Drain = true
			default:
				return fmt.Errorf("drain %q: want 0 or 1", val)
			}
		case "source":
			idx = 3
			switch val {
			case "client":
				spec.Source = SourceClient
			case "proxy":
				spec.Source = SourceProxy
			default:
				return fmt.Errorf("source %q: want client or proxy", val)
			}
		default:
			return fmt.Errorf("unknown option %q (want weight, proxy, drain or source)", key)
		}
		if seen[idx] {
			return fmt.Errorf("duplicate option %q", key)
		}
		seen[idx] = true
	}
	return nil
}

// validHostname reports whether s is a DNS host name: dot-separated labels of
// 1..63 letters, digits, '-' or '_' (not starting or ending with '-'), at most
// 253 bytes. allowTrailingDot accepts one final dot (a fully qualified name).
func validHostname(s string, allowTrailingDot bool) bool {
	if allowTrailingDot && strings.HasSuffix(s, ".") {
		s = s[:len(s)-1]
	}
	if s == "" || len(s) > 253 {
		return false
	}
	// One pass over the bytes (a route set's build checks every name).
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			c := s[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
			continue
		}
		if n := i - start; n == 0 || n > 63 || s[start] == '-' || s[i-1] == '-' {
			return false
		}
		start = i + 1
	}
	return true
}

// NormalizeRouteName validates a route name and returns its canonical form:
// lower-case, without a trailing dot. A name is a host name ("app1.test"), a
// wildcard "*.suffix" that matches any name with at least one more label, or
// the catch-all "*" (hipache's frontend:*), which serves names nothing else
// matches.
func NormalizeRouteName(name string) (string, error) {
	if name == "*" {
		return name, nil
	}
	n := strings.ToLower(strings.TrimSuffix(name, "."))
	host := n
	if suffix, ok := strings.CutPrefix(n, "*."); ok {
		host = suffix
	}
	if !validHostname(host, false) {
		return "", fmt.Errorf("invalid route name %q (want a host name, *.suffix or *)", name)
	}
	return n, nil
}

// Backend is one resolved backend of a Pool. Its Spec, Addr and Sockaddr are
// immutable; its runtime state (health, drain, active connections) is shared
// by every Backend of the same scheme and address in a Table and, when the
// tables are built with a *Health, across tables. All methods are lock-free
// and allocate nothing, so the event loops may call them.
type Backend struct {
	Spec BackendSpec
	Addr netip.AddrPort // resolved address, IPv4 unmapped; zero for a unix socket
	// AddrText is Addr as "ip:port" (or "unix:" + Spec.Path), prebuilt so
	// that access logs and metrics name the backend without allocating.
	AddrText string

	st *backendState
}

// String returns the backend's URL followed by its resolved address.
func (b *Backend) String() string {
	return b.Spec.Raw + " (" + b.AddrText + ")"
}

// Up reports the effective health: the local checks (active and passive)
// pass and no other proxy of the fleet reported the backend down.
func (b *Backend) Up() bool { return !b.st.fleetDown.Load() && b.st.localUp() }

// Draining reports whether the backend takes no new connections: its URL
// says drain=1 or SetDrain(true) was called.
func (b *Backend) Draining() bool { return b.Spec.Drain || b.st.drain.Load() }

// SetDrain switches the runtime drain on or off (admin API). It applies to
// every Backend sharing this one's state.
func (b *Backend) SetDrain(on bool) { b.st.drain.Store(on) }

// Acquire counts a connection to the backend; call it when connecting starts.
func (b *Backend) Acquire() { b.st.active.Add(1) }

// Release ends a connection counted by Acquire; call it when the backend
// socket closes.
func (b *Backend) Release() { b.st.active.Add(-1) }

// Active returns the number of connections acquired and not yet released.
func (b *Backend) Active() int64 { return b.st.active.Load() }

// ConnectFailed records a refused, reset or timed-out connect. Fall
// consecutive failures mark the backend down: until Rise good active checks,
// or for Interval when there are none.
func (b *Backend) ConnectFailed() { b.st.connectFailed() }

// ConnectSucceeded records a successful connect: it resets the failure count
// and ends a passive down (not one decided by active checks).
func (b *Backend) ConnectSucceeded() { b.st.connectSucceeded() }

// usable reports whether Pick may choose b.
func (b *Backend) usable() bool {
	return !b.Spec.Drain && !b.st.drain.Load() && !b.st.fleetDown.Load() && b.st.localUp()
}

// buildBackend builds a backend without runtime state; the caller sets it.
func buildBackend(spec BackendSpec, ip netip.Addr) *Backend {
	// A zone would need an interface lookup at connect time; resolvers do
	// not return zoned addresses anyway.
	ip = ip.Unmap().WithZone("")
	b := &Backend{Spec: spec, Addr: netip.AddrPortFrom(ip, spec.Port)}
	b.AddrText = b.Addr.String()
	return b
}

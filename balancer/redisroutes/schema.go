package redisroutes

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/portier/portier/balancer"
)

// Schema names.
const (
	SchemaHipache = "hipache" // frontend:<host> LIST [identifier, url...]; frontend:<host>@<alpn> for ALPN pools
	SchemaSets    = "sets"    // hostnames:<host>:backends SET of host[:port]
)

// CatchAll is the name of the route that serves names no other route matches.
const CatchAll = "*"

const (
	hipachePrefix = "frontend:"
	setsPrefix    = "hostnames:"
	setsSuffix    = ":backends"
	// The two keys of the sets schema that together form the catch-all.
	setsHTTPDefault  = "httpDefault"
	setsHTTPSDefault = "httpsDefault"
)

// schema is a parsed schema name.
type schema uint8

const (
	hipache schema = iota
	sets
)

func parseSchema(s string) (schema, error) {
	switch s {
	case "", SchemaHipache:
		return hipache, nil
	case SchemaSets:
		return sets, nil
	}
	return 0, fmt.Errorf("redis: unknown schema %q (want %s or %s)", s, SchemaHipache, SchemaSets)
}

func (sc schema) String() string {
	if sc == sets {
		return SchemaSets
	}
	return SchemaHipache
}

// scanPattern matches the route keys of the schema.
func (sc schema) scanPattern() string {
	if sc == sets {
		return setsPrefix + "*" + setsSuffix
	}
	return hipachePrefix + "*"
}

// notifyPattern is the keyspace channel pattern for db; the sets pattern is
// broader than the key pattern (isRouteKey filters) because a glob cannot
// anchor the suffix of a channel name more cheaply than we can.
func (sc schema) notifyPattern(db int) string {
	p := fmt.Sprintf("__keyspace@%d__:", db)
	if sc == sets {
		return p + setsPrefix + "*"
	}
	return p + hipachePrefix + "*"
}

// notifyFlags are the notify-keyspace-events classes the schema needs:
// K keyspace channel, g generic (DEL, RENAME, EXPIRE), x expiries, and the
// type's own class.
func (sc schema) notifyFlags() string {
	if sc == sets {
		return "Kgxs"
	}
	return "Kgxl"
}

func (sc schema) isRouteKey(key string) bool {
	if sc == sets {
		return len(key) > len(setsPrefix)+len(setsSuffix) &&
			strings.HasPrefix(key, setsPrefix) && strings.HasSuffix(key, setsSuffix)
	}
	return len(key) > len(hipachePrefix) && strings.HasPrefix(key, hipachePrefix)
}

// keyName returns the route name key contributes to (valid or not, the
// name of a key never changes); ok is false for a key that names no route.
func (sc schema) keyName(key string) (name string, ok bool) {
	if sc == sets {
		host := strings.TrimSuffix(strings.TrimPrefix(key, setsPrefix), setsSuffix)
		if host == setsHTTPDefault || host == setsHTTPSDefault {
			return CatchAll, true
		}
		n, err := normalizeName(host)
		return n, err == nil
	}
	host, _, _ := strings.Cut(strings.TrimPrefix(key, hipachePrefix), alpnSep)
	n, err := normalizeName(host)
	return n, err == nil
}

// key returns the key of name as written in its normalised spelling: the
// only key of almost every route. Routes that other keys contribute to
// (another spelling, the two catch-all keys of the sets schema) are merged
// by key; see collector.
func (sc schema) key(name string) string {
	if sc == sets {
		return setsKey(name)
	}
	return hipachePrefix + name
}

// entry is what one key contributes: backends for the route name. Several
// keys may contribute to one name (the two catch-all keys of the sets
// schema, or "frontend:App.test" next to "frontend:app.test").
type entry struct {
	name     string
	alpn     string   // frontend:<name>@<alpn>: the route's pool for this ALPN protocol
	backends []string // immutable once stored: shared with published routes
}

// normalizeName accepts the catch-all next to what balancer accepts.
func normalizeName(name string) (string, error) {
	if name == CatchAll {
		return CatchAll, nil
	}
	return balancer.NormalizeRouteName(name)
}

// parse turns the values of key into an entry. problem, when not empty, is
// one line describing what was skipped; ok is false when nothing of the key
// is usable.
func (sc schema) parse(key string, vals []string) (e entry, problem string, ok bool) {
	if sc == sets {
		return parseSets(key, vals)
	}
	return parseHipache(key, vals)
}

func parseHipache(key string, vals []string) (entry, string, bool) {
	// A host name has no "@": what follows it is an ALPN protocol ID.
	host, alpn, isALPN := strings.Cut(strings.TrimPrefix(key, hipachePrefix), alpnSep)
	name, err := normalizeName(host)
	if err != nil {
		return entry{}, err.Error(), false
	}
	if isALPN && (alpn == "" || len(alpn) > balancer.MaxALPNLen) {
		return entry{}, fmt.Sprintf("ALPN protocol ID %q after %q: want 1 to %d bytes", alpn, alpnSep, balancer.MaxALPNLen), false
	}
	if len(vals) < 2 {
		return entry{}, "no backends (element 0 is the identifier, backend URLs follow)", false
	}
	e := entry{name: name, alpn: alpn, backends: make([]string, 0, len(vals)-1)}
	var bad []string
	for _, v := range vals[1:] {
		spec, err := balancer.ParseBackend(v)
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		if isALPN && spec.Scheme != balancer.SchemeTLS {
			bad = append(bad, fmt.Sprintf("%q: an ALPN pool takes tls:// backends", v))
			continue
		}
		e.backends = append(e.backends, v)
	}
	return finish(e, bad, len(vals)-1)
}

func parseSets(key string, vals []string) (entry, string, bool) {
	host := strings.TrimSuffix(strings.TrimPrefix(key, setsPrefix), setsSuffix)
	withHTTP, withTLS := true, true
	name := CatchAll
	switch host {
	case setsHTTPDefault:
		withTLS = false
	case setsHTTPSDefault:
		withHTTP = false
	default:
		n, err := normalizeName(host)
		if err != nil {
			return entry{}, err.Error(), false
		}
		name = n
	}
	if len(vals) == 0 {
		return entry{}, "no backends", false
	}
	// SMEMBERS has no order; sorting keeps the route stable across reads so
	// that a resync of an unchanged set publishes nothing.
	vals = slices.Clone(vals)
	slices.Sort(vals)
	e := entry{name: name, backends: make([]string, 0, 2*len(vals))}
	var bad []string
	for _, v := range vals {
		urls, err := setsMember(v, withHTTP, withTLS)
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		e.backends = append(e.backends, urls...)
	}
	return finish(e, bad, len(vals))
}

func finish(e entry, bad []string, total int) (entry, string, bool) {
	switch {
	case len(bad) == 0:
		return e, "", true
	case len(e.backends) == 0:
		return entry{}, "no valid backend: " + strings.Join(bad, "; "), false
	}
	return e, fmt.Sprintf("skipped %d of %d backends: %s", len(bad), total, strings.Join(bad, "; ")), true
}

// setsMember turns a stupid-proxy member ("host", "host:port", "[v6]:port")
// into backend URLs: a bare host gets port 80 for http and 443 for tls.
func setsMember(m string, withHTTP, withTLS bool) ([]string, error) {
	if strings.Contains(m, "://") {
		// A whole backend URL is taken as it is: the way to a quic://
		// backend, a unix socket or URL options (weight, proxy) in this
		// schema, whose bare host[:port] members mean http and tls.
		if _, err := balancer.ParseBackend(m); err != nil {
			return nil, fmt.Errorf("member %q: %w", m, err)
		}
		return []string{m}, nil
	}
	host, port, err := splitMember(m)
	if err != nil {
		return nil, fmt.Errorf("member %q: %w", m, err)
	}
	var out []string
	add := func(scheme, def string) error {
		p := port
		if p == "" {
			p = def
		}
		u := scheme + "://" + net.JoinHostPort(host, p)
		if _, err := balancer.ParseBackend(u); err != nil {
			return fmt.Errorf("member %q: %w", m, err)
		}
		out = append(out, u)
		return nil
	}
	if withHTTP {
		if err := add("http", "80"); err != nil {
			return nil, err
		}
	}
	if withTLS {
		if err := add("tls", "443"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// splitMember splits host[:port]; an unbracketed IPv6 literal is a bare host.
func splitMember(m string) (host, port string, err error) {
	if m == "" {
		return "", "", fmt.Errorf("empty")
	}
	if a, err := netip.ParseAddr(strings.Trim(m, "[]")); err == nil && a.Is6() && (m[0] != '[' || m[len(m)-1] == ']') {
		return a.String(), "", nil
	}
	if !strings.Contains(m, ":") {
		return m, "", nil
	}
	host, port, err = net.SplitHostPort(m)
	if err != nil {
		return "", "", err
	}
	if port == "" {
		return "", "", fmt.Errorf("empty port")
	}
	return host, port, nil
}

// merge returns the route name of the keys byKey (key -> backends): the
// backends of its own keys concatenated in key order, and one ALPN pool per
// frontend:<name>@<alpn> protocol. ok is false when only ALPN keys are left:
// a route needs its own list (with a tls:// backend) for other clients.
func merge(name string, byKey map[string][]string) (r balancer.RouteSpec, ok bool) {
	r.Name = name
	for _, k := range slices.Sorted(maps.Keys(byKey)) {
		if _, proto, isALPN := strings.Cut(strings.TrimPrefix(k, hipachePrefix), alpnSep); isALPN && strings.HasPrefix(k, hipachePrefix) {
			addALPN(&r, proto, byKey[k])
			continue
		}
		r.Backends = append(r.Backends, byKey[k]...)
	}
	return r, len(r.Backends) > 0
}

// alpnSep separates the route name and the ALPN protocol in a hipache key:
// frontend:app1.test@acme-tls/1.
const alpnSep = "@"

// addALPN adds backends to r's pool for proto (keys for one name may
// normalise alike, like frontend:A.test@h2 and frontend:a.test@h2).
func addALPN(r *balancer.RouteSpec, proto string, backends []string) {
	for i := range r.ALPN {
		if r.ALPN[i].Protocol == proto {
			r.ALPN[i].Backends = append(slices.Clip(r.ALPN[i].Backends), backends...)
			return
		}
	}
	r.ALPN = append(r.ALPN, balancer.ALPNRoute{Protocol: proto, Backends: slices.Clip(backends)})
}

// sameRoute reports whether a and b have the same backends and ALPN pools.
func sameRoute(a, b balancer.RouteSpec) bool {
	return slices.Equal(a.Backends, b.Backends) &&
		slices.EqualFunc(a.ALPN, b.ALPN, func(x, y balancer.ALPNRoute) bool {
			return x.Protocol == y.Protocol && slices.Equal(x.Backends, y.Backends)
		})
}

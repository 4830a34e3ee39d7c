package balancer

import (
	"fmt"
	"slices"
)

// MaxALPNLen is the longest ALPN protocol ID (RFC 7301: 1..255 bytes).
const MaxALPNLen = 255

// ALPNRoute sends TLS connections whose ClientHello offers Protocol to its
// own backends instead of the route's: `acme-tls/1` to a certificate
// service, `h2` and `http/1.1` to different pools.
type ALPNRoute struct {
	Protocol string
	Backends []string // tls:// URLs
}

// ALPNPool is a pool of a route's TLS pool for one ALPN protocol.
type ALPNPool struct {
	Protocol string
	Pool     *Pool
}

// ForProtocol returns the pool for ALPN protocol proto, or nil when the
// route has none for it. Allocates nothing.
func (p *Pool) ForProtocol(proto []byte) *Pool {
	for i := range p.ALPN {
		if p.ALPN[i].Protocol == string(proto) {
			return p.ALPN[i].Pool
		}
	}
	return nil
}

// CheckALPN validates a route's per-ALPN entries: protocol IDs of 1..255
// bytes without repeats, and tls:// backend URLs only.
func CheckALPN(alpn []ALPNRoute) error {
	for i, a := range alpn {
		if a.Protocol == "" || len(a.Protocol) > MaxALPNLen {
			return fmt.Errorf("alpn %q: a protocol ID has 1 to %d bytes", a.Protocol, MaxALPNLen)
		}
		if slices.ContainsFunc(alpn[:i], func(b ALPNRoute) bool { return b.Protocol == a.Protocol }) {
			return fmt.Errorf("alpn %q: listed twice", a.Protocol)
		}
		if len(a.Backends) == 0 {
			return fmt.Errorf("alpn %q: no backends", a.Protocol)
		}
		for _, raw := range a.Backends {
			spec, err := ParseBackend(raw)
			if err != nil {
				return fmt.Errorf("alpn %q: %w", a.Protocol, err)
			}
			if spec.Scheme != SchemeTLS {
				return fmt.Errorf("alpn %q: backend %q: ALPN routing is for TLS: want a tls:// URL", a.Protocol, raw)
			}
		}
	}
	return nil
}

// checkALPN validates r's ALPN entries before anything of r is recorded:
// the URLs, their host names' resolution, and a tls:// backend of the route
// itself for the clients that offer none of the protocols.
func (b *tableBuilder) checkALPN(r RouteSpec) error {
	if len(r.ALPN) == 0 {
		return nil
	}
	if err := CheckALPN(r.ALPN); err != nil {
		return fmt.Errorf("route %q: %w", r.Name, err)
	}
	hasTLS := false
	for _, raw := range r.Backends {
		if spec, err := ParseBackend(raw); err == nil && spec.Scheme == SchemeTLS {
			hasTLS = true
		}
	}
	if !hasTLS {
		return fmt.Errorf("route %q: alpn needs tls:// backends in the route's own backends too (for other protocols)", r.Name)
	}
	for _, a := range r.ALPN {
		for _, raw := range a.Backends {
			if _, _, err := b.backend(raw, nil); err != nil {
				return fmt.Errorf("route %q: alpn %q: %w", r.Name, a.Protocol, err)
			}
		}
	}
	return nil
}

// withALPN gives the TLS pool p of route r (named name) its per-ALPN pools,
// with r's balance, health and stats. r was validated by checkALPN.
func (b *tableBuilder) withALPN(p *Pool, r RouteSpec, name string) *Pool {
	for _, a := range r.ALPN {
		byScheme, err := b.route(RouteSpec{Name: r.Name, Backends: a.Backends, Balance: r.Balance, Health: r.Health})
		if err != nil {
			// Not expected: checkALPN parsed and resolved every URL in this
			// build. Those clients then get the route's own backends.
			b.log.Error("alpn pool not built", "route", r.Name, "alpn", a.Protocol, "err", err)
			continue
		}
		ap := newPool(name, r.Balance, byScheme[SchemeTLS], maxSeq)
		ap.Stats = p.Stats
		p.ALPN = append(p.ALPN, ALPNPool{Protocol: a.Protocol, Pool: ap})
	}
	return p
}

// pools makes route r's pool of each scheme from its backends, with its
// counters (r.Metrics) and, for TLS, its per-ALPN pools.
func (b *tableBuilder) pools(r *RouteSpec, byScheme [schemeLast + 1][]*Backend, rs *RouteStatsSet) [schemeLast + 1]*Pool {
	var pools [schemeLast + 1]*Pool
	for s := SchemeHTTP; s <= schemeLast; s++ {
		if len(byScheme[s]) == 0 {
			continue
		}
		p := newPool(r.Name, r.Balance, byScheme[s], maxSeq)
		p.Stats = rs.forRoute(r.Name, r.Metrics)
		p.Reuse = r.Reuse
		if s == SchemeTLS {
			b.withALPN(p, *r, r.Name)
		}
		pools[s] = p
	}
	return pools
}

// cloneALPN deep-copies a route's ALPN entries for the table's RouteSpec.
func cloneALPN(alpn []ALPNRoute) []ALPNRoute {
	if alpn == nil {
		return nil
	}
	out := make([]ALPNRoute, len(alpn))
	for i, a := range alpn {
		out[i] = ALPNRoute{Protocol: a.Protocol, Backends: slices.Clone(a.Backends)}
	}
	return out
}

package config

import (
	"fmt"

	"gopkg.in/yaml.v3"

	"github.com/portier/portier/balancer"
)

// alpn reads a long-form route's `alpn: {acme-tls/1: [tls://...], h2: [...]}`:
// TLS clients that offer one of these protocols go to its backends.
func (p *parser) alpn(n *yaml.Node, path string, r *balancer.RouteSpec) error {
	if n.Kind != yaml.MappingNode {
		return p.errorf(n, path, "want a mapping of ALPN protocol to tls:// backend URLs, got %s", kindName(n))
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!null" {
			return p.errorf(k, path, "want an ALPN protocol ID, got %s", kindName(k))
		}
		proto := k.Value
		kp := fmt.Sprintf("%s[%q]", path, proto)
		if proto == "" || len(proto) > balancer.MaxALPNLen {
			return p.errorf(k, kp, "an ALPN protocol ID has 1 to %d bytes", balancer.MaxALPNLen)
		}
		if first, dup := seen[proto]; dup {
			return p.errorf(k, kp, "duplicate protocol (first at line %d)", first)
		}
		seen[proto] = k.Line
		if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
			return p.errorf(v, kp, "want a list of tls:// backend URLs, got %s", kindName(v))
		}
		a := balancer.ALPNRoute{Protocol: proto}
		for j, item := range v.Content {
			item = deref(item)
			ipath := fmt.Sprintf("%s[%d]", kp, j)
			raw, err := p.str(item, ipath)
			if err != nil {
				return err
			}
			spec, err := balancer.ParseBackend(raw)
			if err != nil {
				return p.wrap(item, ipath, err)
			}
			if spec.Scheme != balancer.SchemeTLS {
				return p.errorf(item, ipath, "%q: ALPN routing is for TLS listeners: want a tls:// URL", raw)
			}
			a.Backends = append(a.Backends, raw)
		}
		r.ALPN = append(r.ALPN, a)
	}
	return nil
}

// hasTLSBackend reports whether a backends list names a tls:// URL.
func hasTLSBackend(list *yaml.Node) bool {
	if list.Kind != yaml.SequenceNode {
		return false
	}
	for _, item := range list.Content {
		if spec, err := balancer.ParseBackend(deref(item).Value); err == nil && spec.Scheme == balancer.SchemeTLS {
			return true
		}
	}
	return false
}

package engine

import (
	"github.com/portier/portier/balancer"
	"github.com/portier/portier/parser"
)

// alpnPool returns the pool of route pool p for the first protocol in the
// ClientHello's ALPN list (client preference order) that the route has its
// own pool for, or p itself. Called right after l.hello was parsed;
// allocates nothing.
func (l *loop) alpnPool(p *balancer.Pool) *balancer.Pool {
	list := l.hello.ALPN
	for {
		proto, rest, ok := parser.NextProtocol(list)
		if !ok {
			return p
		}
		if ap := p.ForProtocol(proto); ap != nil {
			return ap
		}
		list = rest
	}
}

package engine

import (
	"net/netip"
	"sync/atomic"

	"github.com/portier/portier/balancer"
)

// ipCounts counts open connections per client address for
// max_connections_per_ip without a lock or a map: a count-min sketch of two
// rows of counters, each address hashed to one counter per row with
// independent hashes. An address's count is the smaller of its two counters,
// which is exact unless both of its counters are shared with other busy
// addresses (then it over-counts, never under-counts). 2 x 64Ki counters use
// 512 KiB whatever the number of clients.
type ipCounts struct {
	rows [2][1 << 16]atomic.Int32
}

func ipSlots(a netip.Addr) (uint32, uint32) {
	h := balancer.HashAddr(a)
	return uint32(h) & 0xffff, uint32(h>>32) & 0xffff
}

// acquire counts one more connection from a unless that would exceed limit.
func (s *ipCounts) acquire(a netip.Addr, limit int32) bool {
	i, j := ipSlots(a)
	if min(s.rows[0][i].Load(), s.rows[1][j].Load()) >= limit {
		return false
	}
	s.rows[0][i].Add(1)
	s.rows[1][j].Add(1)
	return true
}

func (s *ipCounts) release(a netip.Addr) {
	i, j := ipSlots(a)
	s.rows[0][i].Add(-1)
	s.rows[1][j].Add(-1)
}

// admit applies the connection limits to a client whose address is known
// (after its PROXY header, on listeners that take one). It reports false when
// the client was refused.
func (l *loop) admit(c *conn) bool {
	o := &l.e.opts
	if o.MaxConnections > 0 && l.e.stats.Open.Load() > int64(o.MaxConnections) {
		l.e.stats.Limited[LimitTotal].Add(1)
		l.reject(c, rejLimit, nil, errMaxConnections)
		return false
	}
	if o.MaxConnectionsPerIP > 0 {
		if !l.e.perIP.acquire(c.remote.Addr().Unmap(), int32(o.MaxConnectionsPerIP)) {
			l.e.stats.Limited[LimitPerIP].Add(1)
			l.reject(c, rejLimit, nil, errMaxPerIP)
			return false
		}
		c.flags |= fCounted
	}
	return true
}

type limitError string

func (e limitError) Error() string { return string(e) }

const (
	errMaxConnections = limitError("max_connections reached")
	errMaxPerIP       = limitError("max_connections_per_ip reached for this client address")
)

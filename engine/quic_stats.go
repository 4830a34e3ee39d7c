package engine

import (
	"sync"
	"sync/atomic"
)

// QUICDrop is why a client datagram was dropped.
type QUICDrop uint8

// QUIC drop reasons.
const (
	QUICDropNotInitial QUICDrop = iota // no flow, and not an Initial (a lost flow's short-header packets, junk)
	QUICDropVersion                    // an Initial of a version portier cannot read
	QUICDropMalformed                  // an Initial that does not decrypt or parse, or a malformed ClientHello
	QUICDropTooLarge                   // ClientHello over max_header_bytes
	QUICDropIncomplete                 // the ClientHello was not complete within the answer timeout
	QUICDropLimit                      // max_flows or max_flows_per_ip
	QUICDropNoBackend                  // no backend usable
	QUICDropSendFailed                 // a socket buffer was full (or another send error)
	QUICDropDraining                   // a new flow while shutting down
	NumQUICDrops
)

var quicDropNames = [NumQUICDrops]string{"not_initial", "version", "malformed", "too_large", "incomplete",
	"limit", "no_backend", "send_failed", "draining"}

func (d QUICDrop) String() string {
	if d < NumQUICDrops {
		return quicDropNames[d]
	}
	return "unknown"
}

// QUICLoopStats are one loop's QUIC counters; Engine.QUICStats sums them.
// Each loop has its own so that a datagram's counting touches no cache line
// another loop writes.
type QUICLoopStats struct {
	Flows         atomic.Int64 // open flows
	FlowsTotal    atomic.Int64 // flows started
	DatagramsUp   atomic.Int64 // client -> portier
	DatagramsDown atomic.Int64 // portier -> client (backend datagrams and refusals)
	BytesUp       atomic.Int64
	BytesDown     atomic.Int64
	Refused       atomic.Int64 // CONNECTION_CLOSE (unrecognized_name) sent
	Rebinds       atomic.Int64 // flows moved to a client's new address
	SplitHellos   atomic.Int64 // ClientHellos that took two or more datagrams (post-quantum key shares)
	Drops         [NumQUICDrops]atomic.Int64
	Outcomes      [NumOutcomes]atomic.Int64 // flows ended, by outcome
}

// QUICStats is a sum of the loops' QUIC counters.
type QUICStats struct {
	Flows, FlowsTotal, DatagramsUp, DatagramsDown, BytesUp, BytesDown, Refused, Rebinds, SplitHellos int64
	Drops                                                                                            [NumQUICDrops]int64
	Outcomes                                                                                         [NumOutcomes]int64
}

// QUICStats sums the QUIC counters of every loop (zero without quic listeners).
func (e *Engine) QUICStats() QUICStats {
	var s QUICStats
	for _, l := range e.loops {
		q := l.q
		if q == nil {
			continue
		}
		st := &q.stats
		s.Flows += st.Flows.Load()
		s.FlowsTotal += st.FlowsTotal.Load()
		s.DatagramsUp += st.DatagramsUp.Load()
		s.DatagramsDown += st.DatagramsDown.Load()
		s.BytesUp += st.BytesUp.Load()
		s.BytesDown += st.BytesDown.Load()
		s.Refused += st.Refused.Load()
		s.Rebinds += st.Rebinds.Load()
		s.SplitHellos += st.SplitHellos.Load()
		for i := range st.Drops {
			s.Drops[i] += st.Drops[i].Load()
		}
		for i := range st.Outcomes {
			s.Outcomes[i] += st.Outcomes[i].Load()
		}
	}
	return s
}

// engineQUIC is the engine-wide QUIC state.
type engineQUIC struct {
	open  atomic.Int64 // flows open on all loops (max_flows)
	perIP *ipCounts    // nil without max_flows_per_ip
	// cids maps every learned server connection ID (string) to the loop
	// whose flow owns it: a rebound client's new 4-tuple may hash to another
	// loop (SO_REUSEPORT), which hands its datagrams over.
	cids    sync.Map
	cidLens atomic.Uint32 // bit n: some learned CID has n bytes
}

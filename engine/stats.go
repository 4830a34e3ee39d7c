package engine

import (
	"sync/atomic"
	"time"
)

// Stats are engine-wide counters, updated atomically by the loops and read by
// the metrics collector at scrape time (nothing is exported on the hot path).
type Stats struct {
	Accepted  atomic.Int64 // connections accepted
	Open      atomic.Int64 // client connections currently open
	Rejected  atomic.Int64 // answered with an error status or alert
	Forwarded atomic.Int64 // paired with a backend

	// Listeners holds per-listener counters, in Options.Listeners order.
	Listeners []ListenerStats
	// Rejects counts rejected connections by reason.
	Rejects [NumReasons]atomic.Int64
	// ConnectFailures counts failed backend connect attempts (each retry counts).
	ConnectFailures atomic.Int64
	// ConnectLatency observes successful backend connects.
	ConnectLatency Histogram
	// Limited counts connections refused by a connection limit.
	Limited [NumLimits]atomic.Int64

	// The backend keep-alive pool.
	BackendConnects atomic.Int64 // new backend connections opened (connects started)
	PoolIdle        atomic.Int64 // idle connections in the pools now
	PoolReuses      atomic.Int64 // requests sent over a pooled connection
	PoolMisses      atomic.Int64 // requests that could use a pooled connection and found none
	PoolRetries     atomic.Int64 // requests resent over a new connection after a pooled one died before answering

	// Spliced counts bytes forwarded with splice(2), never copied to user
	// space (bulk.go); they are also in the listeners' byte counts.
	Spliced atomic.Int64
}

// ListenerStats are one listener's counters.
type ListenerStats struct {
	Name      string
	Accepted  atomic.Int64
	Open      atomic.Int64
	Requests  atomic.Int64              // HTTP request heads forwarded
	Outcomes  [NumOutcomes]atomic.Int64 // connections ended, by outcome
	BytesUp   atomic.Int64              // client -> backend, added when a connection ends
	BytesDown atomic.Int64              // backend -> client, added when a connection ends
}

// Outcome is how a client connection ended.
type Outcome uint8

// Outcomes.
const (
	OutcomeForwarded   Outcome = iota // paired with a backend, then closed by either side
	OutcomeRejected                   // answered with an error status or TLS alert
	OutcomeClosedEarly                // the client left before naming a route
	OutcomeIdleTimeout                // no byte either way within the idle timeout
	OutcomeShutdown                   // closed by portier stopping
	NumOutcomes
)

var outcomeNames = [NumOutcomes]string{"forwarded", "rejected", "closed_early", "idle_timeout", "shutdown"}

func (o Outcome) String() string {
	if o < NumOutcomes {
		return outcomeNames[o]
	}
	return "unknown"
}

// Reason is why a connection was rejected.
type Reason uint8

// Rejection reasons.
const (
	ReasonUnknownName    Reason = iota // no route for the name
	ReasonNoName                       // no Host/SNI and no default route
	ReasonNoBackend                    // every backend tried failed, or none usable
	ReasonMalformed                    // unparsable request head or ClientHello
	ReasonNotProtocol                  // bytes of another protocol
	ReasonPlainHTTPOnTLS               // HTTP sent to a TLS listener
	ReasonTooLarge                     // head or ClientHello over max_header_bytes
	ReasonTimeout                      // handshake timeout
	ReasonTruncated                    // client closed mid head/ClientHello
	ReasonProxyHeader                  // missing, malformed or untrusted PROXY header
	ReasonBadFraming                   // request smuggling defences (CL+TE, bad chunk size, ...)
	ReasonLimit                        // a connection limit was hit
	NumReasons
)

var reasonNames = [NumReasons]string{"unknown_name", "no_name", "no_backend", "malformed", "not_protocol",
	"plain_http_on_tls", "too_large", "timeout", "truncated", "proxy_header", "bad_framing", "limit"}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Limit names a connection limit.
type Limit uint8

// Limits.
const (
	LimitTotal Limit = iota // max_connections
	LimitPerIP              // max_connections_per_ip
	NumLimits
)

var limitNames = [NumLimits]string{"max_connections", "max_connections_per_ip"}

func (l Limit) String() string {
	if l < NumLimits {
		return limitNames[l]
	}
	return "unknown"
}

// LatencyBounds are the upper bounds, in seconds, of ConnectLatency's buckets.
var LatencyBounds = [...]float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// Histogram is a fixed-bucket latency histogram updated with atomics only.
type Histogram struct {
	counts [len(LatencyBounds) + 1]atomic.Uint64 // last: above every bound
	sumNs  atomic.Int64
}

// Observe records one duration.
func (h *Histogram) Observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(LatencyBounds) && s > LatencyBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(int64(d))
}

// Snapshot returns the total count, the sum in seconds and the cumulative
// count per upper bound, as prometheus.MustNewConstHistogram takes them.
func (h *Histogram) Snapshot() (count uint64, sum float64, buckets map[float64]uint64) {
	buckets = make(map[float64]uint64, len(LatencyBounds))
	for i, b := range LatencyBounds {
		count += h.counts[i].Load()
		buckets[b] = count
	}
	count += h.counts[len(LatencyBounds)].Load()
	return count, float64(h.sumNs.Load()) / 1e9, buckets
}

// epoch anchors nanotime to the monotonic clock.
var epoch = time.Now()

// nanotime is monotonic nanoseconds, for latencies.
func nanotime() int64 { return int64(time.Since(epoch)) }

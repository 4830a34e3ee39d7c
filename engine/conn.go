package engine

import (
	"net/netip"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/portier/portier/balancer"
)

// Connection kinds.
const (
	kindListener uint8 = iota + 1
	kindClient
	kindBackend
)

// Connection states.
const (
	stListen     uint8 = iota + 1
	stHandshake        // client: reading first bytes until a name is found
	stWaitPeer         // client: its backend is connecting
	stConnecting       // backend: non-blocking connect in progress
	stForward          // both: bytes flow to the peer
	stLinger           // client: error answer sent, draining input before close
	stPooled           // backend: idle in its loop's keep-alive pool, no client
)

// Connection flags.
const (
	fReadReady  uint32 = 1 << iota // the socket may have bytes (or EOF) to read
	fWriteReady                    // the socket may take more bytes
	fHup                           // the peer closed or errored: read to EOF
	fReadEOF                       // read returned 0
	fWriteShut                     // we shut down our write side
	fQueued                        // in loop.ready
	fProxied                       // client: its PROXY header was consumed
	fTrusted                       // client: its direct peer is in the listener's trusted_proxies
	fCounted                       // client: counted in the per-IP connection counts
	fReplay                        // client: its first bytes may be sent again to another backend
	fExamined                      // client: its first bytes were parsed once (later reads only search for the head's end)
	fOutArmed                      // registered for EPOLLOUT (backends from the start, clients after a short write)
	fConnErr                       // EPOLLERR was reported (a failed connect)
	fFresh                         // client: its request must go over a new backend connection
	fReused                        // backend: taken from the pool for the current request
	fInflight                      // backend: counted in its backend's Active (a request is in flight)
	fBulk                          // source whose last read was large: what need not be seen is spliced (bulk.go)
	fUnwatched                     // client: not in the poller yet (see loop.watch)
)

// conn is one socket: a listener, a client or a backend. Client and backend
// of a pair point at each other through peer.
type conn struct {
	fd    int
	flags uint32
	scan  uint32 // client in its handshake: where the search for the end of the head resumes
	kind  uint8
	state uint8
	list  uint8 // timer list membership
	// gen tells this socket's epoll events from those of an earlier socket
	// with the same descriptor number (see epollToken).
	gen uint16

	peer *conn
	ln   *listener // client and listener: the listener it came from

	remote netip.AddrPort // client: its address (as announced by a trusted PROXY header)
	local  netip.AddrPort // client: the address it connected to (known once needed)

	// first holds a client's bytes until a backend is connected.
	first *bytebufferpool.ByteBuffer
	// pend holds bytes read from the peer that this socket could not take yet;
	// while it is non-empty the peer is not read (flow control).
	pend    []byte
	pendOff int

	// h is the request-framing state of a client of an http listener.
	h *httpConn

	pool    *balancer.Pool
	backend *balancer.Backend // client: its current backend; backend: the backend it connects to (Acquired)
	failed  *balancer.Backend // client: the last backend that failed to connect
	tries   int

	links[conn]       // deadline list membership (list is the id above): prev, next, since
	active      int64 // client: last time a byte moved either way

	bytesUp, bytesDown int64 // client: bytes client->backend and backend->client

	log     *connLog   // client: what the access log reports, when one is kept
	outcome Outcome    // client: how it ended, when not simply forwarded
	reason  *rejection // client: why it was rejected
}

// connLog holds what only the access log needs, so that connections
// without one stay small (a conn fits the 256-byte allocation class).
type connLog struct {
	wall time.Time // accept time
	name string    // the name the client asked for
	alpn string    // its first ALPN protocol
}

// listener is a listening socket's description, shared by the loops.
type listener struct {
	idx  int
	spec ListenerSpec
}

func (c *conn) reset() {
	*c = conn{fd: -1}
}

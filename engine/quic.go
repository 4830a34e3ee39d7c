package engine

import (
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/panjf2000/gnet/v2/pkg/netpoll"
	"golang.org/x/sys/unix"

	"github.com/portier/portier/accesslog"
	"github.com/portier/portier/balancer"
	"github.com/portier/portier/parser"
	"github.com/portier/portier/parser/quic"
)

// QUIC passthrough: a quic listener is one SO_REUSEPORT UDP socket per loop.
// A datagram from an address with no flow must be a client Initial; its
// CRYPTO frames are decrypted (the keys are public) and reassembled until the
// ClientHello names a route. Then the flow gets its own connected UDP socket
// to a backend and every datagram, the held ones first, is forwarded
// unchanged both ways. Nothing is terminated: portier never holds a key that
// the client and backend agree on.

// QUICOptions configures quic listeners. Zero values take the defaults.
type QUICOptions struct {
	MaxFlows      int           // open flows overall (default 100000)
	MaxFlowsPerIP int           // open flows per client address; 0: unlimited
	IdleTimeout   time.Duration // an answered flow with no datagram either way (default 30s)
	// AnswerTimeout: a flow whose backend has not answered (no datagram back)
	// within this fails over to the next backend or ends (default 3s).
	AnswerTimeout time.Duration
}

func (o *QUICOptions) setDefaults() {
	if o.MaxFlows <= 0 {
		o.MaxFlows = 100000
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 30 * time.Second
	}
	if o.AnswerTimeout <= 0 {
		o.AnswerTimeout = 3 * time.Second
	}
}

const (
	maxDatagram       = 64 << 10 // UDP payload limit; the loop's read buffer holds one
	quicReadsPerEvent = 64       // datagrams per wakeup per socket (level-triggered)
	maxHeld           = 8        // datagrams held per flow until its backend answers
	// maxParsing bounds a loop's flows still reassembling a ClientHello: they
	// hold up to max_header_bytes plus maxHeld datagrams each, and a complete
	// first flight leaves this state at once, so only unfinished ones (lost
	// datagrams, or junk made to look like Initials) accumulate here.
	maxParsing  = 4096
	heldBufSize = 1500 // pooled buffer for a held datagram (larger ones are allocated)
	maxFreeAsm  = 64
	maxFreeHeld = 1024
)

// Flow states.
const (
	qParsing     uint8 = iota + 1 // reassembling the ClientHello
	qUnanswered                   // forwarding; the backend has not answered yet
	qEstablished                  // the backend answered
)

type qkey struct {
	ln   int32
	addr netip.AddrPort
}

type qlistener struct {
	idx  int
	fd   int
	spec ListenerSpec
}

// qflow is one client address on one listener.
type qflow struct {
	key   qkey
	ln    *qlistener
	sa    unix.RawSockaddrAny // the client's address, for sendto
	salen uint32
	fd    int // connected socket to the backend; -1 while parsing
	state uint8

	pool    *balancer.Pool
	backend *balancer.Backend
	failed  *balancer.Backend // avoided by the next pick
	tries   int
	asm     *quic.Assembler // while parsing
	held    [][]byte        // client datagrams kept until the backend answers
	cid     string          // server connection ID learned from the backend
	name    string          // SNI, for the access log
	counted bool            // holds a per-IP slot

	start                time.Time
	up, down, dgUp, dgDn int64

	// Deadline list membership (answer list or idle list).
	list uint8
	links[qflow]
}

const (
	qlistNone uint8 = iota
	qlistAnswer
	qlistIdle
)

type qlist = deadlineList[qflow, *qflow]

func (f *qflow) deadlineLinks() (*links[qflow], *uint8) { return &f.links, &f.list }

// quicLoop is a loop's QUIC state; only the loop's goroutine touches it.
type quicLoop struct {
	lns     []*qlistener
	socks   []qsock // indexed by descriptor
	flows   map[qkey]*qflow
	cids    map[string]*qflow // server connection IDs -> flow, for NAT rebinding
	cidLens uint32            // bit n set: a learned CID has n bytes
	answer  qlist
	idle    qlist
	parsing int // flows with an Assembler

	asmFree  []*quic.Assembler
	heldFree [][]byte
	scratch  []byte // decrypted copy of a datagram
	out      []byte // CONNECTION_CLOSE being built
	rec      accesslog.Record
	stats    QUICLoopStats
}

type qsock struct {
	ln *qlistener
	f  *qflow
}

func (q *quicLoop) setSock(fd int, s qsock) {
	if fd >= len(q.socks) {
		n := max(2*len(q.socks), 256)
		for n <= fd {
			n *= 2
		}
		grown := make([]qsock, n)
		copy(grown, q.socks)
		q.socks = grown
	}
	q.socks[fd] = s
}

func (l *loop) quicState() *quicLoop {
	if l.q == nil {
		l.q = &quicLoop{
			flows:   make(map[qkey]*qflow),
			cids:    make(map[string]*qflow),
			scratch: make([]byte, maxDatagram),
			answer:  qlist{id: qlistAnswer},
			idle:    qlist{id: qlistIdle},
		}
	}
	return l.q
}

// listenQUIC binds a quic listener's UDP socket on this loop.
func (l *loop) listenQUIC(idx int, spec ListenerSpec, ap netip.AddrPort) (netip.AddrPort, error) {
	fd, bound, err := udpSocket(ap)
	if err != nil {
		return ap, err
	}
	q := l.quicState()
	ln := &qlistener{idx: idx, fd: fd, spec: spec}
	// Level-triggered: a read budget left unspent is reported again.
	if err := l.poller.AddRead(&netpoll.PollAttachment{FD: fd}, false); err != nil {
		_ = unix.Close(fd)
		return ap, err
	}
	q.lns = append(q.lns, ln)
	q.setSock(fd, qsock{ln: ln})
	return bound, nil
}

// quicEvent handles a readiness event on a QUIC socket; false if fd is not one.
func (l *loop) quicEvent(fd int) bool {
	q := l.q
	if q == nil || fd >= len(q.socks) {
		return false
	}
	s := q.socks[fd]
	switch {
	case s.ln != nil:
		l.quicListenerRead(s.ln)
	case s.f != nil:
		l.quicBackendRead(s.f)
	default:
		return false
	}
	return true
}

// quicListenerRead takes client datagrams.
func (l *loop) quicListenerRead(ln *qlistener) {
	q := l.q
	for i := 0; i < quicReadsPerEvent && ln.fd >= 0; i++ {
		n, err := l.recvFrom(ln.fd, l.buf)
		if err != nil {
			return // EAGAIN; ICMP errors on an unconnected socket are not ours
		}
		d := l.buf[:n]
		key := qkey{int32(ln.idx), rawAddrPort(&l.rsa)}
		f := q.flows[key]
		if f == nil {
			f = l.quicRebound(ln, key, d)
		}
		if f == nil && l.quicHandOver(ln, key, d) {
			continue
		}
		if f == nil {
			l.quicNewFlow(ln, key, d)
			continue
		}
		l.quicFromClient(f, d)
	}
}

// quicFromClient handles a datagram of a known flow.
func (l *loop) quicFromClient(f *qflow, d []byte) {
	q := l.q
	f.up += int64(len(d))
	f.dgUp++
	q.stats.DatagramsUp.Add(1)
	q.stats.BytesUp.Add(int64(len(d)))
	switch f.state {
	case qParsing:
		l.quicHold(f, d)
		l.quicFeed(f, d)
	case qUnanswered:
		l.quicHold(f, d)
		l.quicToBackend(f, d)
	case qEstablished:
		if f.since != l.now {
			q.idle.remove(f)
			q.idle.push(f, l.now)
		}
		l.quicToBackend(f, d)
	}
}

func (l *loop) quicToBackend(f *qflow, d []byte) {
	if err := sendConnected(f.fd, d); err != nil {
		if err == unix.ECONNREFUSED {
			l.quicBackendGone(f, err)
			return
		}
		l.q.stats.Drops[QUICDropSendFailed].Add(1)
	}
}

// quicRebound finds the flow of a client whose address changed (NAT
// rebinding) by the server connection ID its datagram is addressed to, and
// moves the flow to the new address.
func (l *loop) quicRebound(ln *qlistener, key qkey, d []byte) *qflow {
	q := l.q
	if q.cidLens == 0 || len(d) == 0 {
		return nil
	}
	var f *qflow
	if quic.IsLongHeader(d) {
		if len(d) < 6 || int(d[5]) > quic.MaxCIDLen || len(d) < 6+int(d[5]) {
			return nil
		}
		f = q.cids[string(d[6:6+int(d[5])])]
	} else {
		for n := 1; n <= quic.MaxCIDLen && f == nil; n++ {
			if q.cidLens&(1<<n) != 0 && len(d) > n {
				f = q.cids[string(d[1:1+n])]
			}
		}
	}
	if f == nil || f.ln != ln || f.state != qEstablished {
		return nil
	}
	delete(q.flows, f.key)
	f.key = key
	f.sa, f.salen = l.rsa, l.rsaLen
	q.flows[key] = f
	q.stats.Rebinds.Add(1)
	return f
}

// quicNewFlow starts a flow for an unknown client address if d is an
// Initial; anything else is dropped and counted.
func (l *loop) quicNewFlow(ln *qlistener, key qkey, d []byte) {
	q := l.q
	q.stats.DatagramsUp.Add(1)
	q.stats.BytesUp.Add(int64(len(d)))
	if l.e.draining.Load() {
		// Shutdown keeps quic listeners open, since the flows' datagrams
		// arrive on them, but starts no flow: with SO_REUSEPORT a new
		// process bound to the port gets a share of new clients only.
		q.stats.Drops[QUICDropDraining].Add(1)
		return
	}
	var h quic.Header
	if err := quic.ParseLongHeader(d, &h); err != nil || h.Type != quic.TypeInitial || !quic.Supported(h.Version) {
		if err == nil && !quic.Supported(h.Version) {
			q.stats.Drops[QUICDropVersion].Add(1)
		} else {
			q.stats.Drops[QUICDropNotInitial].Add(1)
		}
		return
	}
	if len(d) < quic.MinInitialDatagram {
		q.stats.Drops[QUICDropMalformed].Add(1)
		return
	}
	o := &l.e.opts.QUIC
	if l.e.q.open.Load() >= int64(o.MaxFlows) {
		q.stats.Drops[QUICDropLimit].Add(1)
		return
	}
	if q.parsing >= maxParsing {
		q.stats.Drops[QUICDropLimit].Add(1)
		return
	}
	counted := false
	if o.MaxFlowsPerIP > 0 {
		if !l.e.q.perIP.acquire(key.addr.Addr(), int32(o.MaxFlowsPerIP)) {
			q.stats.Drops[QUICDropLimit].Add(1)
			return
		}
		counted = true
	}
	f := &qflow{key: key, ln: ln, sa: l.rsa, salen: l.rsaLen, fd: -1, state: qParsing,
		counted: counted, start: time.Now()}
	f.up, f.dgUp = int64(len(d)), 1
	if n := len(q.asmFree); n > 0 {
		f.asm = q.asmFree[n-1]
		q.asmFree = q.asmFree[:n-1]
	} else {
		f.asm = new(quic.Assembler)
	}
	q.parsing++
	f.asm.Reset(l.e.opts.MaxHeaderBytes)
	q.flows[key] = f
	l.e.q.open.Add(1)
	q.stats.Flows.Add(1)
	q.stats.FlowsTotal.Add(1)
	// Parsing flows share the answer deadline: a client that never completes
	// its ClientHello is forgotten as fast as an unanswered one.
	q.answer.push(f, l.now)
	l.quicHold(f, d)
	l.quicFeed(f, d)
}

// quicHold keeps a copy of d until the backend answers, for the backend and
// for a failover.
func (l *loop) quicHold(f *qflow, d []byte) {
	if len(f.held) >= maxHeld {
		return
	}
	var b []byte
	if n := len(l.q.heldFree); n > 0 && len(d) <= heldBufSize {
		b = l.q.heldFree[n-1][:0]
		l.q.heldFree = l.q.heldFree[:n-1]
	} else {
		b = make([]byte, 0, max(len(d), heldBufSize))
	}
	f.held = append(f.held, append(b, d...))
}

func (l *loop) quicReleaseHeld(f *qflow) {
	for i, b := range f.held {
		if cap(b) == heldBufSize && len(l.q.heldFree) < maxFreeHeld {
			l.q.heldFree = append(l.q.heldFree, b[:0])
		}
		f.held[i] = nil
	}
	f.held = f.held[:0]
}

// quicReleaseAsm returns f's Assembler to the loop's pool once its
// ClientHello is parsed or the flow ends.
func (l *loop) quicReleaseAsm(f *qflow) {
	if f.asm == nil {
		return
	}
	q := l.q
	q.parsing--
	if len(q.asmFree) < maxFreeAsm {
		q.asmFree = append(q.asmFree, f.asm)
	}
	f.asm = nil
}

// quicFeed adds a datagram to the ClientHello and routes the flow once it is complete.
func (l *loop) quicFeed(f *qflow, d []byte) {
	q := l.q
	err := f.asm.Feed(d, q.scratch)
	if errors.Is(err, quic.ErrNeedMore) {
		return
	}
	if err != nil && f.asm.Version() != 0 && !fatalInitialError(err) {
		// Once a good Initial started the flow, a datagram that is not one
		// (reordered 0-RTT, a spoofed packet) must not end it.
		q.stats.Drops[QUICDropMalformed].Add(1)
		return
	}
	if err != nil {
		reason := QUICDropMalformed
		if errors.Is(err, quic.ErrTooLong) {
			reason = QUICDropTooLarge
		}
		q.stats.Drops[reason].Add(1)
		l.quicEnd(f, OutcomeRejected, reasonForDrop(reason), err)
		return
	}
	if err := parser.ParseClientHelloMessage(f.asm.ClientHello(), l.e.opts.MaxHeaderBytes, &l.hello); err != nil {
		q.stats.Drops[QUICDropMalformed].Add(1)
		l.quicEnd(f, OutcomeRejected, ReasonMalformed, err)
		return
	}
	if l.hello.ServerName != nil {
		f.name = string(l.hello.ServerName)
	}
	if f.dgUp >= 2 {
		q.stats.SplitHellos.Add(1)
	}
	pool := l.e.opts.Router.Load().Lookup(balancer.SchemeQUIC, l.hello.ServerName)
	if pool == nil {
		reason := ReasonUnknownName
		if l.hello.ServerName == nil {
			reason = ReasonNoName
		}
		l.quicRefuse(f)
		l.quicEnd(f, OutcomeRejected, reason, nil)
		return
	}
	f.pool = pool
	l.quicConnect(f)
}

// quicRefuse answers the client with a server Initial carrying
// CONNECTION_CLOSE with TLS alert 112 (unrecognized_name), so it fails at
// once instead of retransmitting until its handshake timeout.
func (l *loop) quicRefuse(f *qflow) {
	q := l.q
	a := f.asm
	out, err := quic.AppendClose(q.out[:0], a.Version(), a.DCID(), a.SCID(),
		quic.CryptoError(quic.AlertUnrecognizedName), 0x06, "unrecognized_name: portier has no route for this server name")
	q.out = out[:0]
	if err != nil {
		return
	}
	if err := sendTo(f.ln.fd, out, &f.sa, f.salen); err == nil {
		q.stats.Refused.Add(1)
		q.stats.DatagramsDown.Add(1)
		q.stats.BytesDown.Add(int64(len(out)))
		f.down += int64(len(out))
	}
}

// quicConnect picks a backend for f (avoiding the one that failed), creates
// its socket and sends the held datagrams.
func (l *loop) quicConnect(f *qflow) {
	q := l.q
	var hash uint64
	if f.pool.Algorithm == balancer.SourceHash {
		hash = balancer.HashAddr(f.key.addr.Addr())
	}
	l.quicReleaseAsm(f)
	for f.tries <= l.e.opts.Retries {
		b := f.pool.Pick(hash, f.failed)
		if b == nil {
			break
		}
		f.tries++
		fd, err := l.quicBackendSocket(b, f.key.addr)
		if err == nil {
			l.pa.FD = fd
			if err = l.poller.AddRead(&l.pa, false); err != nil {
				sysClose(fd)
			}
		}
		if err == unix.EMFILE || err == unix.ENFILE || err == unix.ENOBUFS || err == unix.ENOMEM {
			// Out of descriptors or memory here: not the backend's fault.
			l.e.opts.Logger.Warn("quic flow not started: out of resources", "client", f.key.addr, "err", err)
			q.stats.Drops[QUICDropLimit].Add(1)
			l.quicEnd(f, OutcomeRejected, ReasonLimit, err)
			return
		}
		if err != nil {
			l.quicBackendFailed(f, b, err)
			continue
		}
		f.fd, f.backend, f.state = fd, b, qUnanswered
		b.Acquire()
		q.setSock(fd, qsock{f: f})
		if f.list != qlistNone {
			q.answer.remove(f)
		}
		q.answer.push(f, l.now)
		for _, d := range f.held {
			if err := sendConnected(fd, d); err == unix.ECONNREFUSED {
				l.quicBackendGone(f, err)
				return
			}
		}
		return
	}
	q.stats.Drops[QUICDropNoBackend].Add(1)
	l.quicEnd(f, OutcomeRejected, ReasonNoBackend, nil)
}

func (l *loop) quicBackendFailed(f *qflow, b *balancer.Backend, err error) {
	l.e.stats.ConnectFailures.Add(1)
	if !isSourceError(err) { // the host's setup, not the backend's health
		b.ConnectFailed()
	}
	f.failed = b
	e := l.event(slog.LevelWarn, kindBackendFailed, "quic backend failed")
	e.Client, e.Route, e.Backend, e.Err = f.key.addr, f.pool.Name, b.AddrText, err
	l.logEvent()
}

// quicBackendGone handles a backend that is unreachable (ICMP port
// unreachable) or silent: before it answered, the flow fails over to the
// next backend with the held datagrams; after, the flow ends.
func (l *loop) quicBackendGone(f *qflow, err error) {
	b := f.backend
	l.quicCloseBackend(f)
	if f.state == qUnanswered {
		l.quicBackendFailed(f, b, err)
		l.quicConnect(f)
		return
	}
	l.quicEnd(f, OutcomeForwarded, 0, err)
}

func (l *loop) quicCloseBackend(f *qflow) {
	if f.fd >= 0 {
		l.q.socks[f.fd] = qsock{}
		sysClose(f.fd)
		f.fd = -1
	}
	if f.backend != nil {
		f.backend.Release()
		f.backend = nil
	}
}

// quicBackendRead forwards a backend's datagrams to its client.
func (l *loop) quicBackendRead(f *qflow) {
	q := l.q
	for i := 0; i < quicReadsPerEvent && f.fd >= 0; i++ {
		n, err := sysRead(f.fd, l.buf)
		if err != nil {
			if err == unix.ECONNREFUSED {
				l.quicBackendGone(f, err)
			}
			return
		}
		if n == 0 {
			continue // an empty datagram is not QUIC
		}
		d := l.buf[:n]
		if f.state == qUnanswered {
			f.state = qEstablished
			f.backend.ConnectSucceeded()
			l.quicReleaseHeld(f)
			q.answer.remove(f)
			q.idle.push(f, l.now)
		} else if f.since != l.now {
			q.idle.remove(f)
			q.idle.push(f, l.now)
		}
		if f.cid == "" && quic.IsLongHeader(d) {
			l.quicLearnCID(f, d)
		}
		f.down += int64(n)
		f.dgDn++
		q.stats.DatagramsDown.Add(1)
		q.stats.BytesDown.Add(int64(n))
		if err := sendTo(f.ln.fd, d, &f.sa, f.salen); err != nil {
			q.stats.Drops[QUICDropSendFailed].Add(1)
		}
	}
}

// quicLearnCID remembers the connection ID the backend chose (the Source
// Connection ID of its long-header packets), which the client puts in every
// later packet: a client that reappears from another address is recognised.
func (l *loop) quicLearnCID(f *qflow, d []byte) {
	var h quic.Header
	if err := quic.ParseLongHeader(d, &h); err != nil || len(h.SCID) == 0 || !quic.Supported(h.Version) {
		return
	}
	q := l.q
	f.cid = string(h.SCID)
	if old := q.cids[f.cid]; old != nil && old != f {
		old.cid = ""
	}
	q.cids[f.cid] = f
	q.cidLens |= 1 << len(h.SCID)
	l.e.q.cids.Store(f.cid, l)
	for {
		lens := l.e.q.cidLens.Load()
		if lens&(1<<len(h.SCID)) != 0 || l.e.q.cidLens.CompareAndSwap(lens, lens|1<<len(h.SCID)) {
			break
		}
	}
}

// quicHandOver passes a short-header datagram from an unknown address to
// the loop that owns the flow of the server connection ID it names, when
// that is another loop (a rebound client's new 4-tuple hashed elsewhere).
// It copies the datagram: a rare path, allowed to allocate.
func (l *loop) quicHandOver(ln *qlistener, key qkey, d []byte) bool {
	lens := l.e.q.cidLens.Load()
	if lens == 0 || len(d) == 0 || quic.IsLongHeader(d) {
		return false
	}
	for n := 1; n <= quic.MaxCIDLen; n++ {
		if lens&(1<<n) == 0 || len(d) <= n {
			continue
		}
		v, ok := l.e.q.cids.Load(string(d[1 : 1+n]))
		if !ok || v.(*loop) == l {
			continue
		}
		owner := v.(*loop)
		dd := append([]byte(nil), d...)
		sa, salen, idx := l.rsa, l.rsaLen, ln.idx
		owner.trigger(func(any) error {
			owner.quicForeign(idx, key, sa, salen, dd)
			return nil
		})
		return true
	}
	return false
}

// quicForeign takes a datagram another loop received for one of this
// loop's flows (see quicHandOver).
func (l *loop) quicForeign(idx int, key qkey, sa unix.RawSockaddrAny, salen uint32, d []byte) {
	q := l.q
	if q == nil {
		return
	}
	f := q.flows[key]
	if f == nil {
		var ln *qlistener
		for _, x := range q.lns {
			if x.idx == idx {
				ln = x
			}
		}
		if ln == nil || ln.fd < 0 {
			return
		}
		l.rsa, l.rsaLen = sa, salen
		if f = l.quicRebound(ln, key, d); f == nil {
			q.stats.Drops[QUICDropNotInitial].Add(1)
			return
		}
	}
	l.quicFromClient(f, d)
}

// quicEnd removes f, closes its backend socket and logs it.
func (l *loop) quicEnd(f *qflow, outcome Outcome, reason Reason, err error) {
	q := l.q
	if q.flows[f.key] != f {
		return // already ended
	}
	delete(q.flows, f.key)
	if f.cid != "" && q.cids[f.cid] == f {
		delete(q.cids, f.cid)
		l.e.q.cids.CompareAndDelete(f.cid, l)
	}
	if f.list == qlistAnswer {
		q.answer.remove(f)
	} else if f.list == qlistIdle {
		q.idle.remove(f)
	}
	backend := ""
	if f.backend != nil {
		backend = f.backend.Addr.String()
	}
	l.quicCloseBackend(f)
	l.quicReleaseHeld(f)
	l.quicReleaseAsm(f)
	if f.counted {
		l.e.q.perIP.release(f.key.addr.Addr())
	}
	l.e.q.open.Add(-1)
	q.stats.Flows.Add(-1)
	q.stats.Outcomes[outcome].Add(1)
	if outcome == OutcomeRejected {
		l.e.stats.Rejects[reason].Add(1)
	}
	if outcome == OutcomeRejected {
		e := l.event(slog.LevelWarn, uint8(reason), "rejected")
		e.Listener, e.Client, e.Reason, e.Detail = f.ln.spec.Name, f.key.addr, reason.String(), err
		if f.name != "" {
			e.SetName([]byte(f.name))
		}
		l.logEvent()
	}
	if l.alog != nil {
		r := &q.rec
		*r = accesslog.Record{Start: f.start, Duration: time.Since(f.start), Listener: f.ln.spec.Name,
			Client: f.key.addr, Name: f.name, Backend: backend, BytesUp: f.up, BytesDown: f.down,
			Outcome: outcome.String()}
		if outcome == OutcomeRejected {
			r.Reason = reason.String()
		}
		l.alog.Log(r)
	}
}

// quicSweep expires flows; called every tick.
func (l *loop) quicSweep() {
	q := l.q
	if q == nil {
		return
	}
	o := &l.e.opts.QUIC
	for f := q.answer.head; f != nil && l.now-f.since >= int64(o.AnswerTimeout); f = q.answer.head {
		if f.state == qUnanswered {
			l.quicBackendGone(f, errNoAnswer)
		} else {
			q.stats.Drops[QUICDropIncomplete].Add(1)
			l.quicEnd(f, OutcomeRejected, ReasonTimeout, nil)
		}
	}
	for f := q.idle.head; f != nil && l.now-f.since >= int64(o.IdleTimeout); f = q.idle.head {
		l.quicEnd(f, OutcomeIdleTimeout, 0, nil)
	}
}

var errNoAnswer = errors.New("backend did not answer")

// quicCloseAll ends every flow and closes the listeners.
func (l *loop) quicCloseAll() {
	q := l.q
	if q == nil {
		return
	}
	for _, f := range q.flows {
		l.quicEnd(f, OutcomeShutdown, 0, nil)
	}
	for _, ln := range q.lns {
		if ln.fd >= 0 {
			q.socks[ln.fd] = qsock{}
			_ = unix.Close(ln.fd)
			ln.fd = -1
		}
	}
}

// reasonForDrop maps a drop of a new flow to the rejection reason counted
// beside the TCP listeners'.
func reasonForDrop(d QUICDrop) Reason {
	if d == QUICDropTooLarge {
		return ReasonTooLarge
	}
	return ReasonMalformed
}

// fatalInitialError reports whether err condemns the ClientHello itself
// rather than one datagram.
func fatalInitialError(err error) bool {
	return errors.Is(err, quic.ErrTooLong) || errors.Is(err, quic.ErrFragmented) ||
		errors.Is(err, quic.ErrNotHello) || errors.Is(err, quic.ErrFrame) || errors.Is(err, quic.ErrFrameType)
}

package parser

import (
	"bytes"
	"errors"
	"math"
)

// Request framing: RequestFramer follows the client->backend byte stream of one
// HTTP/1.x connection and splits it into request heads (which the engine
// rewrites to add forwarding headers), body bytes (forwarded verbatim) and, after
// an Upgrade request, an opaque tunnel. It only keeps a few integers across
// calls: bodies are never buffered, and a chunked body is verified as it
// streams past. Every framing ambiguity that enables request smuggling is
// rejected rather than resolved (RFC 9112 sections 6 and 7, RFC 9110 8.6).

// ErrTooLarge is the class of errors for input exceeding a size limit (the
// engine answers 431 rather than 400). It is not ErrMalformed.
var ErrTooLarge = errors.New("parser: too large")

// ErrFraming is the class of malformed requests whose message length is
// ambiguous or invalid (Content-Length, Transfer-Encoding, chunk framing):
// the request-smuggling defences. Such errors are also ErrMalformed.
var ErrFraming = errors.New("parser: ambiguous or invalid message framing")

// frameError is a preallocated specific request error; errors.Is reaches its
// class (ErrMalformed, ErrTooLarge or ErrNotThisProtocol) through Unwrap, and
// ErrFraming through Is for the framing ones.
type frameError struct {
	kind    error
	msg     string
	framing bool
}

func (e *frameError) Error() string        { return e.msg }
func (e *frameError) Unwrap() error        { return e.kind }
func (e *frameError) Is(target error) bool { return e.framing && target == ErrFraming }
func frameMalformed(msg string) error      { return &frameError{kind: ErrMalformed, msg: msg} }
func frameFramingError(msg string) error {
	return &frameError{kind: ErrMalformed, msg: msg, framing: true}
}

// ErrHeadTooLarge: the request head does not end within maxHead bytes.
var ErrHeadTooLarge error = &frameError{kind: ErrTooLarge, msg: "frame request: head exceeds the size limit"}

var (
	frameErrTrailersTooLarge = &frameError{kind: ErrTooLarge, msg: "frame request: chunked trailer section exceeds 4 KiB"}

	frameErrLeadingLines   = frameMalformed("frame request: too many empty lines before the request line")
	frameErrConnect        = frameMalformed("frame request: CONNECT not supported")
	frameErrRequestLine    = frameMalformed("frame request: request line is not 'method SP target SP version'")
	frameErrTargetChar     = frameMalformed("frame request: invalid character in request-target")
	frameErrTarget         = frameMalformed("frame request: invalid request-target form")
	frameErrAbsHost        = frameMalformed("frame request: absolute-form target without a valid host")
	frameErrVersion        = frameMalformed("frame request: version is not HTTP/1.x")
	frameErrBareLF         = frameMalformed("frame request: bare LF")
	frameErrCRNoLF         = frameMalformed("frame request: CR not followed by LF")
	frameErrNUL            = frameMalformed("frame request: NUL byte")
	frameErrObsFold        = frameMalformed("frame request: obsolete line folding or whitespace before the first header")
	frameErrHeaderName     = frameMalformed("frame request: invalid header name")
	frameErrSpaceColon     = frameMalformed("frame request: whitespace between header name and colon")
	frameErrHeaderValue    = frameMalformed("frame request: invalid character in header value")
	frameErrDupHost        = frameMalformed("frame request: more than one Host header")
	frameErrNoHost         = frameMalformed("frame request: HTTP/1.1 request without Host")
	frameErrHostChar       = frameMalformed("frame request: invalid Host")
	frameErrCLValue        = frameFramingError("frame request: Content-Length is not a decimal number")
	frameErrCLOverflow     = frameFramingError("frame request: Content-Length overflows")
	frameErrCLDiffer       = frameFramingError("frame request: differing Content-Length values")
	frameErrCLAndTE        = frameFramingError("frame request: both Content-Length and Transfer-Encoding")
	frameErrTE10           = frameFramingError("frame request: Transfer-Encoding in an HTTP/1.0 request")
	frameErrTEValue        = frameFramingError("frame request: Transfer-Encoding is not a list of codings")
	frameErrTENotChunked   = frameFramingError("frame request: Transfer-Encoding does not end with chunked")
	frameErrTooManyDrop    = frameMalformed("frame request: more than 8 forwarding headers")
	frameErrDupXFF         = frameMalformed("frame request: more than one X-Forwarded-For header")
	frameErrDupForwarded   = frameMalformed("frame request: more than one Forwarded header")
	frameErrChunkSize      = frameFramingError("frame request: chunk size is not hexadecimal")
	frameErrChunkSizeLong  = frameFramingError("frame request: chunk size longer than 16 hex digits or above 2^63-1")
	frameErrChunkExt       = frameFramingError("frame request: invalid chunk extension")
	frameErrChunkLineLong  = frameFramingError("frame request: chunk size line exceeds 4 KiB")
	frameErrChunkBareLF    = frameFramingError("frame request: bare LF in chunk framing")
	frameErrChunkCRNoLF    = frameFramingError("frame request: CR not followed by LF in chunk framing")
	frameErrChunkDataCRLF  = frameFramingError("frame request: chunk data not followed by CRLF")
	frameErrTrailerLine    = frameFramingError("frame request: malformed trailer field")
	frameErrTrailerObsFold = frameFramingError("frame request: obsolete line folding in trailer")
)

// Step says what the bytes covered by one Next call are.
type Step uint8

const (
	// StepHead: buf[:n] is one complete request head, described in f.Head.
	StepHead Step = iota + 1
	// StepBody: forward buf[:n] verbatim (body bytes, chunk framing, trailers).
	StepBody
	// StepTunnel: the rest of the connection is opaque (after an Upgrade
	// request): forward everything.
	StepTunnel
)

// Body kinds of FramedHead.BodyKind.
const (
	BodyNone    uint8 = iota // no body (RFC 9112 6.3: no Content-Length, no Transfer-Encoding)
	BodyLength               // Content-Length bytes (possibly 0)
	BodyChunked              // chunked transfer coding
)

// Kinds of forwarding header lines in FramedHead.DropKind.
const (
	FwdXFF       uint8 = iota + 1 // X-Forwarded-For
	FwdProto                      // X-Forwarded-Proto
	FwdPort                       // X-Forwarded-Port
	FwdForwarded                  // Forwarded (RFC 7239)
	FwdRealIP                     // X-Real-IP
)

// FrameDefaultMaxHead is the head limit Next uses when maxHead <= 0.
const FrameDefaultMaxHead = 16 << 10

const (
	frameMaxLeadingCRLF = 4       // RFC 9112 2.2: ignore "at least one" empty line before a request
	frameMaxChunkLine   = 4 << 10 // chunk-size line including extensions and CRLF
	frameMaxTrailers    = 4 << 10 // whole trailer section including the final CRLF
	frameMaxDrop        = 8
	// frameMaxMethod: the longest registered methods have 17 bytes
	// (UPDATEREDIRECTREF); a longer token run is not taken for a method.
	frameMaxMethod = 32
)

// FramedHead describes one request head. Slices alias the buffer passed to
// Next and offsets index it; both are valid until that buffer changes.
type FramedHead struct {
	Method, Target []byte
	// Host is the authority of an absolute-form target, else the Host header
	// value (port kept); nil for an HTTP/1.0 request without Host.
	Host  []byte
	Minor int // HTTP/1.<Minor>
	// Start is the index of the request line: buf[:Start] are empty lines
	// (CRLF) a client may send before a request, which the engine may skip.
	Start int
	// HeadersEnd is the index of the final CRLF of the head: new header
	// lines are inserted here.
	HeadersEnd int
	// Drop[:NDrop] are the [start,end) ranges (CRLF included) of the header
	// lines X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Port, Forwarded
	// and X-Real-IP, in order; more than 8 such lines is malformed.
	Drop     [frameMaxDrop][2]int
	DropKind [frameMaxDrop]uint8 // FwdXFF, FwdProto, FwdPort, FwdForwarded or FwdRealIP
	NDrop    int
	// XFF and Forwarded are the [start,end) value ranges (OWS trimmed) of the
	// X-Forwarded-For and Forwarded headers, {0,0} when absent (a present
	// but empty value has start == end > 0). A second X-Forwarded-For or
	// Forwarded line is malformed, so that appending to a trusted list is a
	// single splice.
	XFF, Forwarded [2]int
	Upgrade        bool // HTTP/1.1, Connection: upgrade and a non-empty Upgrade header
	ExpectContinue bool // Expect: 100-continue
	// KeepAlive follows the HTTP/1.0/1.1 defaults and Connection: close /
	// keep-alive. The framer keeps framing bytes after a request without it;
	// closing is the engine's decision.
	KeepAlive     bool
	BodyKind      uint8
	ContentLength int64 // for BodyLength
}

type framePhase uint8

const (
	framePhaseHead framePhase = iota
	framePhaseLength
	framePhaseChunkSize
	framePhaseChunkData
	framePhaseChunkCRLF
	framePhaseTrailer
	framePhaseTunnel
)

// RequestFramer follows the client->backend byte stream of one HTTP/1.x
// connection. The zero value is ready; it is not safe for concurrent use.
type RequestFramer struct {
	// Head describes the head of the latest StepHead.
	Head FramedHead

	phase        framePhase
	tunnelAfter  bool  // the current request is an Upgrade: tunnel after its body
	remaining    int64 // body or chunk-data bytes left
	trailerBytes int   // trailer section bytes seen so far
	err          error // sticky: the stream cannot be resynchronised after an error
}

// Reset prepares f for a new connection.
func (f *RequestFramer) Reset() { *f = RequestFramer{} }

// AtBoundary reports whether the next byte of the stream starts a new
// request, i.e. no request is partially forwarded (for idle-close decisions).
func (f *RequestFramer) AtBoundary() bool { return f.phase == framePhaseHead && f.err == nil }

// Unseen reports how many of the next stream bytes are body data the framer
// need not see: the rest of a Content-Length body or of a chunk's data. A
// caller may move them without reading them (splice(2)) and then Skip them.
func (f *RequestFramer) Unseen() int64 {
	if f.err == nil && (f.phase == framePhaseLength || f.phase == framePhaseChunkData) {
		return f.remaining
	}
	return 0
}

// Skip consumes n bytes, 0 < n <= Unseen(), as Next would have.
func (f *RequestFramer) Skip(n int) {
	f.remaining -= int64(n)
	if f.remaining > 0 {
		return
	}
	if f.phase == framePhaseLength {
		f.endMessage()
	} else {
		f.phase = framePhaseChunkCRLF
	}
}

// Next examines buf, the stream bytes not yet consumed, and returns the next
// step and how many bytes of buf it covers; the caller consumes buf[:n] and
// calls again with what follows. It allocates nothing.
//
// A head is returned whole (StepHead) or not at all: ErrNeedMore with n == 0
// until buf holds a complete head, ErrHeadTooLarge if it does not end within
// maxHead bytes (FrameDefaultMaxHead when maxHead <= 0). Body bytes are
// returned as soon as they are verified: a Content-Length body and chunk data
// in whatever amount buf holds, chunk-size lines and trailer fields only when
// complete (each bounded by 4 KiB, so ErrNeedMore there is bounded too). A
// StepBody never extends past the end of the current message. After an
// Upgrade request (and its body, if any) every byte is StepTunnel.
//
// Errors other than ErrNeedMore are ErrMalformed (400 and close) or
// ErrTooLarge (431 and close) and are sticky. Rejected: both Content-Length
// and Transfer-Encoding; differing Content-Length values (identical repeats,
// in separate lines or as "5, 5", are accepted, RFC 9110 8.6); a
// Content-Length that is not all digits or overflows int64; Transfer-Encoding
// in HTTP/1.0 or not ending in exactly one "chunked"; malformed chunk-size
// lines, chunk data not followed by CRLF, malformed trailers; and in heads NUL,
// bare LF or CR, obs-fold, whitespace before a colon, a second Host, a missing
// Host in HTTP/1.1, and CONNECT. A request without Content-Length and
// Transfer-Encoding has no body (RFC 9112 6.3).
func (f *RequestFramer) Next(buf []byte, maxHead int) (step Step, n int, err error) {
	if f.err != nil {
		return 0, 0, f.err
	}
	switch f.phase {
	case framePhaseHead:
		step, n, err = f.nextHead(buf, maxHead)
	case framePhaseTunnel:
		if len(buf) == 0 {
			return 0, 0, ErrNeedMore
		}
		return StepTunnel, len(buf), nil
	case framePhaseLength:
		if len(buf) == 0 {
			return 0, 0, ErrNeedMore
		}
		n = len(buf)
		if int64(n) > f.remaining {
			n = int(f.remaining)
		}
		f.remaining -= int64(n)
		if f.remaining == 0 {
			f.endMessage()
		}
		return StepBody, n, nil
	default:
		step, n, err = f.nextChunked(buf)
	}
	if err != nil && err != ErrNeedMore {
		f.err = err
	}
	return step, n, err
}

// endMessage moves to the next request, or to the tunnel after an Upgrade.
func (f *RequestFramer) endMessage() {
	if f.tunnelAfter {
		f.phase = framePhaseTunnel
		return
	}
	f.phase = framePhaseHead
}

// nextChunked verifies as much chunked framing as buf holds and covers it with
// one StepBody, stopping at the end of the message. Bytes verified before an
// error are still returned; the error comes with the next call, so it is
// reported at the same stream position however the bytes were segmented.
func (f *RequestFramer) nextChunked(buf []byte) (Step, int, error) {
	off, err := f.chunked(buf)
	if err != nil && err != ErrNeedMore && off == 0 {
		return 0, 0, err
	}
	if off == 0 {
		return 0, 0, ErrNeedMore
	}
	return StepBody, off, nil
}

// chunked advances through buf until it runs out, needs a complete line it
// does not have (ErrNeedMore), hits an error, or ends the message; off is
// what it verified. On error the phase still points at the failing element.
func (f *RequestFramer) chunked(buf []byte) (off int, err error) {
	for off < len(buf) {
		switch f.phase {
		case framePhaseChunkSize:
			l, size, err := frameChunkSizeLine(buf[off:])
			if err != nil {
				return off, err
			}
			off += l
			if size == 0 {
				f.phase, f.trailerBytes = framePhaseTrailer, 0
			} else {
				f.phase, f.remaining = framePhaseChunkData, size
			}
		case framePhaseChunkData:
			k := len(buf) - off
			if int64(k) > f.remaining {
				k = int(f.remaining)
			}
			off += k
			f.remaining -= int64(k)
			if f.remaining == 0 {
				f.phase = framePhaseChunkCRLF
			}
		case framePhaseChunkCRLF:
			if buf[off] != '\r' {
				return off, frameErrChunkDataCRLF
			}
			if off+1 == len(buf) {
				return off, ErrNeedMore
			}
			if buf[off+1] != '\n' {
				return off, frameErrChunkDataCRLF
			}
			off += 2
			f.phase = framePhaseChunkSize
		case framePhaseTrailer:
			l, err := frameTrailerLine(buf[off:], frameMaxTrailers-f.trailerBytes)
			if err != nil {
				return off, err
			}
			off += l
			f.trailerBytes += l
			if l == 2 { // the empty line ending the message
				f.endMessage()
				return off, nil
			}
		}
	}
	return off, nil
}

// frameChunkSizeLine parses "chunk-size *(BWS ; BWS name [BWS = BWS value]) CRLF"
// (RFC 9112 7.1) at the start of b. Bytes are checked as they arrive, so a
// bad line fails at its first bad byte whatever the segmentation.
func frameChunkSizeLine(b []byte) (n int, size int64, err error) {
	lim := min(len(b), frameMaxChunkLine)
	end := func() error { // ran out of bytes at lim
		if len(b) >= frameMaxChunkLine {
			return frameErrChunkLineLong
		}
		return ErrNeedMore
	}
	i := 0
	for ; i < lim; i++ {
		d := frameHex(b[i])
		if d < 0 {
			break
		}
		if i == 16 || size > math.MaxInt64>>4 {
			return 0, 0, frameErrChunkSizeLong
		}
		size = size<<4 | int64(d)
	}
	if i == lim {
		return 0, 0, end()
	}
	switch c := b[i]; {
	case i == 0:
		return 0, 0, frameErrChunkSize
	case c != ' ' && c != '\t' && c != ';' && c != '\r' && c != '\n':
		return 0, 0, frameErrChunkSize // e.g. "5g" or "0x5"
	}
	for {
		bws := i
		for i < lim && (b[i] == ' ' || b[i] == '\t') {
			i++
		}
		if i == lim {
			return 0, 0, end()
		}
		switch c := b[i]; {
		case c == '\r':
			if i > bws {
				return 0, 0, frameErrChunkExt // whitespace only before ';'
			}
			if i+1 == lim {
				return 0, 0, end()
			}
			if b[i+1] != '\n' {
				return 0, 0, frameErrChunkCRNoLF
			}
			return i + 2, size, nil
		case c == '\n':
			return 0, 0, frameErrChunkBareLF
		case c != ';':
			return 0, 0, frameErrChunkExt
		}
		// chunk-ext-name
		i++
		for i < lim && (b[i] == ' ' || b[i] == '\t') {
			i++
		}
		start := i
		for i < lim && frameTchar[b[i]] {
			i++
		}
		if i == lim {
			return 0, 0, end()
		}
		if i == start {
			return 0, 0, frameErrChunkExt
		}
		// optional BWS "=" BWS chunk-ext-val
		j := i
		for j < lim && (b[j] == ' ' || b[j] == '\t') {
			j++
		}
		if j == lim {
			return 0, 0, end()
		}
		if b[j] != '=' {
			continue // i stays before the BWS, which the loop head re-reads
		}
		i = j + 1
		for i < lim && (b[i] == ' ' || b[i] == '\t') {
			i++
		}
		if i == lim {
			return 0, 0, end()
		}
		if b[i] == '"' {
			i++
			for {
				if i == lim {
					return 0, 0, end()
				}
				c := b[i]
				if c == '"' {
					i++
					break
				}
				if c == '\\' {
					if i+1 == lim {
						return 0, 0, end()
					}
					if !frameQuotedPair(b[i+1]) {
						return 0, 0, frameErrChunkExt
					}
					i += 2
					continue
				}
				if !frameQdtext(c) {
					return 0, 0, frameErrChunkExt
				}
				i++
			}
		} else {
			start = i
			for i < lim && frameTchar[b[i]] {
				i++
			}
			if i == lim {
				return 0, 0, end()
			}
			if i == start {
				return 0, 0, frameErrChunkExt
			}
		}
	}
}

// frameTrailerLine checks one trailer field line (or the final empty line)
// at the start of b; budget is what is left of the trailer-section limit.
func frameTrailerLine(b []byte, budget int) (int, error) {
	lim := min(len(b), budget)
	if lim == 0 {
		return 0, frameTrailerEnd(len(b), budget)
	}
	switch b[0] {
	case '\r':
		if lim == 1 {
			return 0, frameTrailerEnd(len(b), budget)
		}
		if b[1] != '\n' {
			return 0, frameErrChunkCRNoLF
		}
		return 2, nil
	case '\n':
		return 0, frameErrChunkBareLF
	case ' ', '\t':
		return 0, frameErrTrailerObsFold
	}
	var fl frameFieldLine
	err := fl.parse(b[:lim])
	if err == ErrNeedMore {
		return 0, frameTrailerEnd(len(b), budget)
	}
	if err != nil {
		if err == frameErrHeaderName || err == frameErrSpaceColon {
			return 0, frameErrTrailerLine
		}
		return 0, err
	}
	return fl.end, nil
}

func frameTrailerEnd(have, budget int) error {
	if have >= budget {
		return frameErrTrailersTooLarge
	}
	return ErrNeedMore
}

// frameFieldLine is one parsed "name: value CRLF" line; offsets are relative
// to the slice given to parse.
type frameFieldLine struct {
	nameEnd          int // name is [0,nameEnd)
	valStart, valEnd int // value with OWS trimmed
	end              int // just past the CRLF
}

// parse checks a field line that starts at b[0] (not CR, LF, SP or HTAB).
// It returns ErrNeedMore if b ends before the CRLF.
func (fl *frameFieldLine) parse(b []byte) error {
	i := 0
	for i < len(b) && frameTchar[b[i]] {
		i++
	}
	if i == len(b) {
		return ErrNeedMore
	}
	switch b[i] {
	case ':':
		if i == 0 {
			return frameErrHeaderName
		}
	case ' ', '\t':
		if i > 0 {
			return frameErrSpaceColon
		}
		return frameErrHeaderName
	case 0:
		return frameErrNUL
	case '\n':
		return frameErrBareLF
	default:
		return frameErrHeaderName
	}
	fl.nameEnd = i
	i++
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	fl.valStart = i
	last := i // just past the last non-OWS byte of the value
	for ; i < len(b); i++ {
		c := b[i]
		switch {
		case c > ' ' && c != 0x7f:
			last = i + 1
		case c == ' ' || c == '\t':
		case c == '\r':
			if i+1 == len(b) {
				return ErrNeedMore
			}
			if b[i+1] != '\n' {
				return frameErrCRNoLF
			}
			fl.valEnd, fl.end = last, i+2
			return nil
		case c == '\n':
			return frameErrBareLF
		case c == 0:
			return frameErrNUL
		default:
			return frameErrHeaderValue
		}
	}
	return ErrNeedMore
}

// nextHead parses one request head at the start of buf.
func (f *RequestFramer) nextHead(buf []byte, maxHead int) (Step, int, error) {
	if len(buf) == 0 {
		return 0, 0, ErrNeedMore
	}
	if maxHead <= 0 {
		maxHead = FrameDefaultMaxHead
	}
	// Only buf[:maxHead] is ever looked at, so the outcome does not depend
	// on how much beyond the limit happens to be buffered.
	b := buf
	if len(b) > maxHead {
		b = b[:maxHead]
	}
	n, err := f.parseHead(b)
	if err == ErrNeedMore && len(buf) >= maxHead {
		err = ErrHeadTooLarge
	}
	if err != nil {
		return 0, 0, err
	}
	h := &f.Head
	f.tunnelAfter = h.Upgrade
	switch {
	case h.BodyKind == BodyChunked:
		f.phase = framePhaseChunkSize
	case h.BodyKind == BodyLength && h.ContentLength > 0:
		f.phase, f.remaining = framePhaseLength, h.ContentLength
	default:
		f.endMessage()
	}
	return StepHead, n, nil
}

// frameHeadState collects what the header lines say, for the checks that
// need the whole head.
type frameHeadState struct {
	hostSeen, clSeen, teSeen bool
	teChunkedLast            bool
	connClose, connKeep      bool
	connUpgrade, upgradeHdr  bool
}

// parseHead fills f.Head from the head at the start of b and returns its length.
func (f *RequestFramer) parseHead(b []byte) (int, error) {
	h := &f.Head
	*h = FramedHead{}
	i := 0
	// Empty lines before the request line (RFC 9112 2.2).
	for lines := 0; ; lines++ {
		if i == len(b) {
			return 0, ErrNeedMore
		}
		if b[i] == '\n' {
			return 0, frameErrBareLF
		}
		if b[i] != '\r' {
			break
		}
		if i+1 == len(b) {
			return 0, ErrNeedMore
		}
		if b[i+1] != '\n' {
			return 0, frameErrCRNoLF
		}
		if lines == frameMaxLeadingCRLF {
			return 0, frameErrLeadingLines
		}
		i += 2
	}
	h.Start = i

	// method SP. Anything else this early, or a method longer than any in
	// use, means the peer speaks another protocol (a TLS record, SSH, ...):
	// it is told so at once instead of being buffered up to the head limit.
	for i < len(b) && frameTchar[b[i]] && i-h.Start < frameMaxMethod {
		i++
	}
	if i == len(b) {
		return 0, ErrNeedMore
	}
	if i == h.Start || b[i] != ' ' {
		return 0, ErrNotHTTP
	}
	h.Method = b[h.Start:i:i]
	if string(h.Method) == "CONNECT" {
		return 0, frameErrConnect
	}
	i++

	// request-target SP
	ts := i
	for ; i < len(b); i++ {
		c := b[i]
		if c > ' ' && c != 0x7f {
			continue
		}
		switch c {
		case ' ':
		case 0:
			return 0, frameErrNUL
		case '\r', '\n':
			return 0, frameErrRequestLine // HTTP/0.9 style line without version
		default:
			return 0, frameErrTargetChar
		}
		break
	}
	if i == len(b) {
		return 0, ErrNeedMore
	}
	if i == ts {
		return 0, frameErrRequestLine
	}
	h.Target = b[ts:i:i]
	i++

	// HTTP-version CRLF: exactly "HTTP/1.d\r\n", checked as far as it
	// arrived. HTTP/1.2 to 1.9 are taken as HTTP/1.1 (RFC 9110 2.5: a higher
	// minor version is processed as the highest one implemented), as net/http
	// and HAProxy do; Minor keeps the digit that was sent.
	const proto = "HTTP/1."
	for k := 0; k < len(proto); k, i = k+1, i+1 {
		if i == len(b) {
			return 0, ErrNeedMore
		}
		if b[i] != proto[k] {
			if k == 5 && b[i] == '2' && string(h.Method) == "PRI" && string(h.Target) == "*" {
				return 0, ErrHTTP2Preface
			}
			return 0, frameErrVersion
		}
	}
	if i == len(b) {
		return 0, ErrNeedMore
	}
	if b[i] < '0' || b[i] > '9' {
		return 0, frameErrVersion
	}
	h.Minor = int(b[i] - '0')
	i++
	if err := frameCRLF(b, i); err != nil {
		if err == frameErrCRNoLF && i < len(b) && b[i] != '\r' {
			return 0, frameErrVersion
		}
		return 0, err
	}
	i += 2
	if err := frameCheckTarget(h); err != nil {
		return 0, err
	}

	// Header lines.
	var st frameHeadState
	var fl frameFieldLine
	for {
		if i == len(b) {
			return 0, ErrNeedMore
		}
		switch b[i] {
		case '\r':
			if err := frameCRLF(b, i); err != nil {
				return 0, err
			}
			h.HeadersEnd = i
			if err := f.finishHead(&st); err != nil {
				return 0, err
			}
			return i + 2, nil
		case '\n':
			return 0, frameErrBareLF
		case ' ', '\t':
			return 0, frameErrObsFold
		}
		if err := fl.parse(b[i:]); err != nil {
			return 0, err
		}
		if err := f.headerLine(&st, b, i, &fl); err != nil {
			return 0, err
		}
		i += fl.end
	}
}

// frameCRLF checks for CRLF at b[i:], ErrNeedMore if b ends first.
func frameCRLF(b []byte, i int) error {
	if i == len(b) {
		return ErrNeedMore
	}
	if b[i] == '\n' {
		return frameErrBareLF
	}
	if b[i] != '\r' {
		return frameErrCRNoLF
	}
	if i+1 == len(b) {
		return ErrNeedMore
	}
	if b[i+1] != '\n' {
		return frameErrCRNoLF
	}
	return nil
}

// frameCheckTarget checks the request-target form (RFC 9112 3.2) and takes
// Host from an absolute-form target.
func frameCheckTarget(h *FramedHead) error {
	t := h.Target
	switch {
	case t[0] == '/':
		return nil
	case len(t) == 1 && t[0] == '*':
		if string(h.Method) != "OPTIONS" {
			return frameErrTarget
		}
		return nil
	}
	var rest []byte
	switch {
	case len(t) >= 7 && frameEqualFold(t[:7], "http://"):
		rest = t[7:]
	case len(t) >= 8 && frameEqualFold(t[:8], "https://"):
		rest = t[8:]
	default:
		return frameErrTarget
	}
	end := 0
	for end < len(rest) && rest[end] != '/' && rest[end] != '?' && rest[end] != '#' {
		end++
	}
	host := rest[:end:end]
	// userinfo ("user@host") is refused: RFC 9110 4.2.4 tells recipients to
	// treat it as an error, as it serves to obscure the authority, and
	// parsers disagree on which '@' ends it ('@' is not a host character).
	// Percent-encoding is refused too: net/http decodes it ("a%41" is
	// "aA") where a Host header is taken verbatim, so routing by it would
	// depend on whom one asks; no route name needs it.
	if len(host) == 0 || !frameValidHost(host) || bytes.IndexByte(host, '%') >= 0 {
		return frameErrAbsHost
	}
	h.Host = host
	return nil
}

// frameValidHost accepts reg-name, IP-literal and IPv4 characters with an
// optional port: unreserved, sub-delims, '%', ':', '[' and ']'.
func frameValidHost(v []byte) bool {
	for _, c := range v {
		if !frameHostChar[c] {
			return false
		}
	}
	return true
}

// headerLine applies the meaning of one header line at b[at:].
func (f *RequestFramer) headerLine(st *frameHeadState, b []byte, at int, fl *frameFieldLine) error {
	h := &f.Head
	name := b[at : at+fl.nameEnd]
	vs, ve := at+fl.valStart, at+fl.valEnd
	val := b[vs:ve:ve]
	var drop uint8
	switch len(name) {
	case 4:
		if frameEqualFold(name, "host") {
			if st.hostSeen {
				return frameErrDupHost
			}
			st.hostSeen = true
			if !frameValidHost(val) {
				return frameErrHostChar
			}
			if h.Host == nil { // an absolute-form target's authority wins (RFC 9112 3.2.2)
				h.Host = val
			}
		}
	case 6:
		if frameEqualFold(name, "expect") && frameEqualFold(val, "100-continue") {
			h.ExpectContinue = true
		}
	case 7:
		if frameEqualFold(name, "upgrade") && len(val) > 0 {
			st.upgradeHdr = true
		}
	case 9:
		switch {
		case frameEqualFold(name, "forwarded"):
			if h.Forwarded != [2]int{} {
				return frameErrDupForwarded
			}
			h.Forwarded = [2]int{vs, ve}
			drop = FwdForwarded
		case frameEqualFold(name, "x-real-ip"):
			drop = FwdRealIP
		}
	case 10:
		if frameEqualFold(name, "connection") {
			frameConnection(st, val)
		}
	case 14:
		if frameEqualFold(name, "content-length") {
			if err := frameContentLength(st, h, val); err != nil {
				return err
			}
		}
	case 15:
		if frameEqualFold(name, "x-forwarded-for") {
			if h.XFF != [2]int{} {
				return frameErrDupXFF
			}
			h.XFF = [2]int{vs, ve}
			drop = FwdXFF
		}
	case 16:
		if frameEqualFold(name, "x-forwarded-port") {
			drop = FwdPort
		}
	case 17:
		switch {
		case frameEqualFold(name, "x-forwarded-proto"):
			drop = FwdProto
		case frameEqualFold(name, "transfer-encoding"):
			if h.Minor == 0 {
				return frameErrTE10
			}
			if err := frameTransferEncoding(st, val); err != nil {
				return err
			}
		}
	}
	if drop != 0 {
		if h.NDrop == frameMaxDrop {
			return frameErrTooManyDrop
		}
		h.Drop[h.NDrop] = [2]int{at, at + fl.end}
		h.DropKind[h.NDrop] = drop
		h.NDrop++
	}
	return nil
}

// frameListItem returns the item of a comma-separated header value that
// starts at v[start], trimmed of OWS, and where the next one starts. The
// last item ends at len(v), so a caller loops while start <= len(v); empty
// items (",," or a trailing comma) come back empty.
func frameListItem(v []byte, start int) (item []byte, next int) {
	i := start
	for i < len(v) && v[i] != ',' {
		i++
	}
	return trimOWS(v[start:i]), i + 1
}

// frameContentLength accepts a list of identical decimal values, also across
// repeated lines (RFC 9110 8.6); anything else is malformed.
func frameContentLength(st *frameHeadState, h *FramedHead, v []byte) error {
	for start := 0; start <= len(v); {
		var d []byte
		d, start = frameListItem(v, start)
		if len(d) == 0 {
			return frameErrCLValue
		}
		var n int64
		for _, c := range d {
			if c < '0' || c > '9' {
				return frameErrCLValue
			}
			if n > (math.MaxInt64-int64(c-'0'))/10 {
				return frameErrCLOverflow
			}
			n = n*10 + int64(c-'0')
		}
		if st.clSeen && n != h.ContentLength {
			return frameErrCLDiffer
		}
		st.clSeen = true
		h.ContentLength = n
	}
	return nil
}

// frameTransferEncoding tracks the list of codings across lines: chunked must
// be the last one and appear only once (RFC 9112 6.1, 6.3).
func frameTransferEncoding(st *frameHeadState, v []byte) error {
	st.teSeen = true
	for start := 0; start <= len(v); {
		var c []byte
		c, start = frameListItem(v, start)
		if len(c) == 0 {
			return frameErrTEValue
		}
		for _, x := range c {
			if !frameTchar[x] {
				return frameErrTEValue // parameters or junk
			}
		}
		if st.teChunkedLast {
			return frameErrTENotChunked // a coding after chunked
		}
		st.teChunkedLast = frameEqualFold(c, "chunked")
	}
	return nil
}

// frameConnection reads the connection options that matter for framing.
func frameConnection(st *frameHeadState, v []byte) {
	for start := 0; start <= len(v); {
		var o []byte
		o, start = frameListItem(v, start)
		switch {
		case frameEqualFold(o, "close"):
			st.connClose = true
		case frameEqualFold(o, "keep-alive"):
			st.connKeep = true
		case frameEqualFold(o, "upgrade"):
			st.connUpgrade = true
		}
	}
}

// finishHead runs the checks that need the whole head.
func (f *RequestFramer) finishHead(st *frameHeadState) error {
	h := &f.Head
	if h.Minor >= 1 && !st.hostSeen {
		return frameErrNoHost
	}
	if st.clSeen && st.teSeen {
		return frameErrCLAndTE
	}
	switch {
	case st.teSeen:
		if !st.teChunkedLast {
			return frameErrTENotChunked
		}
		h.BodyKind = BodyChunked
	case st.clSeen:
		h.BodyKind = BodyLength
	}
	if h.Minor >= 1 {
		h.KeepAlive = !st.connClose
		// RFC 9110 7.8: Upgrade in an HTTP/1.0 request is ignored.
		h.Upgrade = st.connUpgrade && st.upgradeHdr
	} else {
		h.KeepAlive = st.connKeep && !st.connClose
	}
	return nil
}

// frameEqualFold compares b with the lower-case ASCII string s, ignoring case.
func frameEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// trimOWS removes optional whitespace (SP, HTAB) at both ends of v.
func trimOWS(v []byte) []byte {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

func frameHex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// frameQdtext: HTAB, SP, %x21, %x23-5B, %x5D-7E, obs-text (RFC 9110 5.6.4).
func frameQdtext(c byte) bool {
	return c == '\t' || c == ' ' || c == 0x21 || c >= 0x23 && c <= 0x5b || c >= 0x5d && c <= 0x7e || c >= 0x80
}

// frameQuotedPair: the byte after a backslash: HTAB, SP, VCHAR, obs-text.
func frameQuotedPair(c byte) bool {
	return c == '\t' || c >= ' ' && c != 0x7f
}

// Character tables, computed once and never written afterwards.
var (
	frameTchar    = frameTable("!#$%&'*+-.^_`|~")
	frameHostChar = frameTable("-._~!$&'()*+,;=%:[]")
)

// frameTable marks ALPHA, DIGIT and the given punctuation.
func frameTable(punct string) (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for i := 0; i < len(punct); i++ {
		t[punct[i]] = true
	}
	return t
}

package parser

import "bytes"

// Response heads: the engine follows a backend's answers to know when each
// one is complete (to pool the backend connection, or close a kept-alive
// client connection between requests) and rewrites a head only to make it
// say "Connection: close". This parser is lenient where the request side is
// strict, and reports what it cannot follow as ErrMalformed: the caller then
// stops tracking that connection.

// BodyUntilClose is a response body delimited by the end of the connection.
const BodyUntilClose uint8 = 3

// ResponseHead describes an HTTP/1.x response head.
type ResponseHead struct {
	Status        int   // 100..999
	HeadLen       int   // bytes of the head, final CRLF included
	BodyKind      uint8 // BodyNone, BodyLength, BodyChunked or BodyUntilClose
	ContentLength int64 // for BodyLength
	Minor         int   // HTTP/1.<Minor>
	// Close: the backend ends the connection after this answer (Connection:
	// close, or HTTP/1.0 without Connection: keep-alive).
	Close bool
	// HeadersEnd is the index of the final CRLF: a header line inserted
	// there is the head's last.
	HeadersEnd int
	// Hop[:NHop] are the [start,end) ranges (CRLF included) of the
	// Connection, Keep-Alive and Proxy-Connection lines, which describe the
	// backend's connection and are dropped when the head is rewritten
	// (RFC 9110 7.6.1); more than len(Hop) such lines is malformed.
	Hop  [4][2]int
	NHop int
}

var errResponse = &frameError{kind: ErrMalformed, msg: "parse response: malformed head"}

// ParseResponseHead parses the response head at the start of b into h. It
// returns ErrNeedMore until b holds the whole head (ErrMalformed past
// maxHead bytes). The body kind follows RFC 9112 6.3 for a response to a
// request other than HEAD: 1xx, 204 and 304 have none; then chunked, then
// Content-Length, else the body lasts until the connection closes. It
// allocates nothing.
func ParseResponseHead(b []byte, maxHead int, h *ResponseHead) error {
	// The terminator must start within maxHead bytes. (bytes.Index and
	// IndexByte below are vectorised: a byte-at-a-time scan was most of
	// this function's cost under keep-alive load.)
	end := bytes.Index(b[:min(len(b), maxHead+3)], []byte("\r\n\r\n"))
	if end < 0 {
		if len(b) >= maxHead {
			return errResponse
		}
		return ErrNeedMore
	}
	end += 4
	*h = ResponseHead{HeadLen: end}
	// "HTTP/1.x NNN"
	if end < 14 || string(b[:7]) != "HTTP/1." || b[7] < '0' || b[7] > '9' || b[8] != ' ' {
		return errResponse
	}
	for _, c := range b[9:12] {
		if c < '0' || c > '9' {
			return errResponse
		}
		h.Status = h.Status*10 + int(c-'0')
	}
	// The code is three digits, then the space before the reason (or the
	// line's end): "1000" is not 100.
	if h.Status < 100 || b[12] != ' ' && b[12] != '\r' {
		return errResponse
	}
	h.Minor = int(b[7] - '0')
	h.HeadersEnd = end - 2
	chunked, hasLength := false, false
	connClose, connKeep := false, false
	line := 0
	for i := 0; i < end; i++ {
		k := bytes.IndexByte(b[i:end], '\n')
		if k < 0 {
			break
		}
		i += k
		if b[i-1] != '\r' {
			// A bare LF would end a line for some readers and not for
			// others: where the head ends would depend on who reads it.
			return errResponse
		}
		start := line
		line = i + 1
		if start == 0 {
			continue // the status line
		}
		f := b[start : i-1] // every line ends in CRLF (checked above)
		colon := bytes.IndexByte(f, ':')
		if colon <= 0 {
			continue // the final empty line, or a line we need not understand
		}
		name, val := f[:colon], trimOWS(f[colon+1:])
		hop := false
		switch {
		case frameEqualFold(name, "connection"):
			hop = true
			for start := 0; start <= len(val); {
				var o []byte
				o, start = frameListItem(val, start)
				connClose = connClose || frameEqualFold(o, "close")
				connKeep = connKeep || frameEqualFold(o, "keep-alive")
			}
		case frameEqualFold(name, "keep-alive"), frameEqualFold(name, "proxy-connection"):
			hop = true
		case frameEqualFold(name, "content-length"):
			n, ok := parseDecimal(val)
			if !ok || hasLength && n != h.ContentLength {
				return errResponse
			}
			hasLength, h.ContentLength = true, n
		case frameEqualFold(name, "transfer-encoding"):
			// Chunked must be the last coding; another last coding means the
			// body runs to the close. Empty items are ignored.
			var last []byte
			for start := 0; start <= len(val); {
				var c []byte
				if c, start = frameListItem(val, start); len(c) > 0 {
					last = c
				}
			}
			n := len(last)
			chunked = n >= 7 && frameEqualFold(last[n-7:], "chunked") &&
				(n == 7 || last[n-8] == ' ' || last[n-8] == '\t')
			if !chunked {
				h.BodyKind = BodyUntilClose
			}
		}
		if hop {
			if h.NHop == len(h.Hop) {
				return errResponse
			}
			h.Hop[h.NHop] = [2]int{start, line}
			h.NHop++
		}
	}
	h.Close = connClose || h.Minor == 0 && !connKeep
	switch {
	case h.Status < 200 || h.Status == 204 || h.Status == 304:
		h.BodyKind = BodyNone
	case chunked:
		h.BodyKind = BodyChunked
	case h.BodyKind == BodyUntilClose:
	case hasLength:
		h.BodyKind = BodyLength
	default:
		h.BodyKind = BodyUntilClose
	}
	return nil
}

// AppendCloseHead appends head, the response head at the start of b that
// ParseResponseHead described in h, to out with its Connection, Keep-Alive
// and Proxy-Connection lines replaced by "Connection: close". The body is
// not touched (it is not in head).
func AppendCloseHead(out, b []byte, h *ResponseHead) []byte {
	at := 0
	for _, d := range h.Hop[:h.NHop] {
		out = append(out, b[at:d[0]]...)
		at = d[1]
	}
	out = append(out, b[at:h.HeadersEnd]...)
	out = append(out, "Connection: close\r\n"...)
	return append(out, b[h.HeadersEnd:h.HeadLen]...)
}

func parseDecimal(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true // 18 digits cannot overflow
}

// BeginBody makes f follow a message body of the given kind (BodyLength with
// n bytes, or BodyChunked) with Next, as if a head announcing it had just
// been read. Once the body ends, AtBoundary reports true. The engine uses it
// to follow response bodies with the request side's verified chunk parser.
func (f *RequestFramer) BeginBody(kind uint8, n int64) {
	*f = RequestFramer{}
	switch kind {
	case BodyChunked:
		f.phase = framePhaseChunkSize
	case BodyLength:
		if n > 0 {
			f.phase, f.remaining = framePhaseLength, n
		}
	}
}

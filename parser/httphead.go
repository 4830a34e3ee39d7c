package parser

const (
	// maxLeadingEmptyLines bounds the CRLFs skipped before the request line
	// (RFC 9112 2.2 asks servers to ignore at least one).
	maxLeadingEmptyLines = 4
	// maxMethodLen: a longer run of token bytes without a space is taken as
	// another protocol rather than buffered indefinitely.
	maxMethodLen = 32
)

// RequestHead holds what the router needs from an HTTP/1.x request head.
// All slices alias the input.
type RequestHead struct {
	Method []byte
	Target []byte
	// Host is the authority of an absolute-form target if present (it wins,
	// RFC 9112 3.2.2), else the Host header value with OWS trimmed (empty but
	// non-nil for an empty Host header), else nil. The port is not stripped.
	Host []byte
	// Minor is the HTTP/1.<Minor> version: 0 or 1.
	Minor int
	// HeadLen is the length of the request head including the final CRLF CRLF.
	HeadLen int
}

// Character classes, as 256-entry tables so the hot loops are one load and
// one branch per byte.
var (
	tokenTable [256]bool // RFC 9110 5.6.2 tchar
	valueTable [256]bool // field-value bytes: HTAB, SP, VCHAR, obs-text
	hostTable  [256]bool // reg-name, IP-literal and port bytes of a Host
)

func init() {
	for c := 0; c < 256; c++ {
		alnum := c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		tokenTable[c] = alnum || c < 0x80 && isAnyOf(byte(c), "!#$%&'*+-.^_`|~")
		valueTable[c] = c == '\t' || c >= 0x20 && c != 0x7f
		hostTable[c] = alnum || c < 0x80 && isAnyOf(byte(c), "-._~!$&'()*+,;=%:[]")
	}
}

func isAnyOf(c byte, set string) bool {
	for i := 0; i < len(set); i++ {
		if set[i] == c {
			return true
		}
	}
	return false
}

// ParseRequestHead parses the HTTP/1.0 or HTTP/1.1 request head at the start
// of data (every byte received so far). It returns nil once the head is
// complete, ErrNeedMore for an incomplete but so far valid prefix, ErrNotHTTP
// (or ErrHTTP2Preface) as soon as the first bytes cannot start an HTTP/1.x
// request line, and an error that Is ErrMalformed otherwise.
//
// Bytes are checked in stream order, so a prefix of data yields either
// ErrNeedMore or exactly the verdict that data yields.
func ParseRequestHead(data []byte, r *RequestHead) error {
	*r = RequestHead{}
	i := 0

	// Leading empty lines.
	for n := 0; ; n++ {
		if i >= len(data) {
			return ErrNeedMore
		}
		if data[i] == '\n' {
			return errBareLF
		}
		if data[i] != '\r' {
			break
		}
		if n == maxLeadingEmptyLines {
			return errLeadingLines
		}
		if i+1 >= len(data) {
			return ErrNeedMore
		}
		if data[i+1] != '\n' {
			return errCRNoLF
		}
		i += 2
	}

	// Method: a token followed by a single SP. Anything else this early means
	// the peer speaks another protocol.
	ms := i
	for i < len(data) && tokenTable[data[i]] && i-ms < maxMethodLen {
		i++
	}
	if i >= len(data) {
		return ErrNeedMore
	}
	if data[i] != ' ' || i == ms {
		return ErrNotHTTP
	}
	method := data[ms:i]
	if string(method) == "CONNECT" {
		return errConnect
	}
	i++

	// Request-target: no CTLs, no SP.
	ts := i
	for i < len(data) && data[i] > ' ' && data[i] != 0x7f {
		i++
	}
	if i >= len(data) {
		return ErrNeedMore
	}
	switch c := data[i]; {
	case i == ts:
		return errTargetEmpty
	case c == 0:
		return errNUL
	case c == '\r' || c == '\n':
		return errNoVersion // HTTP/0.9-style request line
	case c != ' ':
		return errTargetChar
	}
	target := data[ts:i]
	var absHost []byte
	switch {
	case target[0] == '/':
	case len(target) == 1 && target[0] == '*':
		if m := string(method); m != "OPTIONS" && m != "PRI" {
			return errTarget
		}
	default:
		auth, isHTTP := absoluteAuthority(target)
		if !isHTTP {
			return errTarget
		}
		if auth == nil {
			return errAbsHost
		}
		absHost = auth
	}
	i++

	// Version: exactly "HTTP/1.0" or "HTTP/1.1", then CRLF. Checked a byte
	// at a time so a wrong version is reported without waiting for the line.
	pri := string(method) == "PRI" && string(target) == "*"
	vs := i
	minor := 0
	for k := 0; k < 10; k++ {
		if vs+k >= len(data) {
			return ErrNeedMore
		}
		c := data[vs+k]
		switch {
		case k < 5:
			if c != "HTTP/"[k] {
				return errBadVersion
			}
		case k == 5:
			if c == '1' || c == '2' && pri {
				break
			}
			if isDigit(c) {
				return errVersion
			}
			return errBadVersion
		case k == 6:
			if c != '.' {
				return errBadVersion
			}
		case k == 7:
			if !isDigit(c) {
				return errBadVersion
			}
			if data[vs+5] == '2' {
				if c == '0' {
					return ErrHTTP2Preface
				}
				return errVersion
			}
			if c > '1' {
				return errVersion
			}
			minor = int(c - '0')
		case k == 8:
			if c == '\n' {
				return errBareLF
			}
			if c != '\r' {
				return errBadVersion
			}
		default:
			if c != '\n' {
				return errCRNoLF
			}
		}
	}
	i = vs + 10

	// Header fields.
	var host []byte
	hostSeen := false
	for {
		if i >= len(data) {
			return ErrNeedMore
		}
		switch data[i] {
		case '\r':
			if i+1 >= len(data) {
				return ErrNeedMore
			}
			if data[i+1] != '\n' {
				return errCRNoLF
			}
			r.Method = method
			r.Target = target
			r.Minor = minor
			r.HeadLen = i + 2
			if absHost != nil {
				r.Host = absHost
			} else {
				r.Host = host
			}
			return nil
		case '\n':
			return errBareLF
		case ' ', '\t':
			return errObsFold // RFC 9112 5.2
		}

		ns := i
		for i < len(data) && tokenTable[data[i]] {
			i++
		}
		if i >= len(data) {
			return ErrNeedMore
		}
		switch c := data[i]; {
		case c == ':' && i > ns:
		case c == ' ' || c == '\t':
			return errSpaceBeforeColon // RFC 9112 5.1
		case c == 0:
			return errNUL
		case c == '\n':
			return errBareLF
		default:
			return errHeaderName
		}
		name := data[ns:i]
		i++

		vstart := i
		for i < len(data) && valueTable[data[i]] {
			i++
		}
		if i >= len(data) {
			return ErrNeedMore
		}
		switch data[i] {
		case '\r':
		case '\n':
			return errBareLF
		case 0:
			return errNUL
		default:
			return errHeaderValue
		}
		if i+1 >= len(data) {
			return ErrNeedMore
		}
		if data[i+1] != '\n' {
			return errCRNoLF
		}
		if isHostName(name) {
			if hostSeen {
				return errDupHost
			}
			hostSeen = true
			host = trimOWS(data[vstart:i])
			if !validHost(host) {
				return errHostChar
			}
		}
		i += 2
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isHostName reports whether a header name is "Host", case-insensitively.
// OR-ing 0x20 only maps the upper-case letters onto these lower-case ones.
func isHostName(name []byte) bool {
	return len(name) == 4 && name[0]|0x20 == 'h' && name[1]|0x20 == 'o' &&
		name[2]|0x20 == 's' && name[3]|0x20 == 't'
}

func trimOWS(v []byte) []byte {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// validHost accepts the bytes of uri-host [":" port]; an empty Host is valid
// (RFC 9110 7.2) and left to the caller.
func validHost(h []byte) bool {
	for _, c := range h {
		if !hostTable[c] {
			return false
		}
	}
	return true
}

// absoluteAuthority returns the host[:port] of an http or https absolute-form
// target with any userinfo removed. isHTTP is false for other forms; auth is
// nil when the scheme is http(s) but the authority is empty or invalid.
func absoluteAuthority(t []byte) (auth []byte, isHTTP bool) {
	var rest []byte
	switch {
	case hasPrefixFold(t, "http://"):
		rest = t[len("http://"):]
	case hasPrefixFold(t, "https://"):
		rest = t[len("https://"):]
	default:
		return nil, false
	}
	end := len(rest)
	for j, c := range rest {
		if c == '/' || c == '?' || c == '#' {
			end = j
			break
		}
	}
	a := rest[:end]
	for j := len(a) - 1; j >= 0; j-- {
		if a[j] == '@' {
			a = a[j+1:]
			break
		}
	}
	if len(a) == 0 || !validHost(a) {
		return nil, true
	}
	return a, true
}

// hasPrefixFold reports whether b starts with the lower-case ASCII prefix,
// ignoring case.
func hasPrefixFold(b []byte, prefix string) bool {
	if len(b) < len(prefix) {
		return false
	}
	for j := 0; j < len(prefix); j++ {
		c := b[j]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[j] {
			return false
		}
	}
	return true
}

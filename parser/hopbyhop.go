package parser

// Hop-by-hop fields of a request (RFC 9110 7.6.1): Connection, the fields it
// names, Keep-Alive and Proxy-Connection describe the client's connection
// to the proxy and are not forwarded. The framer does not need them, so
// they are located only when the engine rewrites such a head.

// maxConnOptions bounds the Connection options that name other fields.
const maxConnOptions = 8

// AppendHopLines appends to dst the [start,end) ranges (CRLF included), in
// order, of the hop-by-hop lines of head, a complete request head the
// framer described in h: Connection, Keep-Alive, Proxy-Connection and the
// fields named in Connection (at most 8 names). Host, Content-Length and
// Transfer-Encoding are never dropped even when named: they frame and route
// the request, and naming them is a request-smuggling trick. Upgrade is
// kept with its Connection line for an Upgrade request. It allocates
// nothing when dst has room.
func AppendHopLines(dst [][2]int, head []byte, h *FramedHead) [][2]int {
	// First pass: the field names the Connection options list.
	var named [maxConnOptions][]byte
	n := 0
	for at := lineAfter(head, h.Start); at < h.HeadersEnd; {
		end := lineAfter(head, at)
		if name, val := headerLine(head[at:end]); frameEqualFold(name, "connection") {
			for start := 0; start <= len(val); {
				var o []byte
				o, start = frameListItem(val, start)
				if len(o) > 0 && n < maxConnOptions && !frameEqualFold(o, "close") &&
					!frameEqualFold(o, "keep-alive") && !frameEqualFold(o, "upgrade") {
					named[n] = o
					n++
				}
			}
		}
		at = end
	}
	// Second pass: the lines to drop.
	for at := lineAfter(head, h.Start); at < h.HeadersEnd; {
		end := lineAfter(head, at)
		name, _ := headerLine(head[at:end])
		drop := false
		switch {
		case frameEqualFold(name, "connection"):
			drop = !h.Upgrade
		case frameEqualFold(name, "keep-alive"), frameEqualFold(name, "proxy-connection"):
			drop = true
		case frameEqualFold(name, "host"), frameEqualFold(name, "content-length"),
			frameEqualFold(name, "transfer-encoding"), h.Upgrade && frameEqualFold(name, "upgrade"):
		default:
			for _, o := range named[:n] {
				drop = drop || equalFoldBytes(name, o)
			}
		}
		if drop {
			dst = append(dst, [2]int{at, end})
		}
		at = end
	}
	return dst
}

// lineAfter returns the index just past the LF of the line containing b[i].
func lineAfter(b []byte, i int) int {
	for i < len(b) && b[i] != '\n' {
		i++
	}
	return i + 1
}

// headerLine splits a header line (CRLF included) into its name and its
// value trimmed of whitespace.
func headerLine(line []byte) (name, val []byte) {
	for j, c := range line {
		if c == ':' {
			v := line[j+1:]
			for len(v) > 0 && (v[len(v)-1] == '\n' || v[len(v)-1] == '\r') {
				v = v[:len(v)-1]
			}
			return line[:j], trimOWS(v)
		}
	}
	return nil, nil
}

// equalFoldBytes compares two field names ignoring ASCII case.
func equalFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

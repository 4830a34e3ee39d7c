package proxyproto

import "net/netip"

// The v1 text addresses are parsed here rather than with netip.ParseAddr,
// which takes a string: converting the aliased []byte would allocate on every
// header. Syntax follows the spec: dotted-quad IPv4 without leading zeros;
// IPv6 in RFC 4291 text form (one "::" at most, optional trailing dotted quad),
// no zone.

// parseIPv4 parses exactly four decimal octets without leading zeros.
func parseIPv4(b []byte) (netip.Addr, bool) {
	var ip [4]byte
	if !parseDotted(b, &ip) {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(ip), true
}

func parseDotted(b []byte, ip *[4]byte) bool {
	part, digits, v := 0, 0, 0
	for i := 0; i <= len(b); i++ {
		if i == len(b) || b[i] == '.' {
			if digits == 0 || part > 3 {
				return false
			}
			ip[part] = byte(v)
			part++
			digits, v = 0, 0
			continue
		}
		c := b[i]
		if c < '0' || c > '9' || digits > 0 && v == 0 {
			return false // non-digit, or a digit after a leading zero
		}
		v = v*10 + int(c-'0')
		digits++
		if v > 255 {
			return false
		}
	}
	return part == 4
}

func hexVal(c byte) int {
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

// parseIPv6 parses the RFC 4291 section 2.2 text forms.
func parseIPv6(s []byte) (netip.Addr, bool) {
	var ip [16]byte
	ellipsis := -1 // index in ip where "::" stands
	if len(s) >= 2 && s[0] == ':' && s[1] == ':' {
		ellipsis = 0
		s = s[2:]
		if len(s) == 0 {
			return netip.AddrFrom16(ip), true
		}
	}
	i := 0
	for i < 16 {
		off, acc := 0, 0
		for off < len(s) {
			d := hexVal(s[off])
			if d < 0 {
				break
			}
			if off == 4 {
				return netip.Addr{}, false
			}
			acc = acc<<4 | d
			off++
		}
		if off == 0 {
			return netip.Addr{}, false
		}
		if off < len(s) && s[off] == '.' {
			// Trailing dotted quad: only as the last 32 bits.
			if ellipsis < 0 && i != 12 || i+4 > 16 {
				return netip.Addr{}, false
			}
			var v4 [4]byte
			if !parseDotted(s, &v4) {
				return netip.Addr{}, false
			}
			copy(ip[i:], v4[:])
			i += 4
			s = nil
			break
		}
		ip[i], ip[i+1] = byte(acc>>8), byte(acc)
		i += 2
		s = s[off:]
		if len(s) == 0 {
			break
		}
		if s[0] != ':' || len(s) == 1 {
			return netip.Addr{}, false
		}
		s = s[1:]
		if s[0] == ':' {
			if ellipsis >= 0 {
				return netip.Addr{}, false
			}
			ellipsis = i
			s = s[1:]
			if len(s) == 0 {
				break
			}
		}
	}
	if len(s) != 0 {
		return netip.Addr{}, false
	}
	if i < 16 {
		if ellipsis < 0 {
			return netip.Addr{}, false
		}
		n := 16 - i
		copy(ip[ellipsis+n:], ip[ellipsis:i])
		clear(ip[ellipsis : ellipsis+n])
	} else if ellipsis >= 0 {
		return netip.Addr{}, false // "::" must stand for at least one group
	}
	return netip.AddrFrom16(ip), true
}

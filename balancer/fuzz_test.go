package balancer

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// refLookup is a direct, allocation-happy statement of Lookup's rules: the
// reference the optimised Lookup is fuzzed against. It returns a pool name.
func refLookup(s Scheme, name string) string {
	def := "fallback.test"
	if s == SchemeTLS {
		def = "" // the default route has no tls backends
	}
	host := name
	if strings.HasPrefix(host, "[") {
		end := strings.IndexByte(host, ']')
		if end < 0 {
			return def
		}
		rest := host[end+1:]
		if rest != "" && (rest[0] != ':' || strings.Trim(rest[1:], "0123456789") != "") {
			return def
		}
		host = host[1:end]
	} else if strings.Count(host, ":") == 1 {
		h, port, _ := strings.Cut(host, ":")
		if strings.Trim(port, "0123456789") != "" {
			return def
		}
		host = h
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return def
	}
	if len(host) > 255 {
		return ""
	}
	host = strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, host)
	has := func(r RouteSpec) bool {
		for _, b := range r.Backends {
			if strings.HasPrefix(b, s.String()+"://") {
				return true
			}
		}
		return false
	}
	best := ""
	for _, r := range lookupRoutes {
		if !has(r) {
			continue
		}
		n := strings.ToLower(r.Name)
		if n == host {
			return n
		}
		if suffix, ok := strings.CutPrefix(n, "*"); ok && len(host) > len(suffix) && strings.HasSuffix(host, suffix) && len(n) > len(best) {
			best = n
		}
	}
	if best != "" {
		return best
	}
	return def
}

func FuzzLookup(f *testing.F) {
	tab := mustTable(f, lookupRoutes, "fallback.test")
	for _, s := range []string{"app1.test", "A.B.apps.TEST.:80", "[::1]:443", "x.b.apps.test", "", "a:b:c", "[a]b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		for _, s := range []Scheme{SchemeHTTP, SchemeTLS} {
			got := ""
			if p := tab.Lookup(s, []byte(name)); p != nil {
				got = p.Name
			}
			if want := refLookup(s, name); got != want {
				t.Fatalf("Lookup(%v, %q) = %q, reference says %q", s, name, got, want)
			}
			// ASCII only: Lookup folds ASCII case, and bytes.ToUpper would
			// turn 'ſ' into 'S'.
			upper := []byte(name)
			for i, c := range upper {
				if 'a' <= c && c <= 'z' {
					upper[i] = c - 'a' + 'A'
				}
			}
			if p := tab.Lookup(s, upper); p != tab.Lookup(s, []byte(name)) {
				t.Fatalf("Lookup(%v, %q) depends on case", s, name)
			}
		}
	})
}

func FuzzParseBackend(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:9001", "tls://[::1]:9443?weight=2&proxy=v2&drain=1", "http://backend.internal:8080", "htp://x", "http://x:",
		"http+unix:///run/app/web.sock?proxy=v1", "http://10.0.0.5?source=client"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		spec, err := ParseBackend(raw)
		if err != nil {
			if !strings.HasPrefix(err.Error(), fmt.Sprintf("parse backend %q: ", raw)) {
				t.Fatalf("error without context: %v", err)
			}
			return
		}
		unixOK := spec.IsUnix() && spec.Path[0] == '/' && spec.Host == "" && spec.Port == 0 && spec.Source == SourceProxy
		tcpOK := !spec.IsUnix() && spec.Port != 0 && spec.Host != ""
		if spec.Raw != raw || !unixOK && !tcpOK || spec.Weight < 1 || spec.Weight > MaxWeight ||
			(spec.Scheme != SchemeHTTP && spec.Scheme != SchemeTLS) || spec.Proxy > ProxyV2 || spec.Source > SourceClient {
			t.Fatalf("ParseBackend(%q) = %+v", raw, spec)
		}
		// The canonical URL built from the spec parses to the same spec.
		host := spec.Host
		if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() {
			host = "[" + host + "]"
		}
		canon := fmt.Sprintf("%s://%s:%d?weight=%d&drain=%d&source=%s", spec.Scheme, host, spec.Port, spec.Weight,
			map[bool]int{false: 0, true: 1}[spec.Drain], spec.Source)
		if spec.IsUnix() {
			canon = fmt.Sprintf("%s+unix://%s?weight=%d&drain=%d", spec.Scheme, spec.Path, spec.Weight, map[bool]int{false: 0, true: 1}[spec.Drain])
		}
		if spec.Proxy != ProxyNone {
			canon += "&proxy=" + spec.Proxy.String()
		}
		again, err := ParseBackend(canon)
		if err != nil {
			t.Fatalf("canonical form %q of %q: %v", canon, raw, err)
		}
		again.Raw = raw
		if again != spec {
			t.Fatalf("ParseBackend(%q) = %+v, canonical %q gives %+v", raw, spec, canon, again)
		}
	})
}

// FuzzPick checks Pick's contract for every algorithm over arbitrary pools:
// data gives per backend a weight, a URL drain, a runtime drain and a down
// flag. Pick returns nil only when every backend drains, never a draining
// one, an up one other than avoid whenever one exists, and fails open to a
// down one only when no backend is up.
func FuzzPick(f *testing.F) {
	f.Add(uint8(0), []byte{1, 0, 2, 0, 3, 0}, uint64(7), uint8(0))
	f.Add(uint8(1), []byte{5, 4, 1, 8, 1, 0}, uint64(1), uint8(2))
	f.Add(uint8(3), []byte{200, 8, 0, 8}, uint64(99), uint8(255))
	f.Fuzz(func(t *testing.T, alg uint8, data []byte, hash uint64, avoidIdx uint8) {
		if len(data) == 0 || len(data) > 64 {
			return
		}
		var weights []int
		for _, d := range data {
			w := 1 + int(d&0x3f)*int(d>>6+1)*4%MaxWeight
			if d&0x40 != 0 {
				w = -w // drains by URL
			}
			weights = append(weights, w)
		}
		p := algPool(t, Algorithm(alg%4), weights...)
		for i, d := range data {
			b := p.Backends[i]
			if d&0x80 != 0 {
				markDown(t, b)
			}
			if d&0x20 != 0 && d&0x10 != 0 {
				b.SetDrain(true)
			}
		}
		var avoid *Backend
		if int(avoidIdx) < len(p.Backends) {
			avoid = p.Backends[avoidIdx]
		}
		anyOther, anyActive := false, false
		for _, b := range p.Backends {
			if !b.Draining() {
				anyActive = true
				if b.Up() && b != avoid {
					anyOther = true
				}
			}
		}
		for k := range 3 {
			got := p.Pick(hash+uint64(k), avoid)
			switch {
			case got == nil:
				if anyActive {
					t.Fatalf("nil with a non-draining backend")
				}
			case got.Draining():
				t.Fatalf("picked draining %v", got)
			case anyOther && (got == avoid || !got.Up()):
				t.Fatalf("picked %v (up %v, avoided %v) with another up backend", got, got.Up(), got == avoid)
			}
		}
	})
}

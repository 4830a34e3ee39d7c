package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/portier/portier/balancer"
)

// ForwardedHeaderNames are the values of a listener's forwarded_headers.
var ForwardedHeaderNames = []string{"x-forwarded-for", "x-forwarded-proto", "x-forwarded-port", "forwarded"}

func (p *parser) forwardedHeaders(n *yaml.Node, path string, l *Listener) error {
	if n.Kind != yaml.SequenceNode {
		return p.errorf(n, path, "want a list of header names (%s), got %s", strings.Join(ForwardedHeaderNames, ", "), kindName(n))
	}
	l.ForwardedHeaders = []string{}
	for i, item := range n.Content {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		s, err := p.str(deref(item), ipath)
		if err != nil {
			return err
		}
		s = strings.ToLower(s)
		known := false
		for _, h := range ForwardedHeaderNames {
			known = known || h == s
		}
		if !known {
			return p.errorf(item, ipath, "unknown header %q (want %s)", s, strings.Join(ForwardedHeaderNames, ", "))
		}
		l.ForwardedHeaders = append(l.ForwardedHeaders, s)
	}
	return nil
}

// health reads a health check: {check: tcp|http|tls|none, path, expect,
// interval, timeout, rise, fall}.
func (p *parser) health(n *yaml.Node, path string, h *balancer.HealthCheck) error {
	known := []string{"check", "path", "expect", "interval", "timeout", "rise", "fall"}
	var pathNode *yaml.Node
	err := p.fields(n, path, known, func(key string, k, v *yaml.Node) error {
		kp := path + "." + key
		switch key {
		case "check":
			s, err := p.str(v, kp)
			if err != nil {
				return err
			}
			kind, err := balancer.ParseCheckKind(s)
			if err != nil {
				return p.wrap(v, kp, err)
			}
			h.Kind = kind
		case "path":
			pathNode = v
			s, err := p.str(v, kp)
			if err != nil {
				return err
			}
			if !strings.HasPrefix(s, "/") || strings.ContainsAny(s, " \r\n\t") {
				return p.errorf(v, kp, "%q is not an absolute path without spaces", s)
			}
			h.Path = s
		case "expect":
			c, err := p.integer(v, kp)
			if err != nil {
				return err
			}
			if c < 100 || c > 599 {
				return p.errorf(v, kp, "%d is not an HTTP status", c)
			}
			h.Expect = c
		case "interval", "timeout":
			d, err := p.duration(v, kp)
			if err != nil {
				return err
			}
			if key == "interval" {
				h.Interval = d
			} else {
				h.Timeout = d
			}
		case "rise", "fall":
			c, err := p.integer(v, kp)
			if err != nil {
				return err
			}
			if c < 1 || c > 100 {
				return p.errorf(v, kp, "%d out of range 1..100", c)
			}
			if key == "rise" {
				h.Rise = c
			} else {
				h.Fall = c
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if pathNode != nil && h.Kind != balancer.CheckHTTP {
		return p.errorf(pathNode, path+".path", "path needs check: http")
	}
	if h.Timeout > 0 && h.Interval > 0 && h.Timeout > h.Interval {
		return p.errorf(n, path, "timeout %s is longer than interval %s", h.Timeout, h.Interval)
	}
	return nil
}

// redis reads the Redis route source.
func (p *parser) redis(n *yaml.Node, cfg *Config) error {
	r := &Redis{Schema: "hipache", Resync: DefaultResync, ShareHealth: true}
	var urlNode *yaml.Node
	known := []string{"url", "sentinel", "cluster", "schema", "resync", "snapshot_file", "share_health", "notify_keyspace_events"}
	err := p.fields(n, "redis", known, func(key string, k, v *yaml.Node) error {
		kp := "redis." + key
		switch key {
		case "url":
			urlNode = v
			s, err := p.str(v, kp)
			if err != nil {
				return err
			}
			u, err := url.Parse(s)
			if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") {
				return p.errorf(v, kp, "%q is not a redis://, rediss:// or unix:// URL", s)
			}
			r.URL = s
		case "sentinel":
			return p.fields(v, kp, []string{"master", "addresses"}, func(key string, k, v *yaml.Node) error {
				if key == "master" {
					s, err := p.str(v, kp+".master")
					r.SentinelMaster = s
					return err
				}
				addrs, err := p.hostPorts(v, kp+".addresses")
				r.SentinelAddrs = addrs
				return err
			})
		case "cluster":
			return p.fields(v, kp, []string{"addresses"}, func(key string, k, v *yaml.Node) error {
				addrs, err := p.hostPorts(v, kp+".addresses")
				r.ClusterAddrs = addrs
				return err
			})
		case "schema":
			s, err := p.str(v, kp)
			if err != nil {
				return err
			}
			if s != "hipache" && s != "sets" {
				return p.errorf(v, kp, "unknown schema %q (want hipache or sets)", s)
			}
			r.Schema = s
		case "resync":
			d, err := p.duration(v, kp)
			if err != nil {
				return err
			}
			r.Resync = d
		case "snapshot_file":
			s, err := p.str(v, kp)
			r.SnapshotFile = s
			return err
		case "share_health":
			return p.boolean(v, kp, &r.ShareHealth)
		case "notify_keyspace_events":
			s, err := p.str(v, kp)
			if err != nil {
				return err
			}
			if s != "auto" && s != "off" {
				return p.errorf(v, kp, "%q: want auto (portier enables what it needs) or off (leave the server's setting; changes apply at each resync unless the server already notifies)", s)
			}
			r.NotifyOff = s == "off"
		}
		return nil
	})
	if err != nil {
		return err
	}
	modes := 0
	for _, set := range []bool{r.URL != "", r.SentinelMaster != "" || len(r.SentinelAddrs) > 0, len(r.ClusterAddrs) > 0} {
		if set {
			modes++
		}
	}
	switch {
	case modes == 0:
		return p.errorf(n, "redis", "want url, sentinel or cluster")
	case len(r.ClusterAddrs) > 0 && modes > 1 && r.SentinelMaster != "":
		return p.errorf(n, "redis", "sentinel and cluster exclude each other")
	case (r.SentinelMaster != "") != (len(r.SentinelAddrs) > 0):
		return p.errorf(n, "redis.sentinel", "want both master and addresses")
	case urlNode != nil && modes > 1:
		// The URL then only carries the password and database.
	}
	cfg.Redis = r
	return nil
}

// DefaultResync is the Redis full resync period.
const DefaultResync = 30 * time.Second

func (p *parser) hostPorts(n *yaml.Node, path string) ([]string, error) {
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		return nil, p.errorf(n, path, "want a list of host:port, got %s", kindName(n))
	}
	var out []string
	for i, item := range n.Content {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		s, err := p.str(deref(item), ipath)
		if err != nil {
			return nil, err
		}
		if _, _, err := net.SplitHostPort(s); err != nil {
			return nil, p.wrap(item, ipath, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func (p *parser) boolean(n *yaml.Node, path string, b *bool) error {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		return p.errorf(n, path, "want true or false, got %s", kindName(n))
	}
	return n.Decode(b)
}

// admin reads `admin: 127.0.0.1:9090` or `admin: {address: ..., allow_public: true}`.
func (p *parser) admin(n *yaml.Node, cfg *Config) error {
	a := &Admin{}
	var addrNode *yaml.Node
	if n.Kind == yaml.ScalarNode {
		s, err := p.str(n, "admin")
		if err != nil {
			return err
		}
		a.Address, addrNode = s, n
	} else {
		err := p.fields(n, "admin", []string{"address", "allow_public"}, func(key string, k, v *yaml.Node) error {
			if key == "allow_public" {
				return p.boolean(v, "admin.allow_public", &a.AllowPublic)
			}
			s, err := p.str(v, "admin.address")
			a.Address, addrNode = s, v
			return err
		})
		if err != nil {
			return err
		}
		if addrNode == nil {
			return p.errorf(n, "admin", "missing \"address\"")
		}
	}
	host, _, err := net.SplitHostPort(a.Address)
	if err != nil {
		return p.wrap(addrNode, "admin.address", err)
	}
	ip, err := netip.ParseAddr(host)
	if host == "localhost" {
		ip, err = netip.IPv6Loopback(), nil
	}
	if err != nil {
		return p.errorf(addrNode, "admin.address", "%q: want an IP address", host)
	}
	if !ip.IsLoopback() && !a.AllowPublic {
		return p.errorf(addrNode, "admin.address", "%s is not a loopback address: the admin server exposes pprof and drain; set allow_public: true to bind it there", a.Address)
	}
	cfg.Admin = a
	return nil
}

// accessLog reads `access_log: {path: ..., format: json|text, queue: N}` or `access_log: PATH`.
func (p *parser) accessLog(n *yaml.Node, cfg *Config) error {
	a := &AccessLog{Format: "json"}
	if n.Kind == yaml.ScalarNode {
		s, err := p.str(n, "access_log")
		if err != nil {
			return err
		}
		a.Path = s
		cfg.AccessLog = a
		return nil
	}
	err := p.fields(n, "access_log", []string{"path", "format", "queue"}, func(key string, k, v *yaml.Node) error {
		kp := "access_log." + key
		switch key {
		case "path":
			s, err := p.str(v, kp)
			a.Path = s
			return err
		case "format":
			s, err := p.str(v, kp)
			if err != nil {
				return err
			}
			if s != "json" && s != "text" {
				return p.errorf(v, kp, "unknown format %q (want json or text)", s)
			}
			a.Format = s
		case "queue":
			q, err := p.integer(v, kp)
			if err != nil {
				return err
			}
			if q < 1 || q > 1<<20 {
				return p.errorf(v, kp, "%d out of range 1..%d", q, 1<<20)
			}
			a.Queue = q
		}
		return nil
	})
	if err != nil {
		return err
	}
	cfg.AccessLog = a
	return nil
}

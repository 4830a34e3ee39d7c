package admin

import (
	"cmp"
	"crypto/rand"
	"crypto/subtle"
	_ "embed"
	"encoding/hex"
	"html/template"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portier/portier/balancer"
)

// The status page (GET /) is server-rendered: html/template, no framework;
// status.html's few lines of JS only re-fetch the page for auto-refresh. It
// pages routes and backends, so a million routes cost one walk of the
// table per view, never a million rows.

//go:embed status.html
var statusHTML string

var statusTmpl = template.Must(template.New("status").Funcs(template.FuncMap{
	"bytes": humanBytes,
	"ago":   ago,
}).Parse(statusHTML))

// Page sizes of the status page.
const (
	routesPerPage   = 50
	backendsPerPage = 100
)

// statusPage is what status.html renders.
type statusPage struct {
	Now         time.Time
	AdminAddr   string
	SSHHint     string // "ssh -L ..." when the admin address is loopback
	CSRF        string
	Self        string // this page's URL (path and query), for the drain form to return to
	Open        int64
	ConnRate    float64 // connections accepted per second, all listeners
	ReqRate     float64 // HTTP requests per second, all listeners
	Listeners   []listenerRow
	Redis       *RedisStatus
	RedisAge    string
	Backends    []backendRow
	BackendsUp  int
	BackendsN   int // backends matching the state filter
	BackendsAll int
	State       string // backend filter: "", "down", "draining"
	BPage       pager
	Query       string
	Routes      []RouteInfo
	RoutesN     int // matching the query
	RoutesAll   int
	RPage       pager
}

type listenerRow struct {
	Name, Addr               string
	Open, Accepted, Requests int64
	ConnRate, ReqRate        float64
	BytesUp, BytesDown       int64
}

type backendRow struct {
	Addr, Scheme    string
	State           string // "up", "down", "draining"
	Detail          string // why down: fleet, checks
	Active          int64
	LastCheck       time.Time
	LastError       string
	ConnectFailures int64
}

type pager struct {
	Page, Pages int
	Prev, Next  string // URLs; "" when none
}

// rateSample is one reading of the listeners' counters.
type rateSample struct {
	at                 time.Time
	accepted, requests []int64
}

// rates turns successive readings into per-second rates. Readings closer
// than a second apart reuse the last rates, so that several open pages do
// not each see a rate over a few milliseconds.
type rates struct {
	mu         sync.Mutex
	last       rateSample
	conn, reqs []float64
}

func (r *rates) update(s rateSample) (conn, reqs []float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	dt := s.at.Sub(r.last.at).Seconds()
	if r.last.at.IsZero() || len(r.last.accepted) != len(s.accepted) {
		r.last = s
		r.conn, r.reqs = make([]float64, len(s.accepted)), make([]float64, len(s.accepted))
	} else if dt >= 1 {
		for i := range s.accepted {
			r.conn[i] = float64(s.accepted[i]-r.last.accepted[i]) / dt
			r.reqs[i] = float64(s.requests[i]-r.last.requests[i]) / dt
		}
		r.last = s
	}
	return slices.Clone(r.conn), slices.Clone(r.reqs)
}

func newCSRFToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails on Linux
	return hex.EncodeToString(b[:])
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	p := statusPage{Now: time.Now(), AdminAddr: s.Addr(), CSRF: s.csrf, Self: r.URL.RequestURI(),
		Query: strings.TrimSpace(q.Get("q")), State: q.Get("state")}
	if host, port, err := net.SplitHostPort(p.AdminAddr); err == nil {
		if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
			p.SSHHint = "ssh -L " + port + ":" + p.AdminAddr + " <this host>"
		}
	}
	s.statusTraffic(&p)
	if s.opts.Redis != nil {
		rs := s.opts.Redis()
		p.Redis = &rs
		p.RedisAge = "never"
		if !rs.LastSync.IsZero() {
			p.RedisAge = ago(p.Now, rs.LastSync)
		}
	}
	t := s.opts.Router.Load()
	s.statusBackends(&p, t, q)
	statusRoutes(&p, t, q)

	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'")
	if err := statusTmpl.Execute(w, &p); err != nil {
		s.opts.Logger.Warn("status page", "err", err)
	}
}

func (s *Server) statusTraffic(p *statusPage) {
	st := s.opts.Engine.Stats()
	addrs := s.opts.Engine.Addrs()
	sample := rateSample{at: p.Now}
	for i := range st.Listeners {
		l := &st.Listeners[i]
		row := listenerRow{Name: l.Name, Open: l.Open.Load(), Accepted: l.Accepted.Load(),
			Requests: l.Requests.Load(), BytesUp: l.BytesUp.Load(), BytesDown: l.BytesDown.Load()}
		if i < len(addrs) {
			row.Addr = addrs[i].String()
		}
		sample.accepted = append(sample.accepted, row.Accepted)
		sample.requests = append(sample.requests, row.Requests)
		p.Open += row.Open
		p.Listeners = append(p.Listeners, row)
	}
	conn, reqs := s.rates.update(sample)
	for i := range p.Listeners {
		p.Listeners[i].ConnRate, p.Listeners[i].ReqRate = conn[i], reqs[i]
		p.ConnRate += conn[i]
		p.ReqRate += reqs[i]
	}
}

// statusBackends lists the backends, down ones first, then draining.
func (s *Server) statusBackends(p *statusPage, t *balancer.Table, q url.Values) {
	var rows []backendRow
	if s.opts.Health != nil {
		for _, b := range s.opts.Health() {
			row := backendRow{Addr: b.Addr, Scheme: b.Scheme.String(), State: "up", Active: b.Active,
				LastCheck: b.LastCheck, LastError: b.LastError, ConnectFailures: b.ConnectFailures}
			switch {
			case !b.Up:
				row.State, row.Detail = "down", "checks or connect failures"
			case b.FleetDown:
				row.State, row.Detail = "down", "reported down by another portier"
			case b.Draining:
				row.State = "draining"
			}
			rows = append(rows, row)
		}
	} else if t != nil {
		seen := map[string]bool{}
		for _, b := range t.Backends() {
			key := b.Addr.String() + " " + b.Spec.Scheme.String()
			if seen[key] {
				continue
			}
			seen[key] = true
			row := backendRow{Addr: b.Addr.String(), Scheme: b.Spec.Scheme.String(), State: "up", Active: b.Active()}
			if !b.Up() {
				row.State = "down"
			} else if b.Draining() {
				row.State = "draining"
			}
			rows = append(rows, row)
		}
	}
	order := map[string]int{"down": 0, "draining": 1, "up": 2}
	slices.SortStableFunc(rows, func(a, b backendRow) int { return cmp.Compare(order[a.State], order[b.State]) })
	p.BackendsAll = len(rows)
	var match []backendRow
	for _, r := range rows {
		if r.State == "up" {
			p.BackendsUp++
		}
		if p.State == "" || r.State == p.State {
			match = append(match, r)
		}
	}
	p.BackendsN = len(match)
	var lo, hi int
	p.BPage, lo, hi = page(q, "bp", len(match), backendsPerPage)
	p.Backends = match[lo:hi]
}

// statusRoutes pages the routes whose name contains the query.
func statusRoutes(p *statusPage, t *balancer.Table, q url.Values) {
	if t == nil {
		return
	}
	p.RoutesAll = t.Len()
	want := strings.ToLower(p.Query)
	n, _ := strconv.Atoi(q.Get("rp"))
	lo := max(n-1, 0) * routesPerPage
	var specs []balancer.RouteSpec
	if want == "" {
		// Every route matches: the count is known, and the walk stops at
		// the end of the page.
		p.RoutesN = p.RoutesAll
		lo = min(lo, max(p.RoutesN-1, 0)/routesPerPage*routesPerPage)
		i := 0
		t.EachRoute(func(r *balancer.RouteSpec) bool {
			if i >= lo {
				specs = append(specs, *r)
			}
			i++
			return len(specs) < routesPerPage
		})
	} else {
		t.EachRoute(func(r *balancer.RouteSpec) bool {
			if !strings.Contains(r.Name, want) {
				return true
			}
			if p.RoutesN >= lo && p.RoutesN < lo+routesPerPage {
				specs = append(specs, *r)
			}
			p.RoutesN++
			return true
		})
	}
	p.RPage, _, _ = page(q, "rp", p.RoutesN, routesPerPage)
	if want != "" && p.RPage.Page != max(n, 1) { // asked past the end: show the last page
		lo = (p.RPage.Page - 1) * routesPerPage
		specs = specs[:0]
		i := 0
		t.EachRoute(func(r *balancer.RouteSpec) bool {
			if want == "" || strings.Contains(r.Name, want) {
				if i >= lo {
					specs = append(specs, *r)
				}
				i++
			}
			return len(specs) < routesPerPage
		})
	}
	var byRaw map[string]*balancer.Backend
	for _, r := range specs {
		p.Routes = append(p.Routes, routeInfo(t, r, &byRaw))
	}
}

// page reads the 1-based page number param of q for n items, clamped to the
// pages there are, and returns the pager and the items' index range.
func page(q url.Values, param string, n, per int) (pg pager, lo, hi int) {
	pg.Pages = max((n+per-1)/per, 1)
	pg.Page, _ = strconv.Atoi(q.Get(param))
	pg.Page = min(max(pg.Page, 1), pg.Pages)
	link := func(to int) string {
		v := url.Values{}
		for k, vs := range q {
			v[k] = vs
		}
		v.Set(param, strconv.Itoa(to))
		return "/?" + v.Encode()
	}
	if pg.Page > 1 {
		pg.Prev = link(pg.Page - 1)
	}
	if pg.Page < pg.Pages {
		pg.Next = link(pg.Page + 1)
	}
	lo = min((pg.Page-1)*per, n)
	return pg, lo, min(lo+per, n)
}

// statusDrain is the status page's drain/undrain form: POST with the CSRF
// token, then back to the page (303).
func (s *Server) statusDrain(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form: "+err.Error(), http.StatusBadRequest)
		return
	}
	if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(s.csrf)) != 1 {
		http.Error(w, "missing or stale CSRF token: reload the status page and try again", http.StatusForbidden)
		return
	}
	addr, err := backendAddrText(r.PostForm.Get("addr"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	on := r.PostForm.Get("on") == "1"
	if n := s.setDrain(addr, on); n == 0 {
		http.Error(w, "no backend with address "+addr, http.StatusNotFound)
		return
	}
	back := r.PostForm.Get("back")
	// Only a path on this server: never an open redirect.
	if !strings.HasPrefix(back, "/") || strings.HasPrefix(back, "//") || strings.HasPrefix(back, "/\\") {
		back = "/"
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64) + " " + string("KMGTPE"[exp]) + "iB"
}

// ago says how long before now t was, to the second.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return now.Sub(t).Truncate(time.Second).String() + " ago"
}

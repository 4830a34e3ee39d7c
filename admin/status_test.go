package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portier/portier/balancer"
)

var csrfRE = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

func (e *env) statusPage(t *testing.T, query string) string {
	t.Helper()
	resp, body := e.do(t, http.MethodGet, "/"+query)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /%s: %d %s", query, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return string(body)
}

// postForm posts form to path without following redirects.
func (e *env) postForm(t *testing.T, path string, form url.Values, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestStatusPageAndDrainForm(t *testing.T) {
	e := newEnv(t, nil)
	if st, _ := e.proxyGet(t, "app.test"); st != 200 {
		t.Fatalf("proxy GET: %d", st)
	}
	page := e.statusPage(t, "")
	for _, want := range []string{
		`<td>web</td><td>` + e.proxyAddr + `</td>`,
		`data-backend="` + e.beAddr + `" data-scheme="http"`,
		`data-state="up"`,
		`data-route="app.test"`, `data-route="*.wild.test"`, `data-route="secure.test"`,
		`ssh -L `,
		`3 routes`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token in the page")
	}
	token := m[1]
	draining := func() bool {
		for _, b := range e.router.Load().Backends() {
			if b.Addr.String() == e.beAddr {
				return b.Draining()
			}
		}
		t.Fatal("backend gone")
		return false
	}
	form := func(csrf, on, back string) url.Values {
		return url.Values{"csrf": {csrf}, "addr": {e.beAddr}, "on": {on}, "back": {back}}
	}
	tests := []struct {
		name     string
		form     url.Values
		hdr      map[string]string
		status   int
		location string
		draining bool
	}{
		{"no token", url.Values{"addr": {e.beAddr}, "on": {"1"}}, nil, http.StatusForbidden, "", false},
		{"wrong token", form(strings.Repeat("0", 64), "1", "/"), nil, http.StatusForbidden, "", false},
		{"cross-site", form(token, "1", "/"), map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden, "", false},
		{"other origin", form(token, "1", "/"), map[string]string{"Origin": "http://evil.example"}, http.StatusForbidden, "", false},
		{"unknown addr", url.Values{"csrf": {token}, "addr": {"127.0.0.9:1"}, "on": {"1"}}, nil, http.StatusNotFound, "", false},
		{"drain", form(token, "1", "/?q=app"), nil, http.StatusSeeOther, "/?q=app", true},
		{"undrain, no open redirect", form(token, "0", "//evil.example/"), nil, http.StatusSeeOther, "/", false},
	}
	for _, tc := range tests {
		resp := e.postForm(t, "/status/drain", tc.form, tc.hdr)
		if resp.StatusCode != tc.status || resp.Header.Get("Location") != tc.location {
			t.Errorf("%s: %d Location %q, want %d %q", tc.name, resp.StatusCode, resp.Header.Get("Location"), tc.status, tc.location)
		}
		if draining() != tc.draining {
			t.Errorf("%s: draining %v, want %v", tc.name, draining(), tc.draining)
		}
	}
	// The JSON API refuses browsers' cross-site POSTs too.
	resp := e.postForm(t, "/backends/drain?addr="+e.beAddr+"&on=1", nil, map[string]string{"Sec-Fetch-Site": "cross-site"})
	if resp.StatusCode != http.StatusForbidden || draining() {
		t.Errorf("cross-site POST /backends/drain: %d, draining %v", resp.StatusCode, draining())
	}
	if resp, _ := e.do(t, http.MethodGet, "/nope"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nope: %d", resp.StatusCode)
	}
}

// TestStatusPagesRoutes: routes are paged and searched, never all rendered.
func TestStatusPagesRoutes(t *testing.T) {
	const n = 1234
	routes := make([]balancer.RouteSpec, n)
	for i := range routes {
		routes[i] = balancer.RouteSpec{Name: fmt.Sprintf("r%04d.test", i), Backends: []string{fmt.Sprintf("http://127.0.0.%d:%d", 1+i%3, 1000+i%7)}}
	}
	table, err := balancer.NewTable(context.Background(), routes, "", balancer.TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(o *Options) { o.Router = balancer.NewRouter(table) })
	rows := regexp.MustCompile(`data-route="([^"]+)"`)
	tests := []struct {
		query       string
		first, last string
		rows        int
		text        string
	}{
		{"", "r0000.test", "r0049.test", 50, "page 1 of 25"},
		{"?rp=2", "r0050.test", "r0099.test", 50, "page 2 of 25"},
		{"?rp=25", "r1200.test", "r1233.test", 34, "page 25 of 25"},
		{"?rp=999", "r1200.test", "r1233.test", 34, "page 25 of 25"},
		{"?q=R0123", "r0123.test", "r0123.test", 1, "1 of 1234 routes match"},
		{"?q=r01", "r0100.test", "r0149.test", 50, "100 of 1234 routes match"},
		{"?q=r01&rp=2", "r0150.test", "r0199.test", 50, "page 2 of 2"},
		{"?q=nothing", "", "", 0, "0 of 1234 routes match"},
	}
	for _, tc := range tests {
		page := e.statusPage(t, tc.query)
		got := rows.FindAllStringSubmatch(page, -1)
		if len(got) != tc.rows || tc.rows > 0 && (got[0][1] != tc.first || got[len(got)-1][1] != tc.last) {
			t.Errorf("%q: %d rows (%v...), want %d %s..%s", tc.query, len(got), got[:min(len(got), 2)], tc.rows, tc.first, tc.last)
		}
		if !strings.Contains(page, tc.text) {
			t.Errorf("%q: page lacks %q", tc.query, tc.text)
		}
	}
	// 21 distinct backends: one page; the state filter narrows them.
	if page := e.statusPage(t, "?state=draining"); strings.Contains(page, "data-backend=") {
		t.Error("state=draining lists backends that are not draining")
	}
}

// TestStatusShowsALPNPools: a route's per-ALPN pools are listed in /routes
// and on the status page.
func TestStatusShowsALPNPools(t *testing.T) {
	table, err := balancer.NewTable(context.Background(), []balancer.RouteSpec{{Name: "site.test",
		Backends: []string{"tls://127.0.0.1:1"},
		ALPN:     []balancer.ALPNRoute{{Protocol: "acme-tls/1", Backends: []string{"tls://127.0.0.1:2"}}}}}, "", balancer.TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(o *Options) { o.Router = balancer.NewRouter(table) })
	_, body := e.do(t, http.MethodGet, "/routes")
	var rr routesResponse
	if err := json.Unmarshal(body, &rr); err != nil || len(rr.Routes) != 1 {
		t.Fatalf("/routes: %v %s", err, body)
	}
	r := rr.Routes[0]
	if len(r.ALPN) != 1 || r.ALPN[0].Protocol != "acme-tls/1" || len(r.ALPN[0].Backends) != 1 || r.ALPN[0].Backends[0].Addr != "127.0.0.1:2" {
		t.Errorf("/routes alpn %+v", r.ALPN)
	}
	if page := e.statusPage(t, ""); !strings.Contains(page, `<li data-alpn="acme-tls/1">`) || !strings.Contains(page, "tls://127.0.0.1:2 <span") {
		t.Error("status page does not list the ALPN pool")
	}
}

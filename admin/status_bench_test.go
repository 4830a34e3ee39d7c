package admin

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/portier/portier/balancer"
)

var (
	bench1MOnce  sync.Once
	bench1MTable *balancer.Table
)

// table1M is a table of 1,000,000 routes over 1,000 backends, built once.
func table1M(b *testing.B) *balancer.Table {
	if testing.Short() {
		b.Skip("-short: the 1,000,000-route table is not built")
	}
	bench1MOnce.Do(func() {
		routes := make([]balancer.RouteSpec, 1_000_000)
		for i := range routes {
			routes[i] = balancer.RouteSpec{Name: fmt.Sprintf("app%07d.example.test", i),
				Backends: []string{fmt.Sprintf("http://10.0.%d.%d:8080", i/1000%4, i%250+1)}}
		}
		t, err := balancer.NewTable(context.Background(), routes, "", balancer.TableOptions{})
		if err != nil {
			b.Fatal(err)
		}
		bench1MTable = t
	})
	return bench1MTable
}

// BenchmarkStatusPage1M renders status pages over a million routes: the
// first page, a search matching few names, and a page deep in the list.
func BenchmarkStatusPage1M(b *testing.B) {
	table := table1M(b)
	e := newEnv(b, func(o *Options) { o.Router = balancer.NewRouter(table) })
	for _, q := range []string{"", "?q=app0999", "?rp=19000"} {
		b.Run("query="+q, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				e.srv.status(rec, httptest.NewRequest(http.MethodGet, "/"+q, nil))
				if rec.Code != 200 {
					b.Fatal(rec.Code)
				}
				_, _ = io.Copy(io.Discard, rec.Body)
			}
		})
	}
}

// BenchmarkRoutesDown1M is the uncached walk behind portier_routes_down.
func BenchmarkRoutesDown1M(b *testing.B) {
	table := table1M(b)
	b.ReportAllocs()
	for b.Loop() {
		if n := routesDown(table); n != 0 {
			b.Fatal(n)
		}
	}
}

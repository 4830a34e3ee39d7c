package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Backend health: active checks taking a dead backend out and a revived one
// back in, admin draining, and the split of each balancing algorithm.

// healthBackends starts n backends named b0, b1, ... that answer their name.
func healthBackends(t *testing.T, n int, h http.Handler) []*opsBackend {
	bes := make([]*opsBackend, n)
	for i := range bes {
		bes[i] = startOpsBackend(t, fmt.Sprintf("b%d", i), h)
	}
	return bes
}

// healthRoutes reads the admin server's /routes.
type healthRoute struct {
	Name     string `json:"name"`
	Balance  string `json:"balance"`
	Backends []struct {
		Addr     string `json:"addr"`
		Up       bool   `json:"up"`
		Draining bool   `json:"draining"`
	} `json:"backends"`
}

func healthRoutes(t *testing.T, admin string) []healthRoute {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/routes")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Routes []healthRoute }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Routes
}

// healthUp is portier_backend_up of addr: 1, 0, or -1 when not reported.
func healthUp(t *testing.T, admin, addr string) float64 {
	v, ok := opsMetric(opsScrape(t, admin), "portier_backend_up", map[string]string{"backend": addr, "scheme": "http"})
	if !ok {
		return -1
	}
	return v
}

func TestHealthKillBackendUnderLoad(t *testing.T) {
	bes := healthBackends(t, 3, nil)
	p := startPortier(t, opsConfig(fmt.Sprintf(`  app.test:
    backends: [http://%s, http://%s, http://%s]
    health: {check: http, path: /healthz, interval: 200ms, timeout: 150ms, rise: 2, fall: 2}`,
		bes[0].addr, bes[1].addr, bes[2].addr), "admin: 127.0.0.1:0\n"))
	web, admin := p.addr("web"), opsAdminAddr(t, p)
	for _, b := range bes {
		if _, ok := opsWait(3*time.Second, func() bool { return healthUp(t, admin, b.addr) == 1 }); !ok {
			t.Fatalf("%s (%s) never reported up", b.name, b.addr)
		}
	}

	// A few workers with a short pause: steady traffic on every backend
	// without taking the shared CPUs from portier's health checker.
	loadStart := time.Now()
	load := startOpsLoad(web, "app.test", 3, 10*time.Second, 3000, 3*time.Millisecond)
	defer load.finish()
	victim := bes[0]
	time.Sleep(time.Second)

	victim.kill()
	toDown, ok := opsWait(2*time.Second, func() bool { return healthUp(t, admin, victim.addr) == 0 })
	if !ok {
		t.Errorf("%s not marked down %v after it died (fall 2 x interval 200ms)", victim.addr, toDown)
	}
	// Let the load run against the two survivors for a while.
	time.Sleep(700 * time.Millisecond)
	failedWhileDown := load.failed.Load()

	if err := victim.start(); err != nil {
		t.Fatalf("restart on the same port: %v", err)
	}
	toUp, ok := opsWait(3*time.Second, func() bool { return healthUp(t, admin, victim.addr) == 1 })
	if !ok {
		t.Errorf("%s not back up %v after it restarted (rise 2 x interval 200ms)", victim.addr, toUp)
	}
	hitsAtUp := victim.hits.Load()
	toTraffic, ok := opsWait(2*time.Second, func() bool { return victim.hits.Load() >= hitsAtUp+5 })
	if !ok {
		t.Errorf("%s got %d requests in %v after coming back up, want >= 5", victim.addr, victim.hits.Load()-hitsAtUp, toTraffic)
	}
	time.Sleep(time.Until(loadStart.Add(5 * time.Second))) // ~5 s of load in all
	load.finish()
	total := time.Since(loadStart)
	t.Logf("kill under load over %v: %s; down after %v, up %v after restart, 5 requests %v after that",
		total.Round(100*time.Millisecond), load.report(), toDown.Round(time.Millisecond),
		toUp.Round(time.Millisecond), toTraffic.Round(time.Millisecond))
	// A refused connect is retried on another backend, and so is a request
	// whose backend resets it before answering (connections queued in the
	// dying backend's accept queue): no client may notice.
	if n := load.failed.Load(); n != 0 {
		t.Errorf("%d client requests failed (%d by the time the backend restarted): %v\n%s",
			n, failedWhileDown, load.failures, opsGrep(p.logText(), "WARN"))
	}
	if ok := load.ok.Load(); ok < 100 {
		t.Errorf("only %d requests succeeded: the load did not run", ok)
	}
	if cf, _ := opsMetric(opsScrape(t, admin), "portier_backend_connect_failures_total", nil); cf == 0 {
		t.Logf("no connect failed: the health checks took %s out before any request tried it", victim.addr)
	}
}

func TestHealthDrain(t *testing.T) {
	started := make(chan string, 1)
	release := make(chan struct{})
	// /long answers only when the test releases it: a request in flight
	// on a backend while it is drained.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := w.Header().Get("X-Backend")
		if r.URL.Path == "/long" {
			started <- name
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
			io.WriteString(w, "long done by "+name)
			return
		}
		io.WriteString(w, name)
	})
	bes := healthBackends(t, 3, h)
	p := startPortier(t, opsConfig(fmt.Sprintf("  app.test: [http://%s, http://%s, http://%s]",
		bes[0].addr, bes[1].addr, bes[2].addr), "admin: 127.0.0.1:0\n"))
	web, admin := p.addr("web"), opsAdminAddr(t, p)
	addrOf := map[string]string{}
	for _, b := range bes {
		addrOf[b.name] = b.addr
	}

	type result struct {
		status int
		body   string
		err    error
	}
	long := make(chan result, 1)
	go func() {
		st, body, err := opsGet(opsClient(nil), web, "app.test", "/long")
		long <- result{st, body, err}
	}()
	var victim string
	select {
	case victim = <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the long request never reached a backend")
	}

	drain := func(addr, on string) (int, string) {
		t.Helper()
		resp, err := http.Post("http://"+admin+"/backends/drain?addr="+addr+"&on="+on, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, bad := range []struct{ addr, on string }{
		{"127.0.0.1:1", "1"},      // no such backend
		{"localhost:80", "1"},     // not IP:PORT
		{addrOf[victim], "maybe"}, // not 1 or 0
	} {
		if st, body := drain(bad.addr, bad.on); st/100 != 4 {
			t.Errorf("drain addr=%s on=%s: %d %s, want a 4xx", bad.addr, bad.on, st, body)
		}
	}
	if st, body := drain(addrOf[victim], "1"); st != 200 || !strings.Contains(body, `"draining": true`) {
		t.Fatalf("drain %s: %d %s", victim, st, body)
	}
	for _, r := range healthRoutes(t, admin) {
		for _, b := range r.Backends {
			if b.Draining != (b.Addr == addrOf[victim]) {
				t.Errorf("/routes: %s draining=%v after draining %s", b.Addr, b.Draining, addrOf[victim])
			}
		}
	}

	count := func(n int) map[string]int {
		t.Helper()
		per := map[string]int{}
		c := opsClient(nil)
		for i := 0; i < n; i++ {
			st, body, err := opsGet(c, web, "app.test", "/")
			if err != nil || st != 200 {
				t.Fatalf("request %d: %d %v", i, st, err)
			}
			per[body]++
		}
		return per
	}
	per := count(51)
	t.Logf("draining %s: 51 requests went %v", victim, per)
	if per[victim] != 0 {
		t.Errorf("drained %s got %d new connections", victim, per[victim])
	}
	for _, b := range bes {
		if b.name != victim && per[b.name] == 0 {
			t.Errorf("%s got no requests while %s drained", b.name, victim)
		}
	}

	// The request that was in flight when the drain began still completes.
	close(release)
	select {
	case r := <-long:
		if r.err != nil || r.status != 200 || r.body != "long done by "+victim {
			t.Errorf("long request on the drained backend: %d %q %v", r.status, r.body, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("long request did not finish")
	}

	if st, body := drain(addrOf[victim], "0"); st != 200 {
		t.Fatalf("undrain: %d %s", st, body)
	}
	if per := count(30); per[victim] == 0 {
		t.Errorf("%s got no requests after undrain: %v", victim, per)
	}
}

func TestHealthAlgorithms(t *testing.T) {
	bes := healthBackends(t, 3, nil)
	all := fmt.Sprintf("[http://%s, http://%s, http://%s]", bes[0].addr, bes[1].addr, bes[2].addr)
	p := startPortier(t, opsConfig(fmt.Sprintf(`  rr.test: ["http://%s?weight=1", "http://%s?weight=3"]
  lc.test: {backends: %s, balance: least_conn}
  p2c.test: {backends: %s, balance: p2c}
  sh.test: {backends: %s, balance: source_hash}`, bes[0].addr, bes[1].addr, all, all, all), "admin: 127.0.0.1:0\n"))
	web, admin := p.addr("web"), opsAdminAddr(t, p)
	balance := map[string]string{}
	for _, r := range healthRoutes(t, admin) {
		balance[r.Name] = r.Balance
	}
	if want := map[string]string{"rr.test": "round_robin", "lc.test": "least_conn", "p2c.test": "p2c", "sh.test": "source_hash"}; fmt.Sprint(balance) != fmt.Sprint(want) {
		t.Errorf("/routes balance = %v, want %v", balance, want)
	}

	split := func(host string, n int, local net.IP) map[string]int {
		t.Helper()
		per := map[string]int{}
		c := opsClient(local)
		for i := 0; i < n; i++ {
			st, body, err := opsGet(c, web, host, "/")
			if err != nil || st != 200 {
				t.Fatalf("%s request %d: %d %v", host, i, st, err)
			}
			per[body]++
		}
		return per
	}

	const n = 300
	t.Run("round_robin 1:3", func(t *testing.T) {
		per := split("rr.test", n, nil)
		t.Logf("%d requests: %v", n, per)
		// Smooth weighted round robin is exact over whole cycles of 4.
		if d := per["b0"] - n/4; d < -n*3/100 || d > n*3/100 || per["b0"]+per["b1"] != n {
			t.Errorf("split %v, want b0 %d±%d and b1 the rest", per, n/4, n*3/100)
		}
	})
	for _, host := range []string{"lc.test", "p2c.test"} {
		t.Run(host, func(t *testing.T) {
			per := split(host, n, nil)
			t.Logf("%d requests: %v", n, per)
			// One request at a time leaves every backend idle, so each pick
			// is a tie; ties must not all land on one backend. 10% is far
			// below an even third and far above chance for p2c.
			for _, b := range bes {
				if per[b.name] < n/10 {
					t.Errorf("%s got %d of %d requests: %v", b.name, per[b.name], n, per)
				}
			}
		})
	}
	t.Run("source_hash", func(t *testing.T) {
		owner := map[string]string{} // client IP -> the backend it reached
		used := map[string]int{}
		for i := 10; i < 30; i++ {
			ip := fmt.Sprintf("127.0.0.%d", i)
			per := split("sh.test", 5, net.ParseIP(ip))
			if len(per) != 1 {
				t.Errorf("client %s reached several backends: %v", ip, per)
			}
			for b := range per {
				owner[ip] = b
				used[b]++
			}
		}
		t.Logf("20 client addresses x 5 requests: clients per backend %v", used)
		if len(used) < 2 {
			t.Errorf("20 client addresses all hashed to one backend: %v", owner)
		}
		// Stickiness holds across time too, not only within one burst.
		var mu sync.Mutex
		var wg sync.WaitGroup
		for ip, want := range owner {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, body, err := opsGet(opsClient(net.ParseIP(ip)), web, "sh.test", "/")
				mu.Lock()
				defer mu.Unlock()
				if err != nil || st != 200 || body != want {
					t.Errorf("client %s again: %d %q %v, want %s", ip, st, body, err, want)
				}
			}()
		}
		wg.Wait()
	})
}

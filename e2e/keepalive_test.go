package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// kaConn records what happened on one client connection: how many answers
// it carried, whether the last said Connection: close, and whether the
// server closed it (EOF) after an answer that did not say so.
type kaConn struct {
	net.Conn
	mu        sync.Mutex
	answers   int
	lastClose bool
	eof       bool
	eofAfter  bool // the EOF came although the last answer did not say close
}

func (c *kaConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if errors.Is(err, io.EOF) {
		c.mu.Lock()
		if !c.eof && c.answers > 0 && !c.lastClose {
			c.eofAfter = true
		}
		c.eof = true
		c.mu.Unlock()
	}
	return n, err
}

// kaClients are 8 Go http.Client workers, each over its own keep-alive
// connection, alternating POSTs and GETs and checking every answer.
type kaClients struct {
	mu      sync.Mutex
	conns   []*kaConn
	ok      atomic.Int64
	errs    []string
	stop    atomic.Bool
	wg      sync.WaitGroup
	stopped []atomic.Bool // per worker: got an answer saying close while stopOnClose
}

func startKAClients(addr, host string, stopOnClose *atomic.Bool) *kaClients {
	k := &kaClients{stopped: make([]atomic.Bool, 8)}
	for w := range 8 {
		var cur *kaConn
		tr := &http.Transport{
			MaxIdleConnsPerHost: 1,
			MaxConnsPerHost:     1,
			DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				kc := &kaConn{Conn: c}
				k.mu.Lock()
				k.conns = append(k.conns, kc)
				k.mu.Unlock()
				return kc, nil
			},
		}
		client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			defer tr.CloseIdleConnections()
			trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { cur = i.Conn.(*kaConn) }}
			for i := 0; i < 100000 && !k.stop.Load(); i++ {
				want := fmt.Sprintf("w%d-%d", w, i)
				var req *http.Request
				if i%2 == 0 {
					req, _ = http.NewRequest("POST", "http://"+host+"/echo", strings.NewReader(want))
				} else {
					req, _ = http.NewRequest("GET", "http://"+host+"/echo?q="+want, nil)
				}
				req = req.WithContext(httptrace.WithClientTrace(context.Background(), trace))
				resp, err := client.Do(req)
				var body []byte
				if err == nil {
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && (resp.StatusCode != 200 || string(body) != want) {
						err = fmt.Errorf("status %d body %q, want %q", resp.StatusCode, body, want)
					}
				}
				if err != nil {
					k.mu.Lock()
					k.errs = append(k.errs, fmt.Sprintf("%s %s: %v", req.Method, want, err))
					k.mu.Unlock()
					continue
				}
				k.ok.Add(1)
				cur.mu.Lock()
				cur.answers++
				cur.lastClose = resp.Close
				cur.mu.Unlock()
				if resp.Close && stopOnClose.Load() {
					k.stopped[w].Store(true)
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	return k
}

func (k *kaClients) finish() {
	k.stop.Store(true)
	k.wg.Wait()
}

// check: no request failed, and no connection was closed by the server
// after an answer that did not say Connection: close.
func (k *kaClients) check(t *testing.T, phase string) {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.errs) > 0 {
		t.Errorf("%s: %d requests failed (of %d ok), first: %s", phase, len(k.errs), k.ok.Load(), k.errs[0])
	}
	closed, bad := 0, 0
	for _, c := range k.conns {
		c.mu.Lock()
		if c.eof || c.lastClose {
			closed++
		}
		if c.eofAfter {
			bad++
		}
		c.mu.Unlock()
	}
	if bad > 0 {
		t.Errorf("%s: %d connections were closed without Connection: close on their last answer", phase, bad)
	}
	t.Logf("%s: %d answers over %d connections, %d closed (each after an answer saying close)", phase, k.ok.Load(), len(k.conns), closed)
}

func echoBackend(t *testing.T) string {
	t.Helper()
	s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" {
			b, _ := io.ReadAll(r.Body)
			w.Write(b)
			return
		}
		io.WriteString(w, r.URL.Query().Get("q"))
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

// TestKeepAliveClientsAcrossRestartAndDrain: 8 keep-alive clients POSTing
// and GETting through a zero-downtime restart (B started on the same port,
// SIGTERM to A), then through a plain SIGTERM drain of B: no request fails,
// and every connection portier closed got Connection: close on its last
// answer first (Go cannot retry a POST on a connection closed under it).
func TestKeepAliveClientsAcrossRestartAndDrain(t *testing.T) {
	opsMigrateReq(t)
	be := echoBackend(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := fmt.Sprintf("listeners:\n  - {name: web, address: \"%s\", protocol: http}\nroutes:\n  ka.test: [http://%s]\n", addr, be)

	a := startPortier(t, cfg)
	var stopOnClose atomic.Bool
	load := startKAClients(addr, "ka.test", &stopOnClose)
	time.Sleep(500 * time.Millisecond)
	b := startPortier(t, cfg)
	time.Sleep(300 * time.Millisecond)
	okBefore := load.ok.Load()
	if err := a.stop(t); err != nil {
		t.Errorf("A exit: %v\n%s", err, a.logText())
	}
	okAtExit := load.ok.Load()
	time.Sleep(time.Second)
	if load.ok.Load() == okAtExit {
		t.Errorf("no answer after A exited: B is not serving")
	}
	t.Logf("restart: %d answers before SIGTERM to A, %d during its drain", okBefore, okAtExit-okBefore)

	// Plain drain: B stops; each client stops at its answer saying close
	// (there is no process to reconnect to).
	stopOnClose.Store(true)
	if err := b.stop(t); err != nil {
		t.Errorf("B exit: %v\n%s", err, b.logText())
	}
	load.finish()
	for w := range load.stopped {
		if !load.stopped[w].Load() {
			t.Errorf("worker %d never got an answer saying close from the draining B", w)
		}
	}
	load.check(t, "restart and drain")
}

// TestKeepAliveBackendClosesIdle: backends that close idle keep-alive
// connections after 1 s, under connection-per-request clients pausing
// around that second, lose no request: net/http's IdleTimeout (the backend
// closes first: the pool drops the connection at once), and a backend that
// notices its timeout only when the next request arrives and closes without
// answering (the request meets a dead pooled connection: it is resent over
// a new one, invisibly, and counted).
func TestKeepAliveBackendClosesIdle(t *testing.T) {
	for _, late := range []bool{false, true} {
		name := map[bool]string{false: "net/http IdleTimeout 1s", true: "closes on the next request after 1s idle"}[late]
		t.Run(name, func(t *testing.T) {
			var accepted atomic.Int64
			var be string
			if late {
				be = lateIdleBackend(t, &accepted)
			} else {
				be = idleTimeoutBackend(t, &accepted)
			}
			keepAliveIdleLoad(t, be, &accepted, late)
		})
	}
}

func idleTimeoutBackend(t *testing.T, accepted *atomic.Int64) string {
	s := &http.Server{
		IdleTimeout: time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, r.URL.Query().Get("q"))
		}),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				accepted.Add(1)
			}
		},
	}
	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(bl)
	t.Cleanup(func() { s.Close() })
	return bl.Addr().String()
}

// lateIdleBackend keeps connections alive but, like a server whose idle
// sweep runs late, closes one whose next request comes 1 s or more after
// its last answer, without answering it.
func lateIdleBackend(t *testing.T, accepted *atomic.Int64) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				last := time.Now()
				for {
					_ = c.SetDeadline(time.Now().Add(30 * time.Second))
					req, err := http.ReadRequest(br)
					if err != nil || time.Since(last) >= time.Second {
						return
					}
					q := req.URL.Query().Get("q")
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(q), q)
					last = time.Now()
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func keepAliveIdleLoad(t *testing.T, be string, accepted *atomic.Int64, wantRetries bool) {
	p := startPortier(t, opsConfig("  idle.test: [http://"+be+"]", "admin: 127.0.0.1:0\n"))
	web, admin := p.addr("web"), opsAdminAddr(t, p)

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	deadline := time.Now().Add(4 * time.Second)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; i < 200 && time.Now().Before(deadline); i++ {
				want := fmt.Sprintf("w%d-%d", w, i)
				st, body, err := opsGet(client, web, "idle.test", "/?q="+want)
				if err != nil || st != 200 || body != want {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%s: %d %q %v", want, st, body, err))
					continue
				}
				ok.Add(1)
				// Bursts of a few milliseconds, with pauses around the
				// backend's idle timeout (past it for the late closer, so
				// that the first request after a pause meets a connection
				// idle for over a second).
				if i%4 == 3 {
					pause := 900 + rng.IntN(300)
					if wantRetries {
						pause = 1100 + rng.IntN(200)
					}
					time.Sleep(time.Duration(pause) * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	text := opsScrape(t, admin)
	retries, _ := opsMetric(text, "portier_backend_pool_retries_total", nil)
	reuses, _ := opsMetric(text, "portier_backend_pool_reuses_total", nil)
	connects, okc := opsMetric(text, "portier_backend_connects_total", nil)
	t.Logf("%d ok, %d failed; backend accepted %d connections (health checks included); portier: %v connects, %v reuses, %v retries after a dead pooled connection",
		ok.Load(), failed.Load(), accepted.Load(), connects, reuses, retries)
	if failed.Load() != 0 {
		t.Errorf("%d requests failed, first: %v", failed.Load(), firstErr.Load())
	}
	if !okc || reuses == 0 || int64(connects) >= ok.Load() {
		t.Errorf("the pool was not used: %v connects, %v reuses for %d requests", connects, reuses, ok.Load())
	}
	if wantRetries && retries == 0 {
		t.Errorf("no retry counted although pooled connections idle past 1 s were reused")
	}
}

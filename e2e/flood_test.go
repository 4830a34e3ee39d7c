package e2e

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBadFloodSparesNormalClient sends a flood of bad requests from one
// client (unknown names, malformed heads, garbage, half-sent heads) while a
// normal client makes requests one after another, and prints the normal
// client's latency beside a run without the flood. The normal client must
// see no failure. The flood is 2,000 requests in make test;
// PORTIER_FLOOD=20000 runs the full size.
func TestBadFloodSparesNormalClient(t *testing.T) {
	flood := 2000
	if v := os.Getenv("PORTIER_FLOOD"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 200000 {
			t.Fatalf("PORTIER_FLOOD=%q: want a count up to 200000", v)
		}
		flood = n
	}
	be := startOpsBackend(t, "alpha", nil)
	p := startPortier(t, opsConfig("  a.test: [http://"+be.addr+"]", ""), "-loops", "2")
	web := p.addr("web")

	normal := func(stop func(done int) bool) (lat []time.Duration, failures []string) {
		c := opsClient(nil)
		for done := 0; !stop(done); done++ {
			start := time.Now()
			code, body, err := opsGet(c, web, "a.test", "/")
			lat = append(lat, time.Since(start))
			if err != nil || code != 200 || body != "alpha" {
				failures = append(failures, fmt.Sprintf("status %d body %q err %v", code, body, err))
			}
		}
		return lat, failures
	}

	const baseline = 400
	baseLat, baseFail := normal(func(done int) bool { return done >= baseline })

	var sent, answered atomic.Int64
	var floodDone atomic.Bool
	var wg sync.WaitGroup
	bad := [][]byte{
		[]byte("GET / HTTP/1.1\r\nHost: nobody.test\r\n\r\n"),                                                // unknown name: 404
		[]byte("GET / HTTP/1.1\r\nHost: a.test\r\nHost: b\r\n\r\n"),                                          // two Hosts: 400
		[]byte("\x16\x03\x01garbage that is not HTTP\r\n\r\n"),                                               // not the protocol
		[]byte("POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"), // smuggling: 400
	}
	const workers = 8
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 512)
			for i := w; i < flood; i += workers {
				c, err := net.DialTimeout("tcp", web, 5*time.Second)
				if err != nil {
					continue
				}
				sent.Add(1)
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Write(bad[i%len(bad)]); err == nil {
					if n, _ := c.Read(buf); n > 0 {
						answered.Add(1)
					}
				}
				c.Close()
			}
		}()
	}
	go func() { wg.Wait(); floodDone.Store(true) }()
	start := time.Now()
	floodLat, floodFail := normal(func(done int) bool { return floodDone.Load() && done >= baseline })
	took := time.Since(start)

	t.Logf("flood: %d bad requests sent, %d answered, in %v", sent.Load(), answered.Load(), took.Round(time.Millisecond))
	t.Logf("normal client without flood: %s, %d failures", latencies(baseLat), len(baseFail))
	t.Logf("normal client during flood:  %s, %d failures", latencies(floodLat), len(floodFail))
	if len(baseFail)+len(floodFail) > 0 {
		t.Fatalf("normal client failed: %d without the flood, %d during it; first: %v", len(baseFail), len(floodFail),
			append(baseFail, floodFail...)[0])
	}
	if sent.Load() < int64(flood)*9/10 {
		t.Fatalf("only %d of %d flood connections were made", sent.Load(), flood)
	}
}

func latencies(d []time.Duration) string {
	s := slices.Clone(d)
	slices.Sort(s)
	q := func(f float64) time.Duration { return s[int(f*float64(len(s)-1))].Round(10 * time.Microsecond) }
	return fmt.Sprintf("%d requests, p50 %v p99 %v max %v", len(s), q(0.5), q(0.99), s[len(s)-1].Round(10*time.Microsecond))
}

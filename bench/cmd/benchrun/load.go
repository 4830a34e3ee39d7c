package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// loadResult is what one load-generator run measured, plus the proxy's CPU
// time over the same interval (filled in by the caller).
type loadResult struct {
	Requests  int64         // completed successfully (2xx)
	Errors    int64         // failed, non-2xx, socket errors, timeouts
	Duration  time.Duration // as the load generator measured it
	ReqPerSec float64
	P50, P99  time.Duration
	BodyBytes int64         // response body bytes, for the 1 MiB scenarios
	CPU       time.Duration // proxy CPU over the run (cpuTime)
	Wall      time.Duration // wall time of the whole command
	Cmd       string
	Note      string   // negotiated TLS parameters and the like
	Load      cpuShare // how the load CPU was used over the run
	ProxyCPU  cpuShare // how the proxy CPU was used, all processes
	// BackendConns is how many connections the HTTP backend accepted over
	// the run (-1: not measured).
	BackendConns int64
}

// Interference is the share of the proxy's CPU that other processes used
// during the run (the machine is shared; this makes noise visible).
func (r loadResult) Interference() float64 {
	return max(0, r.ProxyCPU.task-r.Utilisation())
}

// CPUPerReq is the proxy's CPU time per completed request.
func (r loadResult) CPUPerReq() time.Duration {
	if r.Requests == 0 {
		return 0
	}
	return r.CPU / time.Duration(r.Requests)
}

// MiBPerSec is forwarded response body throughput.
func (r loadResult) MiBPerSec() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.BodyBytes) / (1 << 20) / r.Duration.Seconds()
}

// CPUPerMiB is proxy CPU microseconds per MiB of response body forwarded.
func (r loadResult) CPUPerMiB() float64 {
	if r.BodyBytes == 0 {
		return 0
	}
	return float64(r.CPU.Microseconds()) / (float64(r.BodyBytes) / (1 << 20))
}

// Utilisation is the proxy's CPU time as a share of one core over the run.
func (r loadResult) Utilisation() float64 {
	if r.Wall <= 0 {
		return 0
	}
	return r.CPU.Seconds() / r.Wall.Seconds()
}

var (
	wrkRequests = regexp.MustCompile(`(\d+) requests in ([\d.]+\w+), ([\d.]+)(\w+) read`)
	wrkRPS      = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	wrkPct      = regexp.MustCompile(`(?m)^\s+(50|99)(?:\.0+)?%\s+([\d.]+\w+)\s*$`)
	wrkSocket   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// parseWrk reads `wrk --latency` output.
func parseWrk(out string) (loadResult, error) {
	var r loadResult
	m := wrkRequests.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk output has no request count: %q", tail(out, 400))
	}
	total, _ := strconv.ParseInt(m[1], 10, 64)
	d, err := parseUnitDuration(m[2])
	if err != nil {
		return r, fmt.Errorf("wrk duration: %w", err)
	}
	r.Duration = d
	if m := wrkRPS.FindStringSubmatch(out); m != nil {
		r.ReqPerSec, _ = strconv.ParseFloat(m[1], 64)
	}
	for _, m := range wrkPct.FindAllStringSubmatch(out, -1) {
		v, err := parseUnitDuration(m[2])
		if err != nil {
			return r, fmt.Errorf("wrk latency %s: %w", m[2], err)
		}
		if m[1] == "50" {
			r.P50 = v
		} else {
			r.P99 = v
		}
	}
	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.Errors += n
		}
	}
	var non2xx int64
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		non2xx, _ = strconv.ParseInt(m[1], 10, 64)
		r.Errors += non2xx
	}
	r.Requests = total - non2xx
	return r, nil
}

// parseUnitDuration parses wrk's and h2load's "146.00us", "3.54ms", "1.10s", "1.00m".
func parseUnitDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(c rune) bool { return (c < '0' || c > '9') && c != '.' })
	if i <= 0 {
		return 0, fmt.Errorf("duration %q has no unit", s)
	}
	v, err := strconv.ParseFloat(s[:i], 64)
	if err != nil {
		return 0, fmt.Errorf("duration %q: %w", s, err)
	}
	var unit time.Duration
	switch s[i:] {
	case "us":
		unit = time.Microsecond
	case "ms":
		unit = time.Millisecond
	case "s":
		unit = time.Second
	case "m":
		unit = time.Minute
	case "h":
		unit = time.Hour
	default:
		return 0, fmt.Errorf("duration %q: unknown unit", s)
	}
	return time.Duration(v * float64(unit)), nil
}

var (
	abComplete = regexp.MustCompile(`Complete requests:\s+(\d+)`)
	abFailed   = regexp.MustCompile(`Failed requests:\s+(\d+)`)
	abNon2xx   = regexp.MustCompile(`Non-2xx responses:\s+(\d+)`)
	abTaken    = regexp.MustCompile(`Time taken for tests:\s+([\d.]+) seconds`)
	abRPS      = regexp.MustCompile(`Requests per second:\s+([\d.]+)`)
	abPct      = regexp.MustCompile(`(?m)^\s+(50|99)%\s+(\d+)\s*$`)
	abHTML     = regexp.MustCompile(`HTML transferred:\s+(\d+) bytes`)
)

// parseAB reads ApacheBench output. ab's percentiles are whole milliseconds.
func parseAB(out string) (loadResult, error) {
	var r loadResult
	m := abComplete.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("ab output has no request count: %q", tail(out, 400))
	}
	complete, _ := strconv.ParseInt(m[1], 10, 64)
	var failed, non2xx int64
	if m := abFailed.FindStringSubmatch(out); m != nil {
		failed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := abNon2xx.FindStringSubmatch(out); m != nil {
		non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	r.Requests = complete - failed - non2xx
	if r.Requests < 0 {
		r.Requests = 0
	}
	r.Errors = failed + non2xx
	if m := abTaken.FindStringSubmatch(out); m != nil {
		s, _ := strconv.ParseFloat(m[1], 64)
		r.Duration = time.Duration(s * float64(time.Second))
	}
	if m := abRPS.FindStringSubmatch(out); m != nil {
		r.ReqPerSec, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := abHTML.FindStringSubmatch(out); m != nil {
		r.BodyBytes, _ = strconv.ParseInt(m[1], 10, 64)
	}
	for _, m := range abPct.FindAllStringSubmatch(out, -1) {
		ms, _ := strconv.Atoi(m[2])
		if m[1] == "50" {
			r.P50 = time.Duration(ms) * time.Millisecond
		} else {
			r.P99 = time.Duration(ms) * time.Millisecond
		}
	}
	return r, nil
}

var (
	h2Finished = regexp.MustCompile(`finished in ([\d.]+\w+), ([\d.]+) req/s`)
	h2Requests = regexp.MustCompile(`requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2Status   = regexp.MustCompile(`status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
	h2Traffic  = regexp.MustCompile(`traffic: .* \((\d+)\) data`)
	h2TLS      = regexp.MustCompile(`(?m)^(TLS Protocol|Server Temp Key|Application protocol): (.+)$`)
)

// parseH2load reads h2load's summary. Latency percentiles come from its
// per-request log file (see latencyFromH2Log).
func parseH2load(out string) (loadResult, error) {
	var r loadResult
	m := h2Finished.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("h2load output has no summary: %q", tail(out, 400))
	}
	d, err := parseUnitDuration(m[1])
	if err != nil {
		return r, fmt.Errorf("h2load duration: %w", err)
	}
	r.Duration = d
	r.ReqPerSec, _ = strconv.ParseFloat(m[2], 64)
	m = h2Requests.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("h2load output has no request counts: %q", tail(out, 400))
	}
	n := make([]int64, len(m))
	for i := 1; i < len(m); i++ {
		n[i], _ = strconv.ParseInt(m[i], 10, 64)
	}
	// "succeeded" counts complete responses within the measured period;
	// status codes are tallied at header time, so only non-2xx are
	// subtracted from it.
	r.Requests = n[4]
	r.Errors = n[5] + n[6] + n[7]
	if m := h2Status.FindStringSubmatch(out); m != nil {
		var bad int64
		for _, s := range m[2:] {
			v, _ := strconv.ParseInt(s, 10, 64)
			bad += v
		}
		r.Requests = max(0, r.Requests-bad)
		r.Errors += bad
	}
	if m := h2Traffic.FindStringSubmatch(out); m != nil {
		r.BodyBytes, _ = strconv.ParseInt(m[1], 10, 64)
	}
	var tlsInfo []string
	for _, m := range h2TLS.FindAllStringSubmatch(out, -1) {
		tlsInfo = append(tlsInfo, strings.TrimSpace(m[2]))
	}
	r.Note = strings.Join(tlsInfo, ", ")
	return r, nil
}

// latencyFromH2Log computes p50 and p99 of the third column (microseconds
// from request start to end of response) of an h2load --log-file.
func latencyFromH2Log(path string) (p50, p99 time.Duration, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	var us []int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) < 3 {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSpace(fields[2]), 10, 64)
		if err != nil {
			continue
		}
		us = append(us, v)
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if len(us) == 0 {
		return 0, 0, errors.New("h2load log has no requests")
	}
	d := make([]time.Duration, len(us))
	for i, v := range us {
		d[i] = time.Duration(v) * time.Microsecond
	}
	return percentile(d, 50), percentile(d, 99), nil
}

// percentile returns the nearest-rank p-th percentile; d is sorted in place.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	rank := int(math.Ceil(p/100*float64(len(d)))) - 1
	rank = max(0, min(rank, len(d)-1))
	return d[rank]
}

// handshakeLoad opens n TLS connections to addr with workers in parallel,
// each one a full handshake (no session resumption), one HTTP/1.1 request
// with Connection: close, the whole response, and a close.
func handshakeLoad(ctx context.Context, addr, sni string, n, workers int, timeout time.Duration) loadResult {
	cfg := &tls.Config{
		ServerName:         sni,
		InsecureSkipVerify: true, // the backend's certificate is self-signed
		NextProtos:         []string{"http/1.1"},
		ClientSessionCache: nil, // no resumption: every connection is a full handshake
	}
	req := []byte("GET / HTTP/1.1\r\nHost: " + sni + "\r\nConnection: close\r\n\r\n")
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		mu       sync.Mutex
		next     int
		lat      = make([]time.Duration, 0, n)
		errs     int64
		note     string
		firstErr error
	)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			for ctx.Err() == nil {
				mu.Lock()
				if next >= n {
					mu.Unlock()
					return
				}
				next++
				mu.Unlock()
				t0 := time.Now()
				info, err := oneHandshake(ctx, addr, cfg, req, buf)
				d := time.Since(t0)
				mu.Lock()
				if err != nil {
					errs++
					if firstErr == nil {
						firstErr = err
					}
				} else {
					lat = append(lat, d)
					if note == "" {
						note = info
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	r := loadResult{Requests: int64(len(lat)), Errors: errs, Duration: elapsed, Note: note}
	if ctx.Err() != nil && next < n {
		r.Note = strings.TrimSpace(r.Note + " (stopped at time limit)")
	}
	if firstErr != nil {
		r.Note = strings.TrimSpace(fmt.Sprintf("%s first error: %v", r.Note, firstErr))
	}
	if elapsed > 0 {
		r.ReqPerSec = float64(r.Requests) / elapsed.Seconds()
	}
	r.P50 = percentile(lat, 50)
	r.P99 = percentile(lat, 99)
	return r
}

func oneHandshake(ctx context.Context, addr string, cfg *tls.Config, req, buf []byte) (string, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 3 * time.Second}, Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(req); err != nil {
		return "", err
	}
	n, err := io.ReadAtLeast(c, buf, 12)
	if err != nil {
		return "", fmt.Errorf("read response: %w", err)
	}
	if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
		return "", fmt.Errorf("response %q", tail(string(buf[:n]), 40))
	}
	if _, err := io.CopyBuffer(io.Discard, c, buf); err != nil {
		return "", fmt.Errorf("read body: %w", err)
	}
	st := c.(*tls.Conn).ConnectionState()
	return fmt.Sprintf("%s, %s", tls.VersionName(st.Version), st.CurveID), nil
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

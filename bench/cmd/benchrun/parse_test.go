package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Outputs captured from the Debian tools on the development machine.
const wrkOut = `Running 1s test @ http://127.0.0.1:18901/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   310.30us  589.37us   5.53ms   93.18%
    Req/Sec    37.10k     4.48k   43.25k    72.73%
  Latency Distribution
     50%  146.00us
     75%  238.00us
     90%  498.00us
     99%    3.54ms
  40514 requests in 1.10s, 7.46MB read
Requests/sec:  36805.98
Transfer/sec:      6.77MB
`

const wrkErrOut = `Running 3s test @ http://127.0.0.1:18300/1m
  1 threads and 8 connections
  Latency Distribution
     50%  103.32ms
     75%  200.00ms
     90%  500.00ms
     99%     1.01s
  90 requests in 3.10s, 90.00MB read
  Socket errors: connect 0, read 6, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:     29.03
Transfer/sec:     29.03MB
`

const abOut = `Document Path:          /
Document Length:        91 bytes

Concurrency Level:      8
Time taken for tests:   0.052 seconds
Complete requests:      500
Failed requests:        3
Non-2xx responses:      2
Total transferred:      96500 bytes
HTML transferred:       45500 bytes
Requests per second:    9650.27 [#/sec] (mean)

Percentage of the requests served within a certain time (ms)
  50%      1
  66%      1
  99%      2
 100%      3 (longest request)
`

const h2Out = `TLS Protocol: TLSv1.3
Cipher: TLS_AES_128_GCM_SHA256
Server Temp Key: X25519 253 bits
Application protocol: http/1.1
Main benchmark duration is over for thread #0. Stopping all clients.

finished in 3.00s, 122.33 req/s, 123.04MB/s
requests: 367 total, 375 started, 367 done, 367 succeeded, 1 failed, 2 errored, 0 timeout
status codes: 371 2xx, 0 3xx, 5 4xx, 0 5xx
traffic: 369.12MB (387050871) total, 32.61KB (33390) headers (space savings 0.00%), 369.08MB (387005980) data
`

func TestParsers(t *testing.T) {
	tests := []struct {
		name  string
		parse func(string) (loadResult, error)
		in    string
		want  loadResult
	}{
		{"wrk", parseWrk, wrkOut, loadResult{Requests: 40514, Duration: 1100 * time.Millisecond, ReqPerSec: 36805.98,
			P50: 146 * time.Microsecond, P99: 3540 * time.Microsecond}},
		{"wrk errors", parseWrk, wrkErrOut, loadResult{Requests: 86, Errors: 12, Duration: 3100 * time.Millisecond, ReqPerSec: 29.03,
			P50: 103320 * time.Microsecond, P99: 1010 * time.Millisecond}},
		{"ab", parseAB, abOut, loadResult{Requests: 495, Errors: 5, Duration: 52 * time.Millisecond, ReqPerSec: 9650.27,
			P50: time.Millisecond, P99: 2 * time.Millisecond, BodyBytes: 45500}},
		{"h2load", parseH2load, h2Out, loadResult{Requests: 362, Errors: 8, Duration: 3 * time.Second, ReqPerSec: 122.33,
			BodyBytes: 387005980, Note: "TLSv1.3, X25519 253 bits, http/1.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.parse(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			// Durations parsed from floats may be off by rounding.
			if d := got.Duration - tt.want.Duration; d > time.Microsecond || d < -time.Microsecond {
				t.Errorf("Duration = %v, want %v", got.Duration, tt.want.Duration)
			}
			got.Duration = tt.want.Duration
			for _, p := range []*time.Duration{&got.P50, &got.P99} {
				*p = p.Round(time.Microsecond)
			}
			if got != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParsersRejectGarbage(t *testing.T) {
	for name, parse := range map[string]func(string) (loadResult, error){"wrk": parseWrk, "ab": parseAB, "h2load": parseH2load} {
		if _, err := parse("connection refused\n"); err == nil {
			t.Errorf("%s: no error for output without results", name)
		}
	}
}

func TestParseUnitDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"146.00us", 146 * time.Microsecond, true},
		{"3.54ms", 3540 * time.Microsecond, true},
		{"1.10s", 1100 * time.Millisecond, true},
		{"1.00m", time.Minute, true},
		{"12", 0, false},
		{"3.0xs", 0, false},
	}
	for _, tt := range tests {
		got, err := parseUnitDuration(tt.in)
		if (err == nil) != tt.ok || got.Round(time.Microsecond) != tt.want {
			t.Errorf("parseUnitDuration(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestPercentile(t *testing.T) {
	d := make([]time.Duration, 0, 100)
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	tests := []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0, time.Millisecond}}
	for _, tt := range tests {
		if got := percentile(d, tt.p); got != tt.want {
			t.Errorf("percentile(%v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(nil) = %v", got)
	}
}

func TestLatencyFromH2Log(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h2.log")
	log := "1795921078526133\t200\t4900\n1795921078526691\t200\t100\n1795921078527145\t200\t300\n"
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	p50, p99, err := latencyFromH2Log(path)
	if err != nil {
		t.Fatal(err)
	}
	if p50 != 300*time.Microsecond || p99 != 4900*time.Microsecond {
		t.Errorf("p50, p99 = %v, %v; want 300µs, 4.9ms", p50, p99)
	}
	os.WriteFile(path, nil, 0o644)
	if _, _, err := latencyFromH2Log(path); err == nil {
		t.Error("no error for an empty log")
	}
}

func TestParseGoBench(t *testing.T) {
	out := `goos: linux
goarch: amd64
pkg: github.com/portier/portier/parser
cpu: AMD EPYC
BenchmarkClientHello         	 1000000	      1050 ns/op	 512.00 MB/s	       0 B/op	       0 allocs/op
BenchmarkHTTPHead-2   	 2000000	       601.5 ns/op	      16 B/op	       1 allocs/op
PASS
ok  	github.com/portier/portier/parser	2.1s
pkg: github.com/portier/portier/balancer
BenchmarkPick	50000000	        23.1 ns/op
`
	got := parseGoBench(out)
	want := []benchRow{
		{"parser", "BenchmarkClientHello", "1050", "0", "0", "512.00 MB/s"},
		{"parser", "BenchmarkHTTPHead-2", "601.5", "16", "1", ""},
		{"balancer", "BenchmarkPick", "23.1", "-", "-", ""},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d rows %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("row %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestReadStatSelf(t *testing.T) {
	st, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.ppid != os.Getppid() {
		t.Errorf("ppid = %d, want %d", st.ppid, os.Getppid())
	}
	// Burn some CPU: cpuTime must move by what the kernel's rusage says the
	// process used (its total is exact, whatever else runs meanwhile).
	rusage := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	before, ruBefore := cpuTime(os.Getpid()), rusage()
	x := 0
	for rusage()-ruBefore < 50*time.Millisecond {
		x++
	}
	got, want := cpuTime(os.Getpid())-before, rusage()-ruBefore
	if got < want*3/4 || got > want*5/4+10*time.Millisecond {
		t.Errorf("cpu time advanced by %v while rusage says %v (%d loops)", got, want, x)
	}
	if kib, err := rssKiB(os.Getpid()); err != nil || kib <= 0 {
		t.Errorf("rssKiB = %d, %v", kib, err)
	}
}

func TestShellJoin(t *testing.T) {
	got := shellJoin([]string{"wrk", "-H", "Host: bench.test", "it's"})
	want := `wrk -H 'Host: bench.test' 'it'\''s'`
	if got != want {
		t.Errorf("shellJoin = %s, want %s", got, want)
	}
}

func TestKeepNotes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "B.md")
	if got := keepNotes(path, "# new\n"); got != "# new\n" {
		t.Fatalf("no file: %q", got)
	}
	os.WriteFile(path, []byte("# old\n\n"+notesMarker+"\n\nanalysis\n"), 0o644)
	if got := keepNotes(path, "# new\n\n"); got != "# new\n\n"+notesMarker+"\n\nanalysis\n" {
		t.Fatalf("with notes: %q", got)
	}
	os.WriteFile(path, []byte("# old without notes\n"), 0o644)
	if got := keepNotes(path, "# new\n"); got != "# new\n" {
		t.Fatalf("without notes: %q", got)
	}
}

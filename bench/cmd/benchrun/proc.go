package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// tailBuffer keeps the last max bytes written, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}

// proc is a long-running child (backend, proxy, idle client) in its own
// process group so that it and all its children can be killed together.
type proc struct {
	name   string
	cmd    *exec.Cmd
	output *tailBuffer
	done   chan struct{}
	err    error
}

// Pid is the process id of the child (taskset execs the program in place).
func (p *proc) Pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// supervisor tracks every child so that cleanup always kills them, also on
// error and on Ctrl-C.
type supervisor struct {
	mu    sync.Mutex
	procs []*proc
}

// start runs argv pinned to cpu (cpu < 0: not pinned). stdin and stdout,
// when non-nil, are given to the child; stdout otherwise goes to the output
// tail, stdin to /dev/null.
func (s *supervisor) start(name string, cpu int, stdin, stdout *os.File, argv ...string) (*proc, error) {
	if cpu >= 0 {
		argv = append([]string{"taskset", "-c", strconv.Itoa(cpu)}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	// Pdeathsig: if benchrun itself is killed hard, the child goes too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &proc{name: name, cmd: cmd, output: &tailBuffer{max: 4096}, done: make(chan struct{})}
	cmd.Stderr = p.output
	if stdin != nil {
		cmd.Stdin = stdin
	}
	if stdout != nil {
		cmd.Stdout = stdout
	} else {
		cmd.Stdout = p.output
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s.procs = append(s.procs, p)
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop sends SIGTERM to the child's process group, waits up to grace, then
// SIGKILLs the group.
func (s *supervisor) stop(p *proc, grace time.Duration) error {
	if p == nil {
		return nil
	}
	pgid := p.cmd.Process.Pid
	if !p.exited() {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
	}
	// Workers that outlived their parent (nginx) still share the group.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	s.mu.Lock()
	for i, q := range s.procs {
		if q == p {
			s.procs = append(s.procs[:i], s.procs[i+1:]...)
			break
		}
	}
	s.mu.Unlock()
	return p.err
}

// stopAll kills every child still tracked.
func (s *supervisor) stopAll() {
	s.mu.Lock()
	ps := append([]*proc(nil), s.procs...)
	s.mu.Unlock()
	for i := len(ps) - 1; i >= 0; i-- {
		s.stop(ps[i], 3*time.Second)
	}
}

// waitListening polls until every addr accepts TCP connections, the process
// exits, or timeout passes.
func waitListening(p *proc, timeout time.Duration, addrs ...string) error {
	deadline := time.Now().Add(timeout)
	for _, a := range addrs {
		for {
			if p.exited() {
				return fmt.Errorf("%s exited: %v: %s", p.name, p.err, p.output.String())
			}
			c, err := net.DialTimeout("tcp", a, 200*time.Millisecond)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s not listening on %s after %s: %s", p.name, a, timeout, p.output.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// portFree reports whether addr can be bound now.
func portFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("port %s is in use: %w", addr, err)
	}
	return l.Close()
}

// pinAll pins every existing thread of this process to cpu; threads and
// children created later inherit the mask.
func pinAll(cpu int) error {
	var set unix.CPUSet
	set.Zero()
	set.Set(cpu)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("pin thread %d to cpu %d: %w", tid, cpu, err)
		}
	}
	return nil
}

// procTree returns pid and all its descendants (nginx master + worker,
// sniproxy's helper processes).
func procTree(pid int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		id, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(id)
		if err != nil {
			continue
		}
		children[st.ppid] = append(children[st.ppid], id)
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

type stat struct {
	ppid         int
	utime, stime uint64 // clock ticks
}

func readStat(pid int) (stat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return stat{}, err
	}
	// The command name may contain spaces; fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return stat{}, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	var s stat
	s.ppid, _ = strconv.Atoi(f[1])
	s.utime, _ = strconv.ParseUint(f[11], 10, 64)
	s.stime, _ = strconv.ParseUint(f[12], 10, 64)
	return s, nil
}

// clockTick is USER_HZ; Linux reports 100 on every mainstream platform.
var clockTick = func() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if v, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && v > 0 {
			return float64(v)
		}
	}
	return 100
}()

// cpuTime is the CPU time of pid and its descendants: the sum over their
// threads of the scheduler's run time (/proc/PID/task/TID/schedstat, in
// nanoseconds). utime+stime from /proc/PID/stat count 10 ms clock ticks: 8,000
// connections at 20 µs each are 16 ticks, so one tick moved a ratio by 6%.
// A thread that exits during a run takes its time with it; the proxies here
// keep theirs (Go parks idle threads, HAProxy and nginx have fixed ones).
// Without schedstat (a kernel without CONFIG_SCHED_INFO) it falls back on
// the ticks.
func cpuTime(pid int) time.Duration {
	if !haveSchedstat {
		var ticks uint64
		for _, id := range procTree(pid) {
			if st, err := readStat(id); err == nil {
				ticks += st.utime + st.stime
			}
		}
		return time.Duration(float64(ticks) / clockTick * float64(time.Second))
	}
	var ns uint64
	for _, id := range procTree(pid) {
		dir := filepath.Join("/proc", strconv.Itoa(id), "task")
		tasks, _ := os.ReadDir(dir) // none: the process has gone
		for _, t := range tasks {
			b, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
			if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
				v, _ := strconv.ParseUint(f[0], 10, 64)
				ns += v
			}
		}
	}
	return time.Duration(ns)
}

var haveSchedstat = func() bool {
	_, err := os.Stat("/proc/self/schedstat")
	return err == nil
}()

// rssKiB is VmRSS of pid and its descendants, in KiB.
func rssKiB(pid int) (int64, error) {
	var total int64
	for _, id := range procTree(pid) {
		f, err := os.Open(filepath.Join("/proc", strconv.Itoa(id), "status"))
		if err != nil {
			if id == pid {
				return 0, err
			}
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "VmRSS:") {
				v, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
				total += v
			}
		}
		f.Close()
	}
	return total, nil
}

// output runs a short command and returns its combined output, bounded by ctx.
func output(ctx context.Context, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// cpuStat is one CPU's line of /proc/stat, in clock ticks: task time
// (user, nice, system), interrupt time (irq, softirq: loopback packet
// processing lands here and is charged to no process), steal and the total.
type cpuStat struct{ task, irq, steal, total uint64 }

func readCPUStat(cpu int) cpuStat {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuStat{}
	}
	prefix := "cpu" + strconv.Itoa(cpu) + " "
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		var s cpuStat
		for i, f := range strings.Fields(l)[1:] {
			if i >= 8 { // guest time is already in user
				break
			}
			v, _ := strconv.ParseUint(f, 10, 64)
			s.total += v
			switch i {
			case 0, 1, 2:
				s.task += v
			case 5, 6:
				s.irq += v
			case 7:
				s.steal += v
			}
		}
		return s
	}
	return cpuStat{}
}

// cpuShare is how a CPU's time was spent between two samples, as fractions.
type cpuShare struct{ task, irq, steal float64 }

func (s cpuShare) busy() float64 { return s.task + s.irq + s.steal }

func share(a, b cpuStat) cpuShare {
	if b.total <= a.total {
		return cpuShare{}
	}
	t := float64(b.total - a.total)
	return cpuShare{float64(b.task-a.task) / t, float64(b.irq-a.irq) / t, float64(b.steal-a.steal) / t}
}

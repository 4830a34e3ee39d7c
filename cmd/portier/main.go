// Command portier is a reverse proxy that routes plain HTTP by its Host
// header and TLS by the ClientHello's SNI, without decrypting TLS.
package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/portier/portier/config"
	"github.com/portier/portier/logq"
)

// version is set at link time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cpus := runtime.GOMAXPROCS(0)
	if len(args) > 0 && args[0] == "route" {
		return runRoute(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("portier", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: portier -config FILE [flags]\n       portier route [-config FILE] ls|add NAME URL|rm NAME [URL]\n\nflags:\n")
		fs.PrintDefaults()
	}
	var (
		cfgPath     = fs.String("config", "", "configuration `file` (YAML)")
		check       = fs.Bool("check", false, "validate the configuration and exit")
		showVersion = fs.Bool("version", false, "print the version and exit")
		loops       = fs.Int("loops", 0, "event loops (overrides the config's `loops`; 0: one per CPU)")
		logLevel    = fs.String("log-level", "info", "log level: debug, info, warn, error")
		logFormat   = fs.String("log-format", "text", "log format: text or json")
		logQueue    = fs.Int("log-queue", 1024, "log lines each event loop may queue for the log writer before dropping (counted in portier_log_dropped_total)")
		logBurst    = fs.Int("log-burst", 10, "log lines of one kind an event loop writes per second before summarising the rest; -1: no limit")
		cpuProfile  = fs.String("cpuprofile", "", "write a CPU profile of the whole run to `file` on exit")
		memProfile  = fs.String("memprofile", "", "write a heap profile to `file` on exit")
	)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "portier %s %s %s/%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	}
	if *cfgPath == "" {
		fmt.Fprintln(stderr, "portier: -config FILE is required")
		fs.Usage()
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "portier: -log-level: %v\n", err)
		return 2
	}
	if *logFormat != "text" && *logFormat != "json" {
		fmt.Fprintf(stderr, "portier: -log-format: %q is not text or json\n", *logFormat)
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "portier: %v\n", err)
		return 1
	}
	if *check {
		table, err := buildStatic(cfg, nil, newHostCheck(true), nil)
		if err != nil {
			fmt.Fprintf(stderr, "portier: %s: %v\n", *cfgPath, err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: ok (%d listeners, %d routes)\n", *cfgPath, len(cfg.Listeners), table.Len())
		return 0
	}

	// Every log line goes through a bounded queue to one writer goroutine:
	// a stalled stderr drops lines (portier_log_dropped_total{log="process"})
	// instead of blocking whoever logs (the signal handler included).
	logOut := logq.NewWriter(stderr, max(*logQueue, 64))
	defer logOut.Close(2 * time.Second)
	var handler slog.Handler
	if *logFormat == "json" {
		handler = slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: level})
	} else {
		handler = slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: level})
	}
	logger := slog.New(handler)
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "portier: %v\n", err)
			return 1
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "portier: %v\n", err)
			return 1
		}
		defer func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		}()
	}

	// Signals are caught before anything starts so that none is lost.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	// The CPUs the process may use (affinity, cgroup quota) as the runtime
	// read them at start, before spareProcessor raises GOMAXPROCS.
	srv, err := startServer(cfg, logger, runOptions{loops: *loops, cpus: cpus,
		logQueue: *logQueue, logBurst: *logBurst, logDropped: logOut.Dropped})
	if err != nil {
		fmt.Fprintf(stderr, "portier: %v\n", err)
		return 1
	}
	logger.Info("portier started", "version", version, "routes", srv.router.Load().Len(), "loops", srv.eng.Loops(), "gomaxprocs", runtime.GOMAXPROCS(0), "pid", os.Getpid())

	// Reloads run off the signal loop, so a SIGTERM during a slow one (a
	// config on a hung network file system, names that resolve slowly) is
	// acted on at once. SIGHUPs during a reload make one more reload after it.
	reloads := make(chan struct{}, 1)
	go func() {
		for range reloads {
			logger.Info("reloading", "config", *cfgPath)
			srv.reload(*cfgPath)
		}
	}()
	defer close(reloads)
	for sig := range sigs {
		switch sig {
		case syscall.SIGHUP:
			select {
			case reloads <- struct{}{}:
			default: // one is already queued
			}
			continue
		case syscall.SIGUSR1:
			if srv.alog != nil {
				if err := srv.alog.Reopen(); err != nil {
					logger.Error("access log reopen failed", "err", err)
				} else {
					logger.Info("access log reopened")
				}
			}
			continue
		}
		logger.Info("stopping", "signal", sig.String())
		// A second SIGINT or SIGTERM stops at once.
		force := make(chan struct{})
		go func() {
			for s := range sigs {
				if s == syscall.SIGINT || s == syscall.SIGTERM {
					close(force)
					return
				}
			}
		}()
		srv.mu.Lock()
		timeout := srv.cfg.Timeouts.Shutdown
		srv.mu.Unlock()
		srv.shutdown(timeout, force)
		break
	}
	if *memProfile != "" {
		f, err := os.Create(*memProfile)
		if err == nil {
			runtime.GC()
			err = pprof.WriteHeapProfile(f)
			_ = f.Close()
		}
		if err != nil {
			logger.Error("heap profile", "err", err)
		}
	}
	logger.Info("stopped")
	return 0
}

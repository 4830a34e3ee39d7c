// Command portier is a reverse proxy that routes plain HTTP by its Host
// header and TLS by the ClientHello's SNI, without decrypting TLS.
package main

import (
	"context"
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

	"github.com/portier/portier/balancer"
	"github.com/portier/portier/config"
	"github.com/portier/portier/engine"
)

// version is set at link time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("portier", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfgPath     = fs.String("config", "", "configuration `file` (YAML)")
		check       = fs.Bool("check", false, "validate the configuration and exit")
		showVersion = fs.Bool("version", false, "print the version and exit")
		loops       = fs.Int("loops", 0, "event loops (overrides the config's `loops`; 0: one per CPU)")
		logLevel    = fs.String("log-level", "info", "log level: debug, info, warn, error")
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
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "portier: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	table, err := balancer.NewTable(ctx, cfg.Routes, cfg.Default, balancer.TableOptions{})
	cancel()
	if err != nil {
		fmt.Fprintf(stderr, "portier: %s: %v\n", *cfgPath, err)
		return 1
	}
	if *check {
		fmt.Fprintf(stdout, "%s: ok (%d listeners, %d routes)\n", *cfgPath, len(cfg.Listeners), table.Len())
		return 0
	}

	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
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

	opts := engine.Options{
		Router:           balancer.NewRouter(table),
		Loops:            cfg.Loops,
		HandshakeTimeout: cfg.Timeouts.Handshake,
		ConnectTimeout:   cfg.Timeouts.Connect,
		IdleTimeout:      cfg.Timeouts.Idle,
		MaxHeaderBytes:   cfg.Limits.MaxHeaderBytes,
		Logger:           logger,
	}
	if *loops > 0 {
		opts.Loops = *loops
	}
	for _, ln := range cfg.Listeners {
		scheme := balancer.SchemeHTTP
		if ln.Protocol == "tls" {
			scheme = balancer.SchemeTLS
		}
		opts.Listeners = append(opts.Listeners, engine.ListenerSpec{Name: ln.Name, Address: ln.Address, Scheme: scheme,
			AcceptProxy: ln.AcceptProxy, TrustedProxies: ln.TrustedProxies})
	}
	eng, err := engine.New(opts)
	if err != nil {
		fmt.Fprintf(stderr, "portier: %v\n", err)
		return 1
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	eng.Start()
	for i, ap := range eng.Addrs() {
		logger.Info("listening", "listener", opts.Listeners[i].Name, "address", ap.String(),
			"protocol", opts.Listeners[i].Scheme.String())
	}
	logger.Info("portier started", "version", version, "routes", table.Len(), "loops", eng.Loops())

	sig := <-sigs
	logger.Info("stopping", "signal", sig.String())
	_ = eng.Close()
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
	return 0
}

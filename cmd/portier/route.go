package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/portier/portier/balancer/redisroutes"
	"github.com/portier/portier/config"
)

// routeTimeout bounds one `portier route` command, so that an unreachable
// Redis gives an error instead of a hang.
const routeTimeout = 30 * time.Second

const routeUsage = `usage: portier route [-config FILE] COMMAND
commands:
  ls                       list the routes stored in Redis: name, then backends
  add NAME BACKEND_URL     add a backend to a route, creating the route
  rm NAME [BACKEND_URL]    remove a backend, or the whole route
The password comes from the redis url or $PORTIER_REDIS_PASSWORD.
Exit status: 0 done, 1 error, 2 usage, 3 rm found nothing to remove.
`

// runRoute implements `portier route ...`; args follow the word "route".
func runRoute(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("portier route", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, routeUsage)
		fs.PrintDefaults()
	}
	cfgPath := fs.String("config", "/etc/portier/portier.yaml", "configuration `file` (YAML)")
	// Flags may also follow the command (`route add NAME URL -config FILE`):
	// parse again after each positional word.
	var words []string
	for {
		if err := fs.Parse(args); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		words = append(words, fs.Arg(0))
		args = fs.Args()[1:]
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "portier route: %v\n", err)
		return 1
	}
	if cfg.Redis == nil {
		fmt.Fprintf(stderr, "portier route: no redis section in %s\n", *cfgPath)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return routeCmd(ctx, cfg.Redis, words, stdout, stderr)
}

// routeCmd runs one route command against the Redis of r.
func routeCmd(ctx context.Context, r *config.Redis, args []string, stdout, stderr io.Writer) int {
	usage := func(msg string) int {
		fmt.Fprintf(stderr, "portier route: %s\n%s", msg, routeUsage)
		return 2
	}
	if len(args) == 0 {
		return usage("missing command")
	}
	cmd, rest := args[0], args[1:]
	switch {
	case cmd == "ls" && len(rest) != 0,
		cmd == "add" && len(rest) != 2,
		cmd == "rm" && len(rest) != 1 && len(rest) != 2:
		return usage(fmt.Sprintf("%s: wrong number of arguments", cmd))
	case cmd != "ls" && cmd != "add" && cmd != "rm":
		return usage(fmt.Sprintf("unknown command %q", cmd))
	}

	src, err := redisroutes.New(redisroutes.Options{
		URL:            r.URL,
		Password:       os.Getenv("PORTIER_REDIS_PASSWORD"),
		SentinelMaster: r.SentinelMaster,
		SentinelAddrs:  r.SentinelAddrs,
		ClusterAddrs:   r.ClusterAddrs,
		Schema:         r.Schema,
	})
	if err != nil {
		fmt.Fprintf(stderr, "portier route: %v\n", err)
		return 1
	}
	defer src.Close()
	ctx, cancel := context.WithTimeout(ctx, routeTimeout)
	defer cancel()
	c := src.Client()

	switch cmd {
	case "ls":
		routes, problems, err := redisroutes.Load(ctx, c, r.Schema)
		if err != nil {
			fmt.Fprintf(stderr, "portier route: ls: %v\n", err)
			return 1
		}
		for _, rt := range routes {
			fmt.Fprintf(stdout, "%s %s\n", rt.Name, strings.Join(rt.Backends, " "))
		}
		for _, p := range problems {
			fmt.Fprintf(stderr, "portier route: skipped %s: %s\n", p.Key, p.Problem)
		}
	case "add":
		if err := redisroutes.Add(ctx, c, r.Schema, rest[0], rest[1]); err != nil {
			fmt.Fprintf(stderr, "portier route: add: %v\n", err)
			return 1
		}
	case "rm":
		backend := ""
		if len(rest) == 2 {
			backend = rest[1]
		}
		if err := redisroutes.Remove(ctx, c, r.Schema, rest[0], backend); err != nil {
			fmt.Fprintf(stderr, "portier route: rm: %v\n", err)
			if errors.Is(err, redisroutes.ErrNotFound) {
				return 3
			}
			return 1
		}
	}
	return 0
}

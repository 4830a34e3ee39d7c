package redisroutes

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/portier/portier/balancer"
)

// snapshotVersion is bumped when the file format changes incompatibly.
const snapshotVersion = 1

type snapshotFile struct {
	Version int             `json:"version"`
	Schema  string          `json:"schema"` // informational: routes are already converted
	Saved   time.Time       `json:"saved"`
	Routes  []snapshotRoute `json:"routes"`
}

type snapshotRoute struct {
	Name     string               `json:"name"`
	Backends []string             `json:"backends"`
	ALPN     []balancer.ALPNRoute `json:"alpn,omitempty"`
}

// readSnapshot reads a snapshot written by writeSnapshot. Routes that no
// longer validate (the file was edited, or the rules became stricter) are
// dropped and counted in skipped, so one bad route does not lose the rest.
func readSnapshot(path string) (routes []balancer.RouteSpec, skipped int, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	var f snapshotFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, 0, fmt.Errorf("redis: snapshot %s: %w", path, err)
	}
	if f.Version != snapshotVersion {
		return nil, 0, fmt.Errorf("redis: snapshot %s: version %d, want %d", path, f.Version, snapshotVersion)
	}
	routes = make([]balancer.RouteSpec, 0, len(f.Routes))
	for _, r := range f.Routes {
		if !validRoute(r) {
			skipped++
			continue
		}
		routes = append(routes, balancer.RouteSpec{Name: r.Name, Backends: r.Backends, ALPN: r.ALPN})
	}
	return routes, skipped, nil
}

func validRoute(r snapshotRoute) bool {
	if n, err := normalizeName(r.Name); err != nil || n != r.Name || len(r.Backends) == 0 {
		return false
	}
	for _, b := range r.Backends {
		if _, err := balancer.ParseBackend(b); err != nil {
			return false
		}
	}
	return balancer.CheckALPN(r.ALPN) == nil
}

// writeSnapshot writes routes to path atomically: a reader (or a restart
// after a crash mid-write) sees the old file or the new one, never a part.
func writeSnapshot(path, schema string, routes []balancer.RouteSpec, now time.Time) (err error) {
	f := snapshotFile{Version: snapshotVersion, Schema: schema, Saved: now.UTC(), Routes: make([]snapshotRoute, len(routes))}
	for i, r := range routes {
		f.Routes[i] = snapshotRoute{Name: r.Name, Backends: r.Backends, ALPN: r.ALPN}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("redis: snapshot: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	w := bufio.NewWriterSize(tmp, 64<<10)
	if err := json.NewEncoder(w).Encode(&f); err != nil {
		return fmt.Errorf("redis: snapshot %s: %w", tmp.Name(), err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("redis: snapshot %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("redis: snapshot %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("redis: snapshot %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("redis: snapshot: %w", err)
	}
	return nil
}

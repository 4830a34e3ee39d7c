package balancer

import (
	"errors"
	"fmt"
	"strings"
)

// maxUnixPath is the longest socket path the kernel takes: sun_path holds
// 108 bytes including the terminating NUL.
const maxUnixPath = 107

// parseUnixBackend parses what follows "http+unix://" or "tls+unix://": an
// absolute socket path ("/run/app/web.sock", so the URL has three slashes)
// and the usual options.
func parseUnixBackend(spec BackendSpec, rest string) (BackendSpec, error) {
	path, query, hasQuery := strings.Cut(rest, "?")
	switch {
	case path == "":
		return spec, errors.New("missing socket path (want e.g. http+unix:///run/app/web.sock)")
	case path[0] != '/':
		return spec, fmt.Errorf("socket path %q must be absolute (want three slashes: %s+unix:///path)", path, spec.Scheme)
	case strings.IndexByte(path, '#') >= 0:
		return spec, errors.New("fragment not allowed")
	case strings.IndexByte(path, 0) >= 0:
		return spec, errors.New("NUL byte in socket path")
	case len(path) > maxUnixPath:
		return spec, fmt.Errorf("socket path is %d bytes, the kernel takes at most %d", len(path), maxUnixPath)
	case path[len(path)-1] == '/':
		return spec, fmt.Errorf("socket path %q names a directory", path)
	}
	spec.Path = path
	if hasQuery {
		if err := parseOptions(&spec, query); err != nil {
			return spec, err
		}
	}
	if spec.Source == SourceClient {
		return spec, errors.New("source=client needs a TCP backend (a unix socket has no IP source address)")
	}
	return spec, nil
}

// buildUnixBackend builds a unix-socket backend without runtime state.
func buildUnixBackend(spec BackendSpec) *Backend {
	return &Backend{Spec: spec, AddrText: "unix:" + spec.Path}
}

// hashString places a unix-socket backend on the source_hash ring (FNV-1a,
// then mixed): its points depend on its path only, as a TCP backend's depend
// on its address.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return mix64(h)
}

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"sync"

	"github.com/portier/portier/balancer"
	"github.com/portier/portier/internal/rawsock"
)

// hostCheck vets backend URLs against this host (balancer.TableOptions's
// CheckBackend): source=client needs transparent binds, which need
// CAP_NET_ADMIN; a route asking for it without the capability is refused
// (by -check, at start and on reload; skipped with a log line from Redis),
// never served silently from portier's own address. With sockets set
// (-check), a unix-socket backend must also exist: a missing path is most
// often a typo. At start it is not required, since the application may come
// up after portier; the health checks report it down until it does.
type hostCheck struct {
	sockets bool
	// The capability cannot change while portier runs: probe once per family.
	v4, v6 func() error
}

func newHostCheck(sockets bool) *hostCheck {
	return &hostCheck{
		sockets: sockets,
		v4:      sync.OnceValue(func() error { return rawsock.CheckTransparent(false) }),
		v6:      sync.OnceValue(func() error { return rawsock.CheckTransparent(true) }),
	}
}

// backend is the CheckBackend hook.
func (h *hostCheck) backend(spec balancer.BackendSpec) error {
	if spec.Source == balancer.SourceClient {
		probe := h.v4
		if ip, err := netip.ParseAddr(spec.Host); err == nil && !ip.Unmap().Is4() {
			probe = h.v6
		}
		if err := probe(); err != nil {
			return err
		}
	}
	if h.sockets && spec.IsUnix() {
		return checkSocketPath(spec.Path)
	}
	return nil
}

// checkSocketPath says what is wrong with a unix-socket backend's path.
func checkSocketPath(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("unix socket %s does not exist (is the application running, and is the path right?)", path)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("unix socket %s: no permission to reach it (portier's user needs search permission on its directories): %w", path, err)
	case err != nil:
		return fmt.Errorf("unix socket %s: %w", path, err)
	case fi.Mode().Type() != fs.ModeSocket:
		return fmt.Errorf("%s is not a unix socket (it is a %s)", path, typeName(fi.Mode()))
	}
	return nil
}

func typeName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	}
	return m.Type().String()
}

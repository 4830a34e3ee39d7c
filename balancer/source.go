package balancer

// Source selects the source address of a backend's connections.
type Source uint8

const (
	// SourceProxy: the host's own address, chosen by the kernel (default).
	SourceProxy Source = 0
	// SourceClient: the client's address (source=client, HAProxy's
	// "usesrc clientip"), with a kernel-chosen port: transparent proxying
	// with IP_TRANSPARENT, which needs CAP_NET_ADMIN and policy routing
	// on the host (docs/tuning.md).
	SourceClient Source = 1
)

// String returns the option value that selects s ("proxy", "client").
func (s Source) String() string {
	if s == SourceClient {
		return "client"
	}
	return "proxy"
}

package testutil

import (
	"os/exec"
	"strings"
	"testing"
)

// Addresses of the transparent-proxy topology (TransparentTopology):
//
//	client ns  10.201.1.2  fd00:201:1::2 ──veth── 10.201.1.1 fd00:201:1::1  portier ns
//	portier ns 10.201.2.1  fd00:201:2::1 ──veth── 10.201.2.2 fd00:201:2::2  backend ns
//
// The backend namespace's default route points at portier's, which diverts
// packets of its transparent sockets to itself (Diverts: the setups of
// docs/tuning.md) and does not forward. So a backend answers the client's
// own address, and only portier can take that answer.
const (
	TPClient4, TPClient6   = "10.201.1.2", "fd00:201:1::2"
	TPListen4, TPListen6   = "10.201.1.1", "fd00:201:1::1"
	TPPortier4, TPPortier6 = "10.201.2.1", "fd00:201:2::1"
	TPBackend4, TPBackend6 = "10.201.2.2", "fd00:201:2::2"
)

// Divert is one way for the portier host to take the backends' replies to
// client addresses for itself.
type Divert struct {
	Name  string
	Setup func(t testing.TB, p *Netns)
}

// Diverts are docs/tuning.md's setups, TCP and UDP (QUIC flows): a socket
// match that marks the packets (nftables, iptables) plus policy routing by
// the mark, or policy routing of everything from the backend-side interface.
var Diverts = []Divert{
	{"nftables", func(t testing.TB, p *Netns) {
		cmd := exec.Command("ip", "netns", "exec", p.Name, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(`table inet portier_tproxy {
	chain divert {
		type filter hook prerouting priority mangle; policy accept;
		meta l4proto { tcp, udp } socket transparent 1 meta mark set 0x1 accept
	}
}
`)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft: %v\n%s", err, out)
		}
		localTable(t, p, []string{"fwmark", "1"})
	}},
	{"iptables", func(t testing.TB, p *Netns) {
		for _, ipt := range []string{"iptables", "ip6tables"} {
			p.Run(t, ipt, "-t", "mangle", "-N", "DIVERT")
			p.Run(t, ipt, "-t", "mangle", "-A", "PREROUTING", "-p", "tcp", "-m", "socket", "-j", "DIVERT")
			p.Run(t, ipt, "-t", "mangle", "-A", "PREROUTING", "-p", "udp", "-m", "socket", "-j", "DIVERT")
			p.Run(t, ipt, "-t", "mangle", "-A", "DIVERT", "-j", "MARK", "--set-mark", "1")
			p.Run(t, ipt, "-t", "mangle", "-A", "DIVERT", "-j", "ACCEPT")
		}
		localTable(t, p, []string{"fwmark", "1"})
	}},
	{"ip-rule-iif", func(t testing.TB, p *Netns) {
		localTable(t, p, []string{"iif", "pb", "ipproto", "tcp"}, []string{"iif", "pb", "ipproto", "udp"})
	}},
}

// localTable sends packets matching any of the rule selectors to the local
// stack through routing table 100, for both families.
func localTable(t testing.TB, p *Netns, selectors ...[]string) {
	for _, sel := range selectors {
		p.Run(t, append(append([]string{"ip", "rule", "add"}, sel...), "lookup", "100")...)
		p.Run(t, append(append([]string{"ip", "-6", "rule", "add"}, sel...), "lookup", "100")...)
	}
	p.Run(t, "ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100")
	p.Run(t, "ip", "-6", "route", "add", "local", "::/0", "dev", "lo", "table", "100")
}

// Topology is the client, portier and backend namespaces.
type Topology struct {
	Client, Portier, Backend *Netns
}

// TransparentTopology builds the namespaces and links above, with divert
// set up in portier's namespace.
func TransparentTopology(t testing.TB, divert Divert) *Topology {
	tp := &Topology{Client: NewNetns(t, "ptc"), Portier: NewNetns(t, "ptp"), Backend: NewNetns(t, "ptb")}
	Veth(t, tp.Client, "c0", []string{TPClient4 + "/24", TPClient6 + "/64"}, tp.Portier, "pc", []string{TPListen4 + "/24", TPListen6 + "/64"})
	Veth(t, tp.Portier, "pb", []string{TPPortier4 + "/24", TPPortier6 + "/64"}, tp.Backend, "b0", []string{TPBackend4 + "/24", TPBackend6 + "/64"})
	tp.Client.Run(t, "ip", "route", "add", "default", "via", TPListen4)
	tp.Client.Run(t, "ip", "-6", "route", "add", "default", "via", TPListen6)
	tp.Backend.Run(t, "ip", "route", "add", "default", "via", TPPortier4)
	tp.Backend.Run(t, "ip", "-6", "route", "add", "default", "via", TPPortier6)
	// Portier's host never forwards: only the divert lets it take the replies.
	tp.Portier.Run(t, "sysctl", "-qw", "net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0")
	divert.Setup(t, tp.Portier)
	return tp
}

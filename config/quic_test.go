package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseQUIC(t *testing.T) {
	y := `listeners:
  - {name: web, address: "127.0.0.1:443", protocol: tls}
  - {name: h3, address: "127.0.0.1:443", protocol: quic}
timeouts: {quic_idle: 10s}
limits: {max_flows: 5000, max_flows_per_ip: 20}
routes:
  a.test: ["quic://127.0.0.1:9443", "tls://127.0.0.1:9443"]
`
	c, err := Parse([]byte(y), "q.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listeners[1].Protocol != "quic" || c.Timeouts.QUICIdle != 10*time.Second ||
		c.Limits.MaxFlows != 5000 || c.Limits.MaxFlowsPerIP != 20 {
		t.Errorf("%+v", c)
	}
	bad := `listeners:
  - {name: h3, address: "127.0.0.1:443", protocol: quic, accept_proxy: true, trusted_proxies: [10.0.0.0/8]}
`
	if _, err := Parse([]byte(bad), "q.yaml"); err == nil || !strings.Contains(err.Error(), "TCP only") {
		t.Errorf("accept_proxy on quic: %v", err)
	}
}

package admin

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portier/portier/engine"
)

// quicCollector exports the engine's QUIC flow counters (summed over loops at
// scrape time).
type quicCollector struct {
	e                                         *engine.Engine
	flows, flowsTotal, datagrams, bytes, drop *prometheus.Desc
	refused, rebinds, split                   *prometheus.Desc
}

func newQUICCollector(e *engine.Engine) *quicCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("portier_quic_"+name, help, labels, nil)
	}
	return &quicCollector{
		e:          e,
		flows:      d("flows", "QUIC flows (client address to backend socket) currently open."),
		flowsTotal: d("flows_total", "QUIC flows ended, by outcome.", "outcome"),
		datagrams:  d("datagrams_total", "QUIC datagrams (up: from clients, down: to clients).", "direction"),
		bytes:      d("bytes_total", "QUIC datagram payload bytes (up: from clients, down: to clients).", "direction"),
		drop:       d("drops_total", "Client datagrams dropped, by reason.", "reason"),
		refused:    d("refused_total", "Clients refused with CONNECTION_CLOSE (TLS alert 112, unrecognized_name)."),
		rebinds:    d("rebinds_total", "Flows moved to a client's new address (NAT rebinding)."),
		split:      d("split_client_hellos_total", "ClientHellos reassembled from two or more datagrams."),
	}
}

func (c *quicCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.flows, c.flowsTotal, c.datagrams, c.bytes, c.drop, c.refused, c.rebinds, c.split} {
		ch <- d
	}
}

func (c *quicCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	s := c.e.QUICStats()
	ch <- prometheus.MustNewConstMetric(c.flows, prometheus.GaugeValue, float64(s.Flows))
	for o := engine.Outcome(0); o < engine.NumOutcomes; o++ {
		counter(c.flowsTotal, s.Outcomes[o], o.String())
	}
	counter(c.datagrams, s.DatagramsUp, "up")
	counter(c.datagrams, s.DatagramsDown, "down")
	counter(c.bytes, s.BytesUp, "up")
	counter(c.bytes, s.BytesDown, "down")
	for r := engine.QUICDrop(0); r < engine.NumQUICDrops; r++ {
		counter(c.drop, s.Drops[r], r.String())
	}
	counter(c.refused, s.Refused)
	counter(c.rebinds, s.Rebinds)
	counter(c.split, s.SplitHellos)
}

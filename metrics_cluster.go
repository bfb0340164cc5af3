package knocker

import (
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-knocker/knocker/cluster"
	"github.com/caddy-knocker/knocker/internal/promreg"
)

// Cluster metrics: process-wide like the others (see metrics.go), and the
// state gauges read this config's replicator when scraped.

var clusterMetrics = struct {
	propagation prometheus.Histogram
	errors      *prometheus.CounterVec
	rejected    prometheus.Counter
}{
	propagation: prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "caddy_knocker", Subsystem: "cluster", Name: "propagation_seconds",
		Help: "Time from a grant being made on another node to its being applied here (includes the nodes' clock difference).",
		// Loopback is under a millisecond; across the internet, tens to
		// hundreds; a catch-up after an outage, seconds and more.
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 60},
	}),
	errors: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy_knocker", Subsystem: "cluster", Name: "engine_errors_total",
		Help: "Failed operations on the cluster engine, by operation.",
	}, []string{"op"}),
	rejected: prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy_knocker", Subsystem: "cluster", Name: "rejected_records_total",
		Help: "Cluster records that failed their signature or format check and admit nobody.",
	}),
}

var clusterObserver = cluster.Observer{
	Propagation: func(d time.Duration) { clusterMetrics.propagation.Observe(max(d, 0).Seconds()) },
	EngineError: func(op string) { clusterMetrics.errors.WithLabelValues(op).Inc() },
	Rejected:    clusterMetrics.rejected.Inc,
}

// registerClusterMetrics registers the cluster metrics, with this
// config's state gauges, in cluster mode.
func (a *App) registerClusterMetrics(ctx caddy.Context) error {
	state := func(name, help string, f func(cluster.State) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "caddy_knocker", Subsystem: "cluster", Name: name, Help: help},
			func() float64 { return f(a.repl.State()) })
	}
	return promreg.Register(ctx.GetMetricsRegistry(),
		clusterMetrics.propagation, clusterMetrics.errors, clusterMetrics.rejected,
		state("connected", "1 while the cluster engine is connected and the bucket usable.", func(s cluster.State) float64 { return b2f(s.Connected) }),
		state("synced", "1 once this node has caught up with the shared whitelist.", func(s cluster.State) float64 { return b2f(s.Synced) }),
		state("revision_lag", "Changes the engine holds that this node has not received yet.", func(s cluster.State) float64 { return float64(s.Pending) }),
		state("unpublished", "This node's records waiting for the engine (revocations, bans, when_down local grants).", func(s cluster.State) float64 { return float64(s.Unpublished) }),
	)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

package firewalld

import (
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-knocker/knocker/internal/promreg"
)

// The backend's metrics, registered beside the knocker app's on every
// config's registry (see internal/promreg): the latency and the failures
// of its operations on firewalld. No label carries an address.

// operation is the operation label.
type operation uint8

const (
	opStart  operation = iota // Start: set up and verify the zones, restore the grants
	opOpen                    // open a grant's accept rules (a knock's, or a stored grant's)
	opClose                   // remove a grant's accept rules (revoked, expired)
	opResync                  // re-apply everything after a firewalld reload or restart
	opVerify                  // /ready's check of the protection
	numOperations
)

var operationNames = [numOperations]string{"start", "open", "close", "resync", "verify"}

var metrics = newMetrics()

type backendMetrics struct {
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec

	// Every label's children, resolved once.
	observe [numOperations]prometheus.Observer
	failed  [numOperations]prometheus.Counter
}

func newMetrics() *backendMetrics {
	m := &backendMetrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "caddy_knocker", Subsystem: "firewalld", Name: "operation_duration_seconds",
			Help: "Duration of the firewalld backend's operations over D-Bus, by operation: start, open, close, resync, verify.",
			// One rule takes about a millisecond; a resync of many grants
			// or a firewalld restart takes seconds.
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"operation"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "caddy_knocker", Subsystem: "firewalld", Name: "operation_errors_total",
			Help: "Failed operations of the firewalld backend, by operation (the log says why).",
		}, []string{"operation"}),
	}
	for op := range numOperations {
		m.observe[op] = m.duration.WithLabelValues(operationNames[op])
		m.failed[op] = m.errors.WithLabelValues(operationNames[op])
	}
	return m
}

// done records an operation that began at began and ended with *err. For
// a defer: defer metrics.done(opOpen, time.Now(), &err).
func (m *backendMetrics) done(op operation, began time.Time, err *error) {
	m.observe[op].Observe(time.Since(began).Seconds())
	if *err != nil {
		m.failed[op].Inc()
	}
}

// registerMetrics puts the backend's collectors on ctx's registry.
func registerMetrics(ctx caddy.Context) error {
	return promreg.Register(ctx.GetMetricsRegistry(), metrics.duration, metrics.errors)
}

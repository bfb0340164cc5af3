package knocker

import (
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-knocker/knocker/internal/promreg"
)

// The knocker app's metrics, served with Caddy's on the admin endpoint's
// /metrics (docs/operations.md). The collectors are created once per
// process and registered on every config's registry (Caddy makes a fresh
// one per config load), so counters and histograms keep counting across
// reloads. No label carries an address or a secret.

// knockOutcome is the outcome label of a knock's answer.
type knockOutcome uint8

const (
	outcomeGranted knockOutcome = iota
	outcomeInvalidKey
	outcomeForbidden
	outcomeBadRequest
	outcomeRateLimited
	outcomeError
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"granted", "invalid_key", "forbidden", "bad_request", "rate_limited", "error"}

// outcomeOf maps the status of a knock's answer to its outcome: 200
// granted, 401 invalid_key (a missing key too), 403 forbidden, 429
// rate_limited, any other 4xx bad_request (no client IP, a bad body, 405,
// 413, 415, 425), and everything else error (500, 503: the firewall, the
// store, a full whitelist).
func outcomeOf(status int) knockOutcome {
	switch {
	case status == http.StatusOK:
		return outcomeGranted
	case status == http.StatusUnauthorized:
		return outcomeInvalidKey
	case status == http.StatusForbidden:
		return outcomeForbidden
	case status == http.StatusTooManyRequests:
		return outcomeRateLimited
	case status >= 400 && status < 500:
		return outcomeBadRequest
	}
	return outcomeError
}

// gateDecision is the decision label of a request the gate saw.
type gateDecision uint8

const (
	decisionAllowed       gateDecision = iota // an active grant
	decisionDenied                            // no grant, no client IP, or 0-RTT
	decisionExcluded                          // an excluded path
	decisionAlwaysAllowed                     // always_allow
	numDecisions
)

var decisionNames = [numDecisions]string{"allowed", "denied", "excluded", "always_allowed"}

var metrics = newMetrics()

type knockerMetrics struct {
	knocks        *prometheus.CounterVec
	knockDuration *prometheus.HistogramVec
	gate          *prometheus.CounterVec
	storeSync     prometheus.Histogram

	// Every label's child, resolved once, so that counting is one atomic
	// add: no label lookup, no allocation on the gate's path.
	knock        [numOutcomes]prometheus.Counter
	knockLatency [numOutcomes]prometheus.Observer
	decision     [numDecisions]prometheus.Counter
}

func newMetrics() *knockerMetrics {
	const ns = "caddy_knocker"
	m := &knockerMetrics{
		knocks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "knocks_total",
			Help: "Knocks (POST /knock) answered, by outcome: granted, invalid_key, forbidden, bad_request, rate_limited, error.",
		}, []string{"outcome"}),
		knockDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "knock_duration_seconds",
			Help: "Time to answer a knock, by outcome; a granted knock includes the journal fsync and, with firewalld, its rules.",
			// From a refusal (tens of µs) through a durable grant (an
			// fsync: 0.2 to 10 ms) to a slow firewalld (seconds).
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"outcome"}),
		gate: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "gate_requests_total",
			Help: "Requests the knocker gate decided, by decision: allowed (a grant), denied, excluded (path), always_allowed.",
		}, []string{"decision"}),
		storeSync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "store_fsync_duration_seconds",
			Help:    "Duration of the whitelist journal's fsyncs, one per group commit of grants and revocations.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
	}
	for o := range numOutcomes {
		m.knock[o] = m.knocks.WithLabelValues(outcomeNames[o])
		m.knockLatency[o] = m.knockDuration.WithLabelValues(outcomeNames[o])
	}
	for d := range numDecisions {
		m.decision[d] = m.gate.WithLabelValues(decisionNames[d])
	}
	return m
}

// countKnock records one answered knock.
func (m *knockerMetrics) countKnock(status int, began time.Time) {
	o := outcomeOf(status)
	m.knock[o].Inc()
	m.knockLatency[o].Observe(time.Since(began).Seconds())
}

// countGate records one gate decision.
func (m *knockerMetrics) countGate(d gateDecision) { m.decision[d].Inc() }

// observeStoreSync is the store's ObserveSync hook. The store outlives
// configs, so it reports to the process-wide histogram.
func observeStoreSync(d time.Duration) { metrics.storeSync.Observe(d.Seconds()) }

// registerMetrics puts the process-wide collectors and this config's grants
// gauge on ctx's registry. The gauge reads the store's count when scraped:
// exact by construction, free for grants, and with no subscription to
// start and stop across reloads (each config's registry has its own gauge,
// reading that config's store).
func (a *App) registerMetrics(ctx caddy.Context) error {
	grants := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "caddy_knocker", Name: "grants",
		Help: "Whitelist entries held; an expired one counts until the next sweep (cleanup_interval).",
	}, func() float64 {
		if s := a.run.st.Load(); s != nil {
			return float64(s.Len())
		}
		return 0
	})
	return promreg.Register(ctx.GetMetricsRegistry(), metrics.knocks, metrics.knockDuration, metrics.gate, metrics.storeSync, grants)
}

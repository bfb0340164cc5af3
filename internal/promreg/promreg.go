// Package promreg registers process-wide Prometheus collectors on the
// registry of a Caddy config.
//
// Caddy makes a fresh registry for every config it loads and points the
// admin endpoint's /metrics at it. Collectors created once per process and
// registered on each config's registry keep their values across reloads,
// as Caddy's own admin and config metrics do.
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers each collector on reg (nil: none, e.g. a
// caddy.Context not made by Caddy). A collector already registered there
// is fine: several modules of one config register the same ones. A
// different collector under the same name is an error.
func Register(reg *prometheus.Registry, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		err := reg.Register(c)
		var already prometheus.AlreadyRegisteredError
		if errors.As(err, &already) && already.ExistingCollector == c {
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

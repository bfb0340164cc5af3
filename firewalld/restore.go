//go:build !(illumos || solaris || dragonfly)

package firewalld

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"go.uber.org/zap"
)

// restoreWindow is how many addRichRule calls a restore keeps in flight.
const restoreWindow = 32

// restoreGrants gives every active grant its accept rules (the ports its
// scopes open) with the remaining time and prunes Knocker accept rules no grant explains. A rule
// that is there already is left alone if this process placed it with the
// right expiry (a Caddy config reload), else replaced (remove + add: its
// timeout is unknown). The caller holds r.sh.mu.
func (r *reconciler) restoreGrants(ctx context.Context) (restored, pruned int, err error) {
	c, err := r.client()
	if err != nil {
		return 0, 0, err
	}
	now := time.Now().Unix()
	type want struct {
		p       netip.Prefix
		expires int64
	}
	wanted := map[string]want{} // by rule text, same in every zone
	stored := map[netip.Prefix]bool{}
	for _, e := range r.store.Entries(now) {
		if ruleTimeout(e.Expires, now) == 0 {
			continue
		}
		stored[e.Prefix] = true
		// A prefix's grants of several scope sets may open one port:
		// its rule lasts as long as the latest of them.
		for _, rule := range acceptRules(e.Prefix, r.cfg.portsFor(e.Scopes)) {
			if w, ok := wanted[rule.String()]; !ok || w.expires < e.Expires {
				wanted[rule.String()] = want{e.Prefix, e.Expires}
			}
		}
	}
	// Latest expiry first: usually the latest knocks, the clients most
	// likely to be connecting right now.
	order := make([]string, 0, len(wanted))
	for s := range wanted {
		order = append(order, s)
	}
	slices.SortFunc(order, func(a, b string) int { return cmp.Compare(wanted[b].expires, wanted[a].expires) })

	var errs []error
	for _, z := range r.currentZones() {
		existing, err := c.runtimeRules(ctx, z)
		if err != nil {
			errs = append(errs, fmt.Errorf("zone %q: %w", z, err))
			continue
		}
		// What this process placed and firewalld still lists stays known.
		known := map[placement]int64{}
		for _, s := range existing {
			if rule, ok := parseKnockerRule(s); ok && rule.action == actionAccept {
				at := placement{z, s}
				if e, ok := r.sh.placedExpiry(rule.source, at); ok {
					known[at] = e
				}
			}
		}
		r.sh.forgetZone(z)
		for _, s := range existing {
			rule, ok := parseKnockerRule(s)
			if !ok || rule.action != actionAccept {
				continue
			}
			at := placement{z, s}
			if e, ok := known[at]; ok {
				r.sh.setPlaced(rule.source, at, e)
			}
			if _, ok := wanted[s]; ok {
				continue
			}
			if r.sh.recentlyOpened(rule.source) && (!stored[rule.source] || slices.Contains(r.cfg.ports, rule.port)) {
				// A knock in flight: its grant is not stored yet, though
				// another grant of its prefix (another scope set) may be.
				continue
			}
			if err := r.removeRule(ctx, c, rule.source, at); err != nil {
				errs = append(errs, fmt.Errorf("zone %q: %w", z, err))
				continue
			}
			pruned++
		}

		// Rules that exist with an unknown timeout are replaced one by
		// one; missing ones (all of them after a reload) are added with
		// many calls in flight.
		present := setOf(existing)
		var batch []timedRule
		var batchAt []placement
		for _, s := range order {
			w, at := wanted[s], placement{z, s}
			e, known := r.sh.placedExpiry(w.p, at)
			switch {
			case known && e == w.expires:
				restored++
				continue
			case !present[s]:
				batch = append(batch, timedRule{s, ruleTimeout(w.expires, now)})
				batchAt = append(batchAt, at)
				continue
			}
			if !known {
				r.sh.setPlaced(w.p, at, 0) // present: putRule removes it first
			}
			if err := r.putRule(ctx, c, w.p, at, w.expires); err != nil {
				errs = append(errs, fmt.Errorf("zone %q: %s: %w", z, s, err))
				continue
			}
			restored++
		}
		for i, err := range c.addRuntimeRules(ctx, z, batch, restoreWindow) {
			w := wanted[batchAt[i].rule]
			if errors.Is(err, ErrAlreadyEnabled) { // appeared meanwhile
				err = r.putRule(ctx, c, w.p, batchAt[i], w.expires)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("zone %q: %s: %w", z, batchAt[i].rule, err))
				continue
			}
			r.sh.setPlaced(w.p, batchAt[i], w.expires)
			restored++
		}
	}
	if len(errs) > 3 {
		errs = append(errs[:3], fmt.Errorf("and %d more errors", len(errs)-3))
	}
	return restored, pruned, errors.Join(errs...)
}

// resync re-verifies the zones and re-applies every grant, after firewalld
// reloaded, restarted, or the connection came back. The worker calls it.
func (r *reconciler) resync(reason string) {
	if r.sh.superseded(r) {
		r.log.Debug("resync left to the newer configuration", zap.String("reason", reason))
		return
	}
	began := time.Now()
	log := r.log.With(zap.String("reason", reason))
	c, err := r.client()
	if err == nil {
		err = r.waitRunning(r.ctx, c, 30*time.Second) // a restart takes a moment
	}
	r.sh.mu.Lock()
	defer r.sh.mu.Unlock()
	if err == nil {
		err = r.protect(r.ctx)
	}
	if err != nil {
		log.Error("re-applying protection", zap.Error(err))
		// Grants are still restored below where the zones allow it.
	}
	restored, pruned, rerr := r.restoreGrants(r.ctx)
	if rerr != nil {
		log.Error("restoring grants' accept rules", zap.Error(rerr))
	}
	failed := errors.Join(err, rerr)
	metrics.done(opResync, began, &failed)
	log.Info("firewalld rules re-applied",
		zap.Int("accept_rules", restored),
		zap.Int("stale_accepts_pruned", pruned),
		zap.Duration("took", time.Since(began)))
}

//go:build !(illumos || solaris || dragonfly)

package firewalld

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"go.uber.org/zap"
)

// protect makes every protected zone hold exactly this configuration's
// default rules among Knocker's: it adds the missing ones and prunes those
// a previous configuration left (other ports, sources, zones or action),
// in the permanent configuration and, mirrored, at runtime. Mirroring
// instead of reloading keeps what a reload would wipe: the grants' timed
// accepts and the administrator's own runtime-only changes (fail2ban's
// bans, say). The caller holds r.sh.mu.
func (r *reconciler) protect(ctx context.Context) error {
	c, err := r.client()
	if err != nil {
		return err
	}
	zones := r.cfg.zones
	if len(zones) == 0 {
		def, err := c.defaultZone(ctx)
		if err != nil {
			return err
		}
		zones = []string{def}
	}
	r.zonesMu.Lock()
	r.zones = zones
	r.zonesMu.Unlock()

	old, found, err := loadState(r.statePath)
	if err != nil {
		// Same footing as a missing file: only rules of Knocker's exact
		// priority and shape are pruned.
		r.log.Warn("ignoring unreadable state file", zap.Error(err))
	}
	desired := blockRules(r.cfg.ports, r.cfg.monitor, r.cfg.action)
	desiredText := make([]string, len(desired))
	for i, d := range desired {
		desiredText[i] = d.String()
	}

	// Record what is about to be added before adding it.
	next := map[string][]string{}
	for z, rules := range old.Zones {
		next[z] = slices.Clone(rules)
	}
	for _, z := range zones {
		next[z] = append(next[z], desiredText...)
	}
	if !found || !equalState(old.Zones, next) {
		if err := saveState(r.statePath, ruleState{Zones: next}); err != nil {
			return err
		}
	}

	final := map[string][]string{}
	visit := slices.Sorted(maps.Keys(next))
	var errs []error
	for _, z := range visit {
		want := []string(nil)
		if slices.Contains(zones, z) {
			want = desiredText
		}
		var owned map[string]bool
		if found {
			owned = setOf(old.Zones[z])
		}
		err := r.protectZone(ctx, c, z, want, owned)
		switch {
		case err == nil:
			final[z] = want
		case want == nil && errors.Is(err, ErrInvalidZone):
			// A zone no longer protected has been deleted: nothing left to prune.
		default:
			errs = append(errs, fmt.Errorf("zone %q: %w", z, err))
			final[z] = next[z] // keep ownership of what may still be there
		}
	}
	if !equalState(next, final) {
		if err := saveState(r.statePath, ruleState{Zones: final}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// protectZone adds want to zone (permanent and runtime) and removes the
// other Knocker default rules: those in owned, or without a state file
// (owned == nil) those of Knocker's exact priority and shape. want == nil
// means the zone is no longer protected.
func (r *reconciler) protectZone(ctx context.Context, c *client, zone string, want []string, owned map[string]bool) error {
	path, err := c.permanentZone(ctx, zone)
	if err != nil {
		return err
	}
	perm, err := c.permanentRules(ctx, path)
	if err != nil {
		return err
	}
	runtime, err := c.runtimeRules(ctx, zone)
	if err != nil {
		return err
	}
	isOwned := func(s string) bool {
		if owned != nil {
			return owned[s]
		}
		rule, ok := parseKnockerRule(s)
		return ok && rule.action != actionAccept
	}
	wanted := setOf(want)
	inPerm, inRuntime := setOf(perm), setOf(runtime)
	log := r.log.With(zap.String("zone", zone))

	for _, s := range want {
		if !inPerm[s] {
			if err := c.addPermanentRule(ctx, path, s); err != nil && !errors.Is(err, ErrAlreadyEnabled) {
				return err
			}
			log.Info("added permanent rule", zap.String("rule", s))
		}
		if !inRuntime[s] {
			if err := c.addRuntimeRule(ctx, zone, s, 0); err != nil && !errors.Is(err, ErrAlreadyEnabled) {
				return err
			}
		}
	}
	for _, s := range perm {
		if !wanted[s] && isOwned(s) {
			if err := c.removePermanentRule(ctx, path, s); err != nil && !errors.Is(err, ErrNotEnabled) {
				return err
			}
			log.Info("pruned permanent rule of a previous configuration", zap.String("rule", s))
		}
	}
	for _, s := range runtime {
		// In a zone no longer protected, the grants' accepts go too.
		if !wanted[s] && (isOwned(s) || want == nil && isKnockerAccept(s)) {
			if err := c.removeRuntimeRule(ctx, zone, s); err != nil && !errors.Is(err, ErrNotEnabled) {
				return err
			}
		}
	}
	return nil
}

// verify checks the protection: firewalld runs and every default rule is
// active (runtime) in every protected zone.
func (r *reconciler) verify(ctx context.Context) error {
	c, err := r.client()
	if err != nil {
		return err
	}
	if err := r.checkRunning(ctx, c); err != nil {
		return err
	}
	zones := r.currentZones()
	if len(zones) == 0 {
		return errors.New("no zone resolved yet")
	}
	desired := blockRules(r.cfg.ports, r.cfg.monitor, r.cfg.action)
	for _, z := range zones {
		runtime, err := c.runtimeRules(ctx, z)
		if err != nil {
			return fmt.Errorf("zone %q: %w", z, err)
		}
		have := setOf(runtime)
		for _, d := range desired {
			s := d.String()
			if have[s] {
				continue
			}
			// A differently spelled but equal rule still protects.
			if ok, err := c.queryRuntimeRule(ctx, z, s); err != nil {
				return fmt.Errorf("zone %q: %w", z, err)
			} else if !ok {
				return fmt.Errorf("zone %q: default rule missing at runtime (removed behind Knocker's back?): %s", z, s)
			}
		}
	}
	return nil
}

func isKnockerAccept(s string) bool {
	r, ok := parseKnockerRule(s)
	return ok && r.action == actionAccept
}

func setOf(list []string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, s := range list {
		m[s] = true
	}
	return m
}

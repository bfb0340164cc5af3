//go:build !(illumos || solaris || dragonfly)

package firewalld

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-knocker/knocker/firewall"
	"github.com/caddy-knocker/knocker/store"
)

// Everything here runs on a reconciler's worker with r.sh.mu held.

// ruleTimeout converts an expiry into firewalld's timeout: whole seconds
// left, clamped to int32. 0 means expired (firewalld would read 0 as
// "no timeout", so callers must not pass it on).
func ruleTimeout(expires, now int64) int32 {
	left := expires - now
	switch {
	case left <= 0:
		return 0
	case left > math.MaxInt32:
		return math.MaxInt32
	}
	return int32(left)
}

// openGrant is PrepareGrant's job: give g.Prefix one accept rule per zone
// and port g opens. Each expires with the latest of g and the prefix's
// other stored grants that open the same port: g replaces the stored grant
// of its own scope set, and the others keep their ports open until they
// expire. Ports g does not open are left alone. If a rule fails, the
// rules already changed are put back in line with the store and the error
// is returned.
func (r *reconciler) openGrant(ctx context.Context, g firewall.Grant) (err error) {
	defer metrics.done(opOpen, time.Now(), &err)
	c, err := r.client()
	if err != nil {
		return err
	}
	p, now := g.Prefix, time.Now().Unix()
	if ruleTimeout(g.Expires, now) == 0 {
		return fmt.Errorf("grant for %s has already expired", store.FormatPrefix(p))
	}
	others := slices.DeleteFunc(r.store.EntriesOf(p, now), func(e store.Entry) bool {
		return slices.Equal(e.Scopes, g.Scopes)
	})
	keep := r.ruleExpiries(p, others, now)
	var done []placement
	for _, at := range r.placementsFor(p, r.cfg.portsFor(g.Scopes)) {
		// The failed rule is rolled back too: it may have been removed
		// for replacement before its add failed.
		done = append(done, at)
		if err := r.putRule(ctx, c, p, at, max(g.Expires, keep[at.rule])); err != nil {
			r.rollback(c, p, done)
			return fmt.Errorf("zone %q: %w", at.zone, err)
		}
	}
	return nil
}

// ruleExpiries returns the accept rules of p that grants (p's entries)
// call for under this configuration, by rule text (the same in every
// zone): per port, the latest expiry among the active grants that open it.
// Ports no grant opens are absent.
func (r *reconciler) ruleExpiries(p netip.Prefix, grants []store.Entry, now int64) map[string]int64 {
	out := map[string]int64{}
	for _, g := range grants {
		if ruleTimeout(g.Expires, now) == 0 {
			continue
		}
		for _, rule := range acceptRules(p, r.cfg.portsFor(g.Scopes)) {
			s := rule.String()
			out[s] = max(out[s], g.Expires)
		}
	}
	return out
}

// placementsFor lists p's accept rules for ports under this configuration.
func (r *reconciler) placementsFor(p netip.Prefix, ports []Port) []placement {
	rules := acceptRules(p, ports)
	zones := r.currentZones()
	out := make([]placement, 0, len(zones)*len(rules))
	for _, z := range zones {
		for _, rule := range rules {
			out = append(out, placement{z, rule.String()})
		}
	}
	return out
}

// putRule makes rule at.rule in at.zone expire at expires (removed if it
// has expired). A rule that is (or may be) there is removed first: adding
// an existing rule fails with ALREADY_ENABLED and would not refresh its
// timeout.
func (r *reconciler) putRule(ctx context.Context, c *client, p netip.Prefix, at placement, expires int64) error {
	ttl := ruleTimeout(expires, time.Now().Unix())
	if ttl == 0 {
		return r.removeRule(ctx, c, p, at)
	}
	if _, known := r.sh.placedExpiry(p, at); known {
		if err := r.removeRule(ctx, c, p, at); err != nil {
			return err
		}
	}
	err := c.addRuntimeRule(ctx, at.zone, at.rule, ttl)
	if errors.Is(err, ErrAlreadyEnabled) { // put there by someone else
		if err := r.removeRule(ctx, c, p, at); err != nil {
			return err
		}
		err = c.addRuntimeRule(ctx, at.zone, at.rule, ttl)
	}
	if err != nil {
		return err
	}
	r.sh.setPlaced(p, at, expires)
	return nil
}

// removeRule removes one accept rule; an absent rule is not an error.
func (r *reconciler) removeRule(ctx context.Context, c *client, p netip.Prefix, at placement) error {
	if err := ignore(c.removeRuntimeRule(ctx, at.zone, at.rule), ErrNotEnabled); err != nil {
		return err
	}
	r.sh.forgetPlaced(p, at)
	return nil
}

// rollback puts the rules openGrant changed back in line with the store,
// which does not have the new grant yet: with the expiry p's stored grants
// give them (a failed re-knock keeps the earlier grant open), else
// removed. It runs even if the caller's context is done.
func (r *reconciler) rollback(c *client, p netip.Prefix, done []placement) {
	// Not r.ctx: a knock cancelled by Stop must still take back the rules
	// it placed, or they would stay open with no grant.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), callTimeout)
	defer cancel()
	now := time.Now().Unix()
	prev := r.ruleExpiries(p, r.store.EntriesOf(p, now), now)
	for _, at := range done {
		if err := r.putRule(ctx, c, p, at, prev[at.rule]); err != nil {
			r.log.Warn("rolling back accept rule", zap.String("zone", at.zone),
				zap.String("rule", at.rule), zap.Error(err))
		}
	}
}

// syncGrant makes p's accept rules what its stored grants call for: each
// rule of a port they open placed with its expiry, and the other rules
// placed for p removed: any configuration's if prune, else only those
// this configuration would place. Rules already right are left alone, so
// a grant PrepareGrant opened costs nothing here.
func (r *reconciler) syncGrant(ctx context.Context, p netip.Prefix, grants []store.Entry, prune bool) (err error) {
	now := time.Now().Unix()
	want := r.ruleExpiries(p, grants, now)
	zones := setOf(r.currentZones())
	own := map[placement]bool{}
	var put []placement
	for _, at := range r.placementsFor(p, r.cfg.ports) {
		own[at] = true
		if exp, ok := want[at.rule]; ok {
			if e, placed := r.sh.placedExpiry(p, at); !placed || e != exp {
				put = append(put, at)
			}
		}
	}
	var drop []placement
	for at, expires := range r.sh.placementsOf(p) {
		if _, ok := want[at.rule]; ok && zones[at.zone] || !prune && !own[at] {
			continue
		}
		if expires < now-2 {
			// firewalld's own timer has removed it already; asking
			// again would only make firewalld log NOT_ENABLED.
			r.sh.forgetPlaced(p, at)
			continue
		}
		drop = append(drop, at)
	}
	if len(put) == 0 && len(drop) == 0 {
		return nil
	}
	op := opOpen
	if len(put) == 0 {
		op = opClose
	}
	defer metrics.done(op, time.Now(), &err)
	c, err := r.client()
	if err != nil {
		return err
	}
	var errs []error
	for _, at := range put {
		if err := r.putRule(ctx, c, p, at, want[at.rule]); err != nil {
			errs = append(errs, fmt.Errorf("zone %q: %w", at.zone, err))
		}
	}
	for _, at := range drop {
		if err := r.removeRule(ctx, c, p, at); err != nil {
			errs = append(errs, fmt.Errorf("zone %q: %w", at.zone, err))
		}
	}
	return errors.Join(errs...)
}

// onStoreEvent runs on the store's committer goroutine: it only records
// the change for the worker, which then brings the prefix's rules in line
// with all its stored grants (another grant of the prefix may keep some
// ports open). Added and Extended usually need nothing (PrepareGrant
// opened the rules before the grant was stored); the worker acts only for
// grants that reached the store another way.
func (r *reconciler) onStoreEvent(ev store.Event) {
	switch ev.Kind {
	case store.Added, store.Extended, store.Removed, store.Expired:
		r.enqueue(ev.Entry.Prefix, pendingOp{sync: true})
	}
}

// handlePending does what was recorded for p.
func (r *reconciler) handlePending(p netip.Prefix, op pendingOp) {
	ctx, cancel := context.WithTimeout(r.ctx, callTimeout)
	defer cancel()
	log := r.log.With(zap.String("grant", store.FormatPrefix(p)))
	now := time.Now().Unix()
	if op.sync || op.fromStore {
		grants := r.store.EntriesOf(p, now)
		superseded := r.sh.superseded(r)
		switch {
		case len(grants) > 0 && superseded && !op.fromStore:
			// The newest configuration opens rules for store events; an
			// undo is this configuration's own business.
		default:
			// Closing everything is every configuration's business.
			if err := r.syncGrant(ctx, p, grants, len(grants) == 0 || !superseded); err != nil {
				log.Error("bringing accept rules in line with the stored grants", zap.Error(err))
			}
		}
	}
	if op.verify && !r.sh.superseded(r) {
		r.reviveRules(ctx, p, now)
	}
}

// reviveRules re-adds p's accept rules that firewalld dropped before their
// time. firewalld (seen in 1.3.3 and 2.3.1) keeps a timed rule's timer
// across a reload, so a rule re-added after the reload and then extended
// by a re-knock is removed when the stale timer fires. firewalld's
// RichRuleRemoved signal, sent for such removals too, leads here; it is
// only a hint, so each rule is queried first.
func (r *reconciler) reviveRules(ctx context.Context, p netip.Prefix, now int64) {
	c, err := r.client()
	if err != nil {
		return
	}
	for at, expires := range r.sh.placementsOf(p) {
		if expires-now < 2 { // expiring anyway
			continue
		}
		present, err := c.queryRuntimeRule(ctx, at.zone, at.rule)
		if err != nil || present {
			continue
		}
		r.sh.forgetPlaced(p, at)
		if err := r.putRule(ctx, c, p, at, expires); err != nil {
			r.log.Error("re-adding accept rule firewalld dropped early", zap.String("zone", at.zone),
				zap.String("rule", at.rule), zap.Error(err))
			continue
		}
		r.log.Info("re-added accept rule firewalld dropped before the grant expired",
			zap.String("zone", at.zone), zap.String("rule", at.rule), zap.Int64("expires", expires))
	}
}

// ignore returns nil if err is target.
func ignore(err, target error) error {
	if errors.Is(err, target) {
		return nil
	}
	return err
}

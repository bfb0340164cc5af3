//go:build !(illumos || solaris || dragonfly)

package firewalld

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	"go.uber.org/zap"

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

// openGrant is PrepareGrant's job: give p one accept rule per zone and port
// that expires at expires. If one fails, the rules already changed are put
// back in line with the store and the error is returned.
func (r *reconciler) openGrant(ctx context.Context, p netip.Prefix, expires int64) (err error) {
	defer metrics.done(opOpen, time.Now(), &err)
	c, err := r.client()
	if err != nil {
		return err
	}
	if ruleTimeout(expires, time.Now().Unix()) == 0 {
		return fmt.Errorf("grant for %s has already expired", store.FormatPrefix(p))
	}
	var done []placement
	for _, at := range r.placementsFor(p) {
		// The failed rule is rolled back too: it may have been removed
		// for replacement before its add failed.
		done = append(done, at)
		if err := r.putRule(ctx, c, p, at, expires); err != nil {
			r.rollback(c, p, done)
			return fmt.Errorf("zone %q: %w", at.zone, err)
		}
	}
	return nil
}

// placementsFor lists p's accept rules under this configuration.
func (r *reconciler) placementsFor(p netip.Prefix) []placement {
	rules := acceptRules(p, r.cfg.ports)
	zones := r.currentZones()
	out := make([]placement, 0, len(zones)*len(rules))
	for _, z := range zones {
		for _, rule := range rules {
			out = append(out, placement{z, rule.String()})
		}
	}
	return out
}

// putRule makes rule at.rule in at.zone expire at expires. A rule that is
// (or may be) there is removed first: adding an existing rule fails with
// ALREADY_ENABLED and would not refresh its timeout.
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
// which does not have the new grant yet: with the stored grant's expiry if
// p has one (a failed re-knock keeps the earlier grant open), else removed.
// It runs even if the caller's context is done.
func (r *reconciler) rollback(c *client, p netip.Prefix, done []placement) {
	// Not r.ctx: a knock cancelled by Stop must still take back the rules
	// it placed, or they would stay open with no grant.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), callTimeout)
	defer cancel()
	prev := r.storeExpiry(p, time.Now().Unix())
	for _, at := range done {
		if err := r.putRule(ctx, c, p, at, prev); err != nil {
			r.log.Warn("rolling back accept rule", zap.String("zone", at.zone),
				zap.String("rule", at.rule), zap.Error(err))
		}
	}
}

// closeGrant removes every accept rule placed for p, in any zone and for
// any port (also those of an earlier configuration).
func (r *reconciler) closeGrant(ctx context.Context, p netip.Prefix) (err error) {
	defer metrics.done(opClose, time.Now(), &err)
	c, err := r.client()
	if err != nil {
		return err
	}
	now := time.Now().Unix()
	var errs []error
	for at, expires := range r.sh.placementsOf(p) {
		if expires < now-2 {
			// firewalld's own timer has removed it already; asking
			// again would only make firewalld log NOT_ENABLED.
			r.sh.forgetPlaced(p, at)
			continue
		}
		if err := r.removeRule(ctx, c, p, at); err != nil {
			errs = append(errs, fmt.Errorf("zone %q: %w", at.zone, err))
		}
	}
	return errors.Join(errs...)
}

// isOpen reports whether all of p's rules under this configuration were
// placed with this expiry.
func (r *reconciler) isOpen(p netip.Prefix, expires int64) bool {
	for _, at := range r.placementsFor(p) {
		if e, ok := r.sh.placedExpiry(p, at); !ok || e != expires {
			return false
		}
	}
	return true
}

// onStoreEvent runs on the store's committer goroutine: it only records
// the change for the worker. Added and Extended usually need nothing
// (PrepareGrant opened the rules before the grant was stored); the worker
// acts only for grants that reached the store another way.
func (r *reconciler) onStoreEvent(ev store.Event) {
	switch ev.Kind {
	case store.Added, store.Extended:
		r.enqueue(ev.Entry.Prefix, pendingOp{sync: true, expires: ev.Entry.Expires})
	case store.Removed, store.Expired:
		r.enqueue(ev.Entry.Prefix, pendingOp{sync: true})
	}
}

// handlePending does what was recorded for p.
func (r *reconciler) handlePending(p netip.Prefix, op pendingOp) {
	ctx, cancel := context.WithTimeout(r.ctx, callTimeout)
	defer cancel()
	log := r.log.With(zap.String("grant", store.FormatPrefix(p)))
	now := time.Now().Unix()
	target, decided := int64(0), false
	switch {
	case op.sync:
		target, decided = op.expires, true
	case op.fromStore:
		target, decided = r.storeExpiry(p, now), true
	}
	switch {
	case !decided:
	case target <= now:
		if err := r.closeGrant(ctx, p); err != nil {
			log.Error("removing accept rules", zap.Error(err))
		}
	case r.isOpen(p, target):
		// The usual case: PrepareGrant did it.
	case r.sh.superseded(r) && !op.fromStore:
		// The newest configuration opens rules for store events; an
		// undo is this configuration's own business.
	default:
		if err := r.openGrant(ctx, p, target); err != nil {
			log.Error("opening accept rules for a stored grant", zap.Error(err))
		}
	}
	if op.verify && !r.sh.superseded(r) {
		r.reviveRules(ctx, p, now)
	}
}

// storeExpiry returns the expiry of p's active entry in the store, or 0.
func (r *reconciler) storeExpiry(p netip.Prefix, now int64) int64 {
	if e, ok := r.store.Match(p.Addr(), now); ok && e.Prefix == p {
		return e.Expires
	}
	for _, e := range r.store.Entries(now) { // p hidden by a wider grant: rare
		if e.Prefix == p {
			return e.Expires
		}
	}
	return 0
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

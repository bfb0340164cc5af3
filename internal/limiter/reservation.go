package limiter

import "net/netip"

// Reservation is one knock attempt's hold on its actor's windows. Every
// attempt first takes a failure slot, before its key is compared: a client
// that has used up its failures cannot learn whether a key is valid from
// 200 versus 429, and concurrent attempts cannot overshoot the limit. A
// knock about to be granted then takes a success slot. Settle, called once
// whatever the attempt's end, gives back what the outcome does not use, so
// that no early return can leak or double-release a slot.
type Reservation struct {
	l              *Limiter
	actor          netip.Addr
	at             int64
	lim            Limits
	failureHeld    bool // false when failures are unlimited: nothing was recorded
	successHeld    bool
	successRefused bool
	settled        bool
}

// Reserve takes a failure slot for actor at now. When the failure window
// is full it reports false and the seconds until a slot frees.
func (l *Limiter) Reserve(actor netip.Addr, now int64, lim Limits) (res Reservation, retryAfter int64, ok bool) {
	ok, retryAfter = l.record(actor, Failure, now, lim)
	if !ok {
		return Reservation{}, retryAfter, false
	}
	return Reservation{l: l, actor: actor, at: now, lim: lim, failureHeld: lim.PerKind[Failure] > 0}, 0, true
}

// TakeSuccess takes a success slot. When the success window is full it
// reports false and the seconds until a slot frees; such a refusal is not
// a failure, so Settle then gives the failure slot back.
func (r *Reservation) TakeSuccess() (retryAfter int64, ok bool) {
	ok, retryAfter = r.l.record(r.actor, Success, r.at, r.lim)
	if !ok {
		r.successRefused = true
		return retryAfter, false
	}
	r.successHeld = r.lim.PerKind[Success] > 0
	return 0, true
}

// Settle ends the attempt. A grant keeps its success slot and gives back
// the failure slot; a refusal by the success window gives back the failure
// slot; any other end keeps the failure slot and gives back a success slot
// taken for a grant that then failed. Later calls do nothing.
func (r *Reservation) Settle(granted bool) {
	if r.settled || r.l == nil {
		return
	}
	r.settled = true
	if (granted || r.successRefused) && r.failureHeld {
		r.l.release(r.actor, Failure, r.at)
	}
	if !granted && r.successHeld {
		r.l.release(r.actor, Success, r.at)
	}
}

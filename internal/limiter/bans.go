package limiter

import "net/netip"

// Bans come from other cluster nodes: a client that filled its failure
// window on one node is refused on every node until that window frees
// there. A ban only refuses; it never frees a slot here.

// Key is the rate-limit key ip counts against (an IPv6 address counts per
// /64): what a ban names.
func (l *Limiter) Key(ip netip.Addr) netip.Addr { return rateLimitKey(ip) }

// Ban refuses actor's knocks until until (unix seconds).
func (l *Limiter) Ban(actor netip.Addr, until int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bans == nil {
		l.bans = make(map[netip.Addr]int64)
	}
	k := rateLimitKey(actor)
	l.bans[k] = max(l.bans[k], until)
}

// bannedLocked reports the seconds until actor's ban ends, if it is banned at
// now. l.mu is held.
func (l *Limiter) bannedLocked(actor netip.Addr, now int64) (int64, bool) {
	until, ok := l.bans[actor]
	if !ok {
		return 0, false
	}
	if until <= now {
		delete(l.bans, actor)
		return 0, false
	}
	return until - now, true
}

// FailuresFull reports whether actor's failure window is full at now, and
// when its oldest failure leaves it.
func (l *Limiter) FailuresFull(actor netip.Addr, now int64, lim Limits) (until int64, full bool) {
	limit := lim.PerKind[Failure]
	if limit == 0 {
		return 0, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	events := l.live(bucketKey{rateLimitKey(actor), Failure}, now, lim.Window)
	if len(events) < limit {
		return 0, false
	}
	return events[0] + lim.Window, true
}

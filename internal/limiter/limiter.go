// Package limiter is the knock rate limiter: per client, separate sliding
// windows count successful and failed knocks, with whole-second
// timestamps as in the Python Knocker (an event frees its slot exactly one
// window later). Each attempt holds a Reservation from before its key is
// compared until it settles.
package limiter

import (
	"net/netip"
	"sync"
)

// Outcome is what a knock attempt counts as.
type Outcome uint8

const (
	Success Outcome = iota
	Failure
)

// Limits are one config's limits; they travel with each call, so a
// config's limits apply from its first request (even before its Start) and
// a reload that fails cannot leave its limits behind.
type Limits struct {
	Window  int64  // seconds
	PerKind [2]int // by Outcome; 0 = unlimited
}

// Default is the Python Knocker's: per minute, 20 successes and 30 failures.
var Default = Limits{Window: 60, PerKind: [2]int{Success: 20, Failure: 30}}

type bucketKey struct {
	actor   netip.Addr
	outcome Outcome
}

// Limiter is a sliding-window log per actor and outcome. Caddy keeps one
// across config reloads so that a reload never resets a brute-force
// counter.
type Limiter struct {
	mu        sync.Mutex
	buckets   map[bucketKey][]int64
	peak      int // most buckets held since buckets was made
	lastPrune int64
	bans      map[netip.Addr]int64 // by rate-limit key: other nodes' bans (bans.go)
}

// New returns an empty limiter.
func New() *Limiter {
	return &Limiter{buckets: make(map[bucketKey][]int64)}
}

// Destruct satisfies caddy.Destructor for the usage pool.
func (l *Limiter) Destruct() error { return nil }

// rateLimitKey is the bucket an address counts against. IPv6 addresses count
// per /64, the smallest block a site is usually given: counting per /128
// would give anyone with a /64 unlimited guesses.
func rateLimitKey(ip netip.Addr) netip.Addr {
	if ip.Is6() && !ip.Is4In6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// live drops events that left the window and returns what is left.
func (l *Limiter) live(k bucketKey, now, window int64) []int64 {
	events := l.buckets[k]
	i := 0
	for i < len(events) && events[i] <= now-window {
		i++
	}
	if i > 0 {
		events = append(events[:0], events[i:]...)
		if len(events) == 0 {
			delete(l.buckets, k)
			return nil
		}
		l.buckets[k] = events
	}
	return events
}

// record adds an event for actor if its bucket has room. Otherwise it
// reports false and the seconds until a slot frees.
func (l *Limiter) record(actor netip.Addr, o Outcome, now int64, lim Limits) (bool, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pruneLocked(now, lim.Window)
	if o == Failure {
		if retry, banned := l.bannedLocked(rateLimitKey(actor), now); banned {
			return false, retry
		}
	}
	limit := lim.PerKind[o]
	if limit == 0 {
		return true, 0
	}
	k := bucketKey{rateLimitKey(actor), o}
	events := l.live(k, now, lim.Window)
	if len(events) >= limit {
		return false, max(events[0]+lim.Window-now, 1)
	}
	if events == nil {
		events = make([]int64, 0, min(limit, 8))
	}
	l.buckets[k] = append(events, now)
	l.peak = max(l.peak, len(l.buckets))
	return true, 0
}

// release takes back one event recorded at ts.
func (l *Limiter) release(actor netip.Addr, o Outcome, ts int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := bucketKey{rateLimitKey(actor), o}
	events := l.buckets[k]
	for i := len(events) - 1; i >= 0; i-- {
		if events[i] == ts {
			events = append(events[:i], events[i+1:]...)
			break
		}
	}
	if len(events) == 0 {
		delete(l.buckets, k)
	} else {
		l.buckets[k] = events
	}
}

// pruneLocked drops idle buckets at most once per window, so memory is
// bounded by the actors seen within one window. A Go map never gives back
// the room it grew to, so once an attack's buckets are gone the map is
// rebuilt at its present size and that memory returns.
func (l *Limiter) pruneLocked(now, window int64) {
	if now-l.lastPrune < window {
		return
	}
	l.lastPrune = now
	for k := range l.buckets {
		l.live(k, now, window)
	}
	for k, until := range l.bans {
		if until <= now {
			delete(l.bans, k)
		}
	}
	if l.peak >= shrinkFrom && len(l.buckets) <= l.peak/4 {
		m := make(map[bucketKey][]int64, len(l.buckets))
		for k, v := range l.buckets {
			m[k] = v
		}
		l.buckets, l.peak = m, len(m)
	}
}

// shrinkFrom is the peak bucket count below which the map is never
// rebuilt: a few thousand buckets cost too little to bother.
const shrinkFrom = 4096

// size is the number of buckets held, for tests.
func (l *Limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

package knocker

import (
	"net/netip"
	"sync"

	"github.com/caddyserver/caddy/v2"
)

// RateLimit configures the knock limiter: per client IP, separate sliding
// windows count successful and failed knocks. A client whose failure window
// is full gets 429 before its key is even compared.
type RateLimit struct {
	// Window is the sliding window length. Default 60s.
	Window caddy.Duration `json:"window,omitempty"`
	// Success is the number of successful knocks allowed per window.
	// Default 20; 0 means unlimited.
	Success *int `json:"success,omitempty"`
	// Failure is the number of failed knocks allowed per window.
	// Default 30; 0 means unlimited.
	Failure *int `json:"failure,omitempty"`
}

const (
	defaultRateWindow  = 60
	defaultRateSuccess = 20
	defaultRateFailure = 30
)

type outcome uint8

const (
	success outcome = iota
	failure
)

// rateLimits are one config's limits; they travel with each call, so a
// config's limits apply from its first request (even before its Start) and
// a reload that fails cannot leave its limits behind.
type rateLimits struct {
	window  int64  // seconds
	perKind [2]int // by outcome; 0 = unlimited
}

type bucketKey struct {
	actor   netip.Addr
	outcome outcome
}

// limiter is a sliding-window log with whole-second timestamps, the
// original's semantics: an event frees its slot exactly one window later.
// Its buckets are shared across config reloads so that a reload never
// resets a brute-force counter.
type limiter struct {
	mu        sync.Mutex
	buckets   map[bucketKey][]int64
	peak      int // most buckets held since buckets was made
	lastPrune int64
}

func newLimiter() *limiter {
	return &limiter{buckets: make(map[bucketKey][]int64)}
}

// Destruct satisfies caddy.Destructor for the usage pool.
func (l *limiter) Destruct() error { return nil }

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
func (l *limiter) live(k bucketKey, now, window int64) []int64 {
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
func (l *limiter) record(actor netip.Addr, o outcome, now int64, lim rateLimits) (bool, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pruneLocked(now, lim.window)
	limit := lim.perKind[o]
	if limit == 0 {
		return true, 0
	}
	k := bucketKey{rateLimitKey(actor), o}
	events := l.live(k, now, lim.window)
	if len(events) >= limit {
		return false, max(events[0]+lim.window-now, 1)
	}
	if events == nil {
		events = make([]int64, 0, min(limit, 8))
	}
	l.buckets[k] = append(events, now)
	l.peak = max(l.peak, len(l.buckets))
	return true, 0
}

// release takes back one event recorded at ts: a failure slot reserved by
// an attempt that succeeded, or a success slot of a knock that failed.
func (l *limiter) release(actor netip.Addr, o outcome, ts int64) {
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
func (l *limiter) pruneLocked(now, window int64) {
	if now-l.lastPrune < window {
		return
	}
	l.lastPrune = now
	for k := range l.buckets {
		l.live(k, now, window)
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
func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

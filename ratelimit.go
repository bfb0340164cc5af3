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

type bucketKey struct {
	actor   netip.Addr
	outcome outcome
}

// limiter is a sliding-window log with whole-second timestamps, the
// original's semantics: an event frees its slot exactly one window later.
// It is shared across config reloads so that a reload never resets a
// brute-force counter.
type limiter struct {
	mu        sync.Mutex
	window    int64
	limits    [2]int // by outcome; 0 = unlimited
	buckets   map[bucketKey][]int64
	lastPrune int64
}

func newLimiter() *limiter {
	return &limiter{buckets: make(map[bucketKey][]int64)}
}

// Destruct satisfies caddy.Destructor for the usage pool.
func (l *limiter) Destruct() error { return nil }

func (l *limiter) configure(window int64, successLimit, failureLimit int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.window = window
	l.limits = [2]int{successLimit, failureLimit}
}

// live drops events that left the window and returns what is left.
func (l *limiter) live(k bucketKey, now int64) []int64 {
	events := l.buckets[k]
	i := 0
	for i < len(events) && events[i] <= now-l.window {
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

// full reports whether the actor's bucket has no room, and if so how many
// seconds until a slot frees.
func (l *limiter) full(actor netip.Addr, o outcome, now int64) (bool, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	limit := l.limits[o]
	if limit == 0 {
		return false, 0
	}
	events := l.live(bucketKey{actor, o}, now)
	if len(events) < limit {
		return false, 0
	}
	return true, events[0] + l.window - now
}

// record adds an event if there is room; it reports whether it did.
func (l *limiter) record(actor netip.Addr, o outcome, now int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pruneLocked(now)
	limit := l.limits[o]
	if limit == 0 {
		return true
	}
	k := bucketKey{actor, o}
	events := l.live(k, now)
	if len(events) >= limit {
		return false
	}
	if events == nil {
		events = make([]int64, 0, min(limit, 8))
	}
	l.buckets[k] = append(events, now)
	return true
}

// release takes back one event recorded at ts, for a reservation whose
// knock failed after all.
func (l *limiter) release(actor netip.Addr, o outcome, ts int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := bucketKey{actor, o}
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
// bounded by the actors seen within one window.
func (l *limiter) pruneLocked(now int64) {
	if now-l.lastPrune < l.window {
		return
	}
	l.lastPrune = now
	for k := range l.buckets {
		l.live(k, now)
	}
}

// size is the number of actors tracked, for tests and metrics.
func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

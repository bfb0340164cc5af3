package firewalld

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// shared is what this process knows about one firewalld, shared by the
// Backend instances that use it: during a Caddy config reload an old and a new
// Backend run side by side on the same grants and rules. There is one per
// D-Bus bus, held in a caddy.UsagePool (as caddytls holds its certificate
// cache): it lives while any Backend on that bus runs, so a reload carries it
// over, and once every Backend on the bus has stopped it is dropped; the next
// Backend rebuilds it from firewalld's listings. A Backend sees only the state of
// the firewalld it talks to.
type shared struct {
	bus string // D-Bus address; the pool key

	// mu serialises every change any Backend makes (firewalld executes calls
	// one at a time anyway, so this costs no throughput) and guards
	// placed: for each grant prefix, the expiry Knocker gave each timed
	// accept rule it put in, by zone and rule text. It tells a new Backend
	// which rules are already right (a Caddy reload then re-adds nothing)
	// and which rules to remove for a revoked grant, whichever
	// configuration placed them. Restores reconcile it with firewalld's
	// listings. mu is held across D-Bus calls.
	mu     sync.Mutex
	placed map[netip.Prefix]map[placement]int64

	// small guards the rest, and is never held across a D-Bus call, so
	// that a knock or a stop never waits for firewalld.
	small sync.Mutex
	// instances are the running reconcilers, oldest first. During a Caddy
	// config reload the new Backend starts while the old one still runs; only
	// the newest (the last element) re-applies after a firewalld reload or
	// re-adds rules for store events, so two configs never fight over the
	// rules. If the newest stops first (the new config failed to start),
	// the previous one takes over again and resyncs.
	instances []*reconciler
	// recent remembers the prefixes PrepareGrant opened in the last
	// minute. A grant is stored only after its rules are in, so a restore
	// running in between (a new config starting during a Caddy reload)
	// would otherwise see accept rules without a grant and prune them.
	recent map[netip.Prefix]time.Time
}

type placement struct {
	zone string
	rule string // canonical text
}

var sharedByBus = caddy.NewUsagePool()

// acquireShared returns the state for bus, creating it if no Backend uses the
// bus yet; release it with release.
func acquireShared(bus string) *shared {
	v, _, _ := sharedByBus.LoadOrNew(bus, func() (caddy.Destructor, error) {
		return &shared{bus: bus}, nil
	})
	return v.(*shared)
}

func (s *shared) release() { _, _ = sharedByBus.Delete(s.bus) }

// Destruct implements caddy.Destructor: nothing to free but memory.
func (s *shared) Destruct() error { return nil }

// The placed helpers below must be called with s.mu held.

func (s *shared) placedExpiry(p netip.Prefix, at placement) (int64, bool) {
	e, ok := s.placed[p][at]
	return e, ok
}

func (s *shared) setPlaced(p netip.Prefix, at placement, expires int64) {
	if s.placed == nil {
		s.placed = map[netip.Prefix]map[placement]int64{}
	}
	m := s.placed[p]
	if m == nil {
		m = map[placement]int64{}
		s.placed[p] = m
	}
	m[at] = expires
}

func (s *shared) forgetPlaced(p netip.Prefix, at placement) {
	m := s.placed[p]
	delete(m, at)
	if len(m) == 0 {
		delete(s.placed, p)
	}
}

// placementsOf returns a copy of p's placed rules.
func (s *shared) placementsOf(p netip.Prefix) map[placement]int64 {
	out := make(map[placement]int64, len(s.placed[p]))
	for at, e := range s.placed[p] {
		out[at] = e
	}
	return out
}

// forgetZone drops what is known about zone's accept rules, before a
// restore rebuilds it from firewalld's listing.
func (s *shared) forgetZone(zone string) {
	for p, m := range s.placed {
		for at := range m {
			if at.zone == zone {
				delete(m, at)
			}
		}
		if len(m) == 0 {
			delete(s.placed, p)
		}
	}
}

// register adds a started reconciler as the newest.
func (s *shared) register(r *reconciler) {
	s.small.Lock()
	defer s.small.Unlock()
	s.instances = append(s.instances, r)
}

// unregister removes a stopping reconciler; if it was the newest, the one
// before it takes over and resyncs.
func (s *shared) unregister(r *reconciler) {
	s.small.Lock()
	defer s.small.Unlock()
	i := slices.Index(s.instances, r)
	if i < 0 {
		return
	}
	wasNewest := i == len(s.instances)-1
	s.instances = slices.Delete(s.instances, i, i+1)
	if wasNewest && len(s.instances) > 0 {
		s.instances[len(s.instances)-1].requestResync("newer configuration stopped")
	}
}

// superseded reports whether a reconciler newer than r runs on this bus.
func (s *shared) superseded(r *reconciler) bool {
	s.small.Lock()
	defer s.small.Unlock()
	n := len(s.instances)
	return n > 0 && s.instances[n-1] != r
}

const recentWindow = time.Minute

func (s *shared) noteOpened(p netip.Prefix) {
	now := time.Now()
	s.small.Lock()
	defer s.small.Unlock()
	if s.recent == nil {
		s.recent = map[netip.Prefix]time.Time{}
	}
	if len(s.recent) > 1024 {
		for q, t := range s.recent {
			if now.Sub(t) > recentWindow {
				delete(s.recent, q)
			}
		}
	}
	s.recent[p] = now
}

func (s *shared) recentlyOpened(p netip.Prefix) bool {
	s.small.Lock()
	defer s.small.Unlock()
	t, ok := s.recent[p]
	return ok && time.Since(t) < recentWindow
}

// Interface guard.
var _ caddy.Destructor = (*shared)(nil)

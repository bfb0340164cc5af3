package firewalld

import (
	"net/netip"
	"sync"
	"time"
)

// firewall is what this process knows about firewalld, shared by every App
// instance: during a Caddy config reload an old and a new App run side by
// side on the same grants.
//
// mu serialises every change any App makes (firewalld executes calls one at
// a time anyway, so this costs no throughput) and guards placed: for each
// grant prefix, the expiry Knocker gave each timed accept rule it put in,
// by zone and rule text. It tells a new App which rules are already right
// (a Caddy reload then re-adds nothing) and which rules to remove for a
// revoked grant, whichever configuration placed them. Restores reconcile it
// with firewalld's listings.
var firewall struct {
	mu     sync.Mutex
	placed map[netip.Prefix]map[placement]int64
}

type placement struct {
	zone string
	rule string // canonical text
}

// The helpers below must be called with firewall.mu held.

func placedExpiry(p netip.Prefix, at placement) (int64, bool) {
	e, ok := firewall.placed[p][at]
	return e, ok
}

func setPlaced(p netip.Prefix, at placement, expires int64) {
	if firewall.placed == nil {
		firewall.placed = map[netip.Prefix]map[placement]int64{}
	}
	m := firewall.placed[p]
	if m == nil {
		m = map[placement]int64{}
		firewall.placed[p] = m
	}
	m[at] = expires
}

func forgetPlaced(p netip.Prefix, at placement) {
	m := firewall.placed[p]
	delete(m, at)
	if len(m) == 0 {
		delete(firewall.placed, p)
	}
}

// placementsOf returns a copy of p's placed rules.
func placementsOf(p netip.Prefix) map[placement]int64 {
	out := make(map[placement]int64, len(firewall.placed[p]))
	for at, e := range firewall.placed[p] {
		out[at] = e
	}
	return out
}

// forgetZone drops what is known about zone's accept rules, before a
// restore rebuilds it from firewalld's listing.
func forgetZone(zone string) {
	for p, m := range firewall.placed {
		for at := range m {
			if at.zone == zone {
				delete(m, at)
			}
		}
		if len(m) == 0 {
			delete(firewall.placed, p)
		}
	}
}

// recentOpens remembers the prefixes PrepareGrant opened in the last
// minute. A grant is stored only after its rules are in, so a restore
// running in between (a new config starting during a Caddy reload) would
// otherwise see accept rules without a grant and prune them.
var recentOpens struct {
	mu sync.Mutex
	m  map[netip.Prefix]time.Time
}

const recentWindow = time.Minute

func noteOpened(p netip.Prefix) {
	now := time.Now()
	recentOpens.mu.Lock()
	defer recentOpens.mu.Unlock()
	if recentOpens.m == nil {
		recentOpens.m = map[netip.Prefix]time.Time{}
	}
	if len(recentOpens.m) > 1024 {
		for q, t := range recentOpens.m {
			if now.Sub(t) > recentWindow {
				delete(recentOpens.m, q)
			}
		}
	}
	recentOpens.m[p] = now
}

func recentlyOpened(p netip.Prefix) bool {
	recentOpens.mu.Lock()
	defer recentOpens.mu.Unlock()
	t, ok := recentOpens.m[p]
	return ok && time.Since(t) < recentWindow
}

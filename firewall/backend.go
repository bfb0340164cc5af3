// Package firewall is the contract between the knocker app and the firewall
// backend it hosts: a guest module in the knocker.firewall namespace,
// configured in the app's "firewall" object, whose "backend" field names
// the module (knocker.firewall.firewalld ships with Knocker; see the
// firewalld package). With a backend, a knock also opens ports at the
// network level for the knocked address, for exactly the grant's lifetime.
//
// The app provisions the backend with its own configuration, starts it
// once the whitelist is open and stops it when the app stops. During a
// config reload the new config's backend starts before the old one stops,
// so a backend must cope with two instances running side by side for a
// moment.
package firewall

import (
	"context"
	"errors"
	"net/netip"

	"github.com/caddy-knocker/knocker/store"
)

// Backend is implemented by knocker.firewall modules.
type Backend interface {
	// Start enforces wl's grants from now on: it puts the protection in
	// place, opens the ports of every active grant for its remaining time
	// and follows wl.Store's events (revocations and expiries close the
	// ports at once). It fails if the protection cannot be verified.
	Start(wl Whitelist) error

	// Stop stops following the whitelist. It may leave rules in place:
	// timed accepts expire on their own.
	Stop() error

	// PrepareGrant opens the ports g gives access to until g.Expires and
	// returns once they are open, before the knock is answered; the grant
	// is persisted after it. If persisting fails, the app calls undo, which
	// must return at once and bring g.Prefix's rules back in line with the
	// store. An error wrapping ErrBusy is answered 503, any other error 500.
	PrepareGrant(ctx context.Context, g Grant) (undo func(), err error)

	// Ready reports whether the protection holds, for /ready; the error's
	// text is shown to whoever asks, and should say what to fix.
	Ready() error
}

// Whitelist is what a backend enforces.
type Whitelist struct {
	// Store holds the grants and reports their changes (Store.Events).
	Store *store.Store
	// Path is the whitelist file; a backend may keep its own state beside it.
	Path string
}

// Grant is a grant about to be stored: the entry of Prefix and Scopes in
// the store (see store.GrantOptions).
type Grant struct {
	Prefix  netip.Prefix // canonical (store.CanonicalPrefix)
	Expires int64        // unix seconds
	// Scopes limits the grant to these access scopes (as store.CheckScopes
	// returns them); nil for full access.
	Scopes []string
}

// ErrBusy says that the backend has too many changes waiting: the knock
// is refused with 503 rather than queued without bound.
var ErrBusy = errors.New("too many firewall changes waiting")

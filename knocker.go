// Package knocker is a knock-based access gate for Caddy: a client POSTs
// /knock with an API key and its IP (or, for admin keys, any IP or CIDR) is
// whitelisted for a TTL; sites using the knocker directive let whitelisted
// clients through and deny everyone else, in-process.
//
// The knocker app owns the whitelist store, the API keys and the knock rate
// limiter; the http.handlers.knock module serves the knock API and the
// http.handlers.knocker module is the gate.
package knocker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-knocker/knocker/cluster"
	"github.com/caddy-knocker/knocker/firewall"
	"github.com/caddy-knocker/knocker/internal/keyring"
	"github.com/caddy-knocker/knocker/internal/knockapi"
	"github.com/caddy-knocker/knocker/internal/limiter"
	"github.com/caddy-knocker/knocker/store"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the knocker app: the whitelist, the API keys and the knock rate
// limiter that the knock and knocker handlers share. Its state survives
// config reloads: grants live in a store shared by every config that names
// the same whitelist file, and a reload never re-reads the file.
type App struct {
	// WhitelistFile is where grants persist. Default:
	// <Caddy data dir>/knocker/whitelist.json. The Python Knocker's
	// whitelist.json can be used as is.
	WhitelistFile string `json:"whitelist_file,omitempty"`
	// MaxEntries bounds the whitelist. When it is full, a new grant evicts
	// the soonest-expiring other entries. Default 10000.
	MaxEntries int `json:"max_entries,omitempty"`
	// CleanupInterval is how often expired grants are swept. Expired grants
	// never authorize, swept or not. Default 60s.
	CleanupInterval caddy.Duration `json:"cleanup_interval,omitempty"`
	// Keys are the API keys accepted by the knock endpoint. At least one.
	Keys []APIKey `json:"keys,omitempty"`
	// RateLimit bounds knocks per client IP.
	RateLimit *RateLimit `json:"rate_limit,omitempty"`
	// IPv6Prefix is the keys' default ipv6_prefix (see APIKey): a knock for
	// the caller's own IPv6 address grants its network of this many bits.
	// Default 128, the address itself.
	IPv6Prefix *int `json:"ipv6_prefix,omitempty"`
	// FirewallRaw, when set, makes each knock also open ports at the
	// network level for the knocked address: a knocker.firewall module,
	// named by "backend" (firewalld; see the firewall package).
	FirewallRaw json.RawMessage `json:"firewall,omitempty" caddy:"namespace=knocker.firewall inline_key=backend"`
	// ClusterRaw, when set, shares the whitelist with other Caddy nodes: a
	// knocker.cluster module, named by "driver" (nats; see the cluster
	// package and docs/cluster.md).
	ClusterRaw json.RawMessage `json:"cluster,omitempty" caddy:"namespace=knocker.cluster inline_key=driver"`

	keys    keyring.Ring
	path    string
	limits  limiter.Limits
	limiter *limiter.Limiter
	fw      firewall.Backend    // nil without a firewall
	repl    *cluster.Replicator // nil without a cluster
	replKey string              // its key in replicators, while held

	clusterMaxTTL int64 // the largest max_ttl, which caps cluster grants
	logger        *zap.Logger
	run           *appState // nil until Provision
}

// appState is what the app holds at run time, behind a pointer so that the
// config struct stays copyable.
type appState struct {
	st       atomic.Pointer[store.Store]
	mu       sync.Mutex // guards opening and releasing the store
	poolKey  string     // the whitelist path with symlinks resolved, while acquired
	acquired bool
	released bool

	limiterReleased bool

	servers    sync.Map // *caddyhttp.Server -> *serverInfo (trustedproxies.go)
	lastServer atomic.Pointer[serverInfo]

	// The store's event hub, and how this config emits through it (see
	// events.go); emitting: registered with the hub. Guarded by mu.
	hub      *eventHub
	target   *eventTarget
	emitting bool

	readyMu  sync.Mutex // one firewalld check at a time
	readyAt  time.Time
	readyErr error
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "knocker",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision validates the configuration and resolves secrets. It touches
// nothing outside the process: the whitelist file is opened in Start, so
// `caddy validate` works while another Caddy holds the file.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.run = new(appState)
	repl := caddy.NewReplacer()

	if a.IPv6Prefix != nil {
		if err := knockapi.CheckIPv6Prefix(*a.IPv6Prefix); err != nil {
			return fmt.Errorf("ipv6_prefix: %v", err)
		}
	}
	ring, warnings, err := newKeyring(a.Keys, a.IPv6Prefix, repl)
	if err != nil {
		return err
	}
	a.keys = ring
	for _, w := range warnings {
		a.logger.Warn(w)
	}
	if err := a.provisionStorage(repl); err != nil {
		return err
	}
	if a.limits, err = a.RateLimit.limits(); err != nil {
		return err
	}
	v, _, _ := limiters.LoadOrNew(limiterKey, func() (caddy.Destructor, error) { return limiter.New(), nil })
	a.limiter = v.(*limiter.Limiter)
	if err := a.provisionEvents(ctx); err != nil {
		return err
	}
	if err := a.registerMetrics(ctx); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if err := a.provisionCluster(ctx); err != nil {
		return err
	}
	return a.provisionFirewall(ctx)
}

// provisionFirewall loads the firewall backend, if one is configured.
func (a *App) provisionFirewall(ctx caddy.Context) error {
	if a.FirewallRaw == nil {
		return nil
	}
	v, err := ctx.LoadModule(a, "FirewallRaw")
	if err != nil {
		return fmt.Errorf("firewall: %w", err)
	}
	fw, ok := v.(firewall.Backend)
	if !ok {
		return fmt.Errorf("firewall: module %T is not a firewall backend", v)
	}
	a.fw = fw
	return nil
}

// Firewall returns the firewall backend, or nil when none is configured.
func (a *App) Firewall() firewall.Backend { return a.fw }

// Start opens the whitelist store (or takes over the one a previous config
// opened), then starts the firewall backend on it.
func (a *App) Start() error {
	s, err := a.openStore()
	if err != nil {
		return err
	}
	if err := a.startCluster(s); err != nil {
		return err
	}
	if a.fw != nil {
		if err := a.fw.Start(firewall.Whitelist{Store: s, Path: a.path}); err != nil {
			return fmt.Errorf("firewall %s: %w", caddy.GetModuleName(a.fw), err)
		}
	}
	a.logger.Info("knocker started",
		zap.String("whitelist_file", a.path),
		zap.Int("entries", s.Len()),
		zap.Int("keys", len(a.keys)))
	return nil
}

// Stop hands emitting events over to the previous config, if one still
// runs, and stops the firewall backend, which leaves its rules in place.
// The store stays open: the next config, or Cleanup, decides its fate.
func (a *App) Stop() error {
	a.stopEvents()
	// The replicator runs on: the next config (a reload) keeps it, and
	// Cleanup stops it when no config needs it any more.
	if a.fw != nil {
		return a.fw.Stop()
	}
	return nil
}

// Cleanup releases this config's hold on the store and limiter; the last
// holder closes the store, which writes a compact snapshot.
func (a *App) Cleanup() error {
	if a.run == nil { // Provision failed early
		return nil
	}
	a.stopEvents() // a config that failed after starting is not stopped
	var errs []error
	if err := a.releaseCluster(); err != nil { // before the store closes: the replicator writes to it
		errs = append(errs, fmt.Errorf("cluster: %v", err))
	}
	a.run.mu.Lock()
	defer a.run.mu.Unlock()
	a.run.released = true
	if a.run.acquired {
		a.run.acquired = false
		// The pointer stays: requests of this config may still be in
		// flight after a reload. They keep using the store, which the new
		// config holds open; after a final shutdown a closed store still
		// answers lookups from memory and refuses grants (ErrClosed).
		if s := a.run.st.Load(); s != nil {
			releaseSweep(a.run.poolKey, a.run, s)
		}
		if _, err := stores.Delete(a.run.poolKey); err != nil {
			errs = append(errs, fmt.Errorf("closing whitelist %s: %v", a.path, err))
		}
	}
	// The limiter pointer stays: a request of this config may still be in
	// flight after a reload's grace period.
	if a.limiter != nil && !a.run.limiterReleased {
		a.run.limiterReleased = true
		if _, err := limiters.Delete(limiterKey); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// allowed reports whether ip holds an active grant. It fails closed.
func (a *App) allowed(ip netip.Addr, now int64) bool {
	s := a.liveStore()
	return s != nil && s.Allowed(ip, now)
}

// liveStore is the open store, opening it if need be; nil if it cannot be
// opened (every decision on it then fails closed).
func (a *App) liveStore() *store.Store {
	if s := a.run.st.Load(); s != nil {
		return s
	}
	s, err := a.openStore()
	if err != nil {
		return nil
	}
	return s
}

// Knocked reports whether ip holds an active grant that admits scope: a
// grant of an unscoped key admits every scope, and scope "" admits only
// such grants. It is the decision of the gate and /verify without their
// always_allow and exclude rules, for matchers in other packages (the
// layer4 matcher). It fails closed.
func (a *App) Knocked(ip netip.Addr, scope string) bool {
	return a.allowedIn(ip, scope, now().Unix())
}

// allowedIn is allowed for a scope (see Knocked).
func (a *App) allowedIn(ip netip.Addr, scope string, now int64) bool {
	if scope == "" {
		return a.allowed(ip, now)
	}
	s := a.liveStore()
	return s != nil && s.AllowedIn(ip, scope, now)
}

// clockOffset shifts the clock in tests, and clockFrozen (unix ns), when
// set, stops it; both are zero in production.
var clockOffset, clockFrozen atomic.Int64

func now() time.Time {
	if f := clockFrozen.Load(); f != 0 {
		return time.Unix(0, f)
	}
	return time.Now().Add(time.Duration(clockOffset.Load()))
}

// grant whitelists p until expires, durably (and with a cluster, once the
// engine acknowledged it), as a grant of key.
func (a *App) grant(ctx context.Context, p netip.Prefix, expires int64, key *keyring.Key, client netip.Addr) (store.GrantResult, error) {
	// This config's bounds, per grant: a config that never commits (a
	// failed reload) must not leave its limit on the shared store.
	return a.storeGrant(ctx, p, expires, store.GrantOptions{
		MaxEntries: a.MaxEntries,
		Owner:      key.Name,
		Client:     client,
		MaxOwned:   key.MaxGrants,
		MayEvict:   a.keys.MayEvict(key),
		Scopes:     key.Scopes,
	})
}

// holding returns the active grant covering ip with the latest expiry,
// whatever its scopes, or, for a scope, the one admitting ip to it.
func (a *App) holding(ip netip.Addr, scope string, now int64) (store.Entry, bool, error) {
	if scope != "" {
		return a.matchIn(ip, scope, now)
	}
	s, err := a.openStore()
	if err != nil {
		return store.Entry{}, false, err
	}
	e, ok := s.MatchAny(ip, now)
	return e, ok, nil
}

// matchIn returns the active grant admitting ip to scope with the latest
// expiry (see Knocked).
func (a *App) matchIn(ip netip.Addr, scope string, now int64) (store.Entry, bool, error) {
	s, err := a.openStore()
	if err != nil {
		return store.Entry{}, false, err
	}
	e, ok := s.MatchIn(ip, scope, now)
	return e, ok, nil
}

// ready reports whether grants can be stored and, with firewalld, whether
// the protection is in place. reason is the text /ready shows: the
// Python Knocker's for storage (details only in the log), the firewalld reason
// in full, since that is what an operator must fix.
func (a *App) ready() (reason string, err error) {
	s, err := a.openStore()
	if err == nil {
		err = s.Check()
	}
	if err != nil {
		return "Whitelist storage not accessible", err
	}
	if a.repl != nil {
		if err := a.repl.Ready(); err != nil {
			return "Cluster not ready: " + err.Error(), err
		}
	}
	if a.fw != nil {
		if err := a.firewallReady(); err != nil {
			return "Firewalld protection not ready: " + err.Error(), err
		}
	}
	return "", nil
}

// firewallReady is the firewalld protection check, done at most once a
// second and one at a time: /ready is public, and each check costs D-Bus
// calls that knocks also need.
func (a *App) firewallReady() error {
	a.run.readyMu.Lock()
	defer a.run.readyMu.Unlock()
	if time.Since(a.run.readyAt) < time.Second {
		return a.run.readyErr
	}
	a.run.readyErr, a.run.readyAt = a.fw.Ready(), time.Now()
	return a.run.readyErr
}

// Interface guards.
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)

package firewalld

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/caddy-knocker/knocker/firewall"
	"github.com/caddy-knocker/knocker/store"
)

func init() {
	caddy.RegisterModule(Backend{})
}

// Backend is the knocker.firewall.firewalld module: the knocker app's
// firewall backend that keeps firewalld in line with the whitelist —
// default drop (or reject) rules on the monitored ports in the protected
// zones, and a timed accept per grant and port.
type Backend struct {
	// Zones to protect in. Default: firewalld's default zone at Start.
	Zones []string `json:"zones,omitempty"`
	// Action for monitored ports without a grant: "drop" (default) or
	// "reject".
	Action string `json:"action,omitempty"`
	// Ports to gate, as "<port>/<tcp|udp>", opened by every grant.
	Ports []string `json:"ports,omitempty"`
	// ScopedPorts maps an access scope to the ports to gate that only
	// grants admitted to that scope open: those whose key has the scope,
	// and full-access grants. At least one port in Ports or ScopedPorts;
	// each port once overall.
	ScopedPorts map[string][]string `json:"scoped_ports,omitempty"`
	// Monitor lists the sources (CIDRs with explicit masks) whose access is
	// gated. Default: everyone (0.0.0.0/0 and ::/0).
	Monitor []string `json:"monitor,omitempty"`
	// StateFile records the permanent rules Knocker installed, so that a
	// changed configuration prunes exactly those. Default: beside the
	// whitelist, whitelist.json -> whitelist.firewalld.json.
	StateFile string `json:"state_file,omitempty"`
	// QueueSize bounds the firewalld changes waiting to be made; knocks
	// beyond it are answered 503. Default 32.
	QueueSize int `json:"queue_size,omitempty"`

	cfg    settings
	logger *zap.Logger
	bus    string // D-Bus address; "": the system bus
	run    *running
}

// running is the Backend's run-time state, behind a pointer so that the
// config struct stays copyable.
type running struct {
	mu  sync.Mutex // serialises Start and Stop
	rec atomic.Pointer[reconciler]
}

// reconciler returns the running reconciler, or nil.
func (b *Backend) reconciler() *reconciler {
	if b.run == nil {
		return nil
	}
	return b.run.rec.Load()
}

// CaddyModule returns the Caddy module information.
func (Backend) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "knocker.firewall.firewalld",
		New: func() caddy.Module { return new(Backend) },
	}
}

// Provision validates the configuration. It does not touch D-Bus or any
// file, so `caddy validate` works anywhere.
func (b *Backend) Provision(ctx caddy.Context) error {
	b.logger = ctx.Logger()
	b.run = new(running)
	s, err := b.parseSettings()
	if err != nil {
		return err
	}
	if s.stateFile != "" {
		p, err := caddy.NewReplacer().ReplaceOrErr(s.stateFile, true, true)
		if err == nil {
			p, err = filepath.Abs(p)
		}
		if err != nil {
			return fmt.Errorf("state_file: %v", err)
		}
		s.stateFile = p
	}
	b.cfg = s
	if err := registerMetrics(ctx); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// Start connects to firewalld, makes the protected zones hold this
// configuration's default rules (pruning what a previous one left),
// verifies them, restores every active grant's accept rules with its
// remaining time, and follows the store and firewalld from then on. It
// fails if the protection cannot be verified.
func (b *Backend) Start(wl firewall.Whitelist) (err error) {
	if b.run == nil {
		return errors.New("firewalld: Start before Provision")
	}
	b.run.mu.Lock()
	defer b.run.mu.Unlock()
	if b.run.rec.Load() != nil {
		return nil
	}
	defer metrics.done(opStart, time.Now(), &err)
	statePath := b.cfg.stateFile
	if statePath == "" {
		statePath = defaultStatePath(wl.Path)
	}
	bus := b.bus
	if bus == "" {
		var err error
		if bus, err = systemBusAddress(); err != nil {
			return fmt.Errorf("firewalld: %w", err)
		}
	}
	r := newReconciler(b.cfg, b.logger, wl.Store, statePath, bus)
	if err := r.start(); err != nil {
		return err
	}
	b.run.rec.Store(r)
	return nil
}

// Stop stops following the store and firewalld and closes the connection.
// It removes no rule: the protection stays, and timed accepts expire on
// their own. During a Caddy config reload the new Backend has started before
// the old one stops, so nothing is lost in between.
func (b *Backend) Stop() error {
	if b.run == nil { // Provision never ran
		return nil
	}
	b.run.mu.Lock()
	defer b.run.mu.Unlock()
	if r := b.run.rec.Swap(nil); r != nil {
		r.stop()
	}
	return nil
}

// Cleanup stops the backend if Start ran and Stop did not.
func (b *Backend) Cleanup() error { return b.Stop() }

// PrepareGrant opens the ports g gives access to (one timed accept rule
// per zone and port: the unscoped ports and those of g's scopes, every
// port for full access) and returns once firewalld has them, before the
// knock is answered. Each rule expires with the latest of g and the
// prefix's other stored grants that open its port; a re-knock replaces
// the timeout. If a rule fails, those already changed are rolled back and
// the error is returned. The error wraps ErrBusy when the mutation queue
// is full (answer 503) and ErrStopped when the backend is not running;
// anything else is a failure (answer 500). Call undo if the grant cannot
// be persisted: it returns at once and puts the prefix's rules back in
// line with the store shortly after.
func (b *Backend) PrepareGrant(ctx context.Context, g firewall.Grant) (undo func(), err error) {
	r := b.reconciler()
	if r == nil {
		return nil, ErrStopped
	}
	if err := store.CanonicalPrefix(g.Prefix); err != nil {
		return nil, err
	}
	scopes, err := store.CheckScopes(g.Scopes)
	if err != nil {
		return nil, err
	}
	g.Scopes = scopes
	p := g.Prefix
	r.sh.noteOpened(p) // before the rules exist: see shared.recent
	if err := r.submit(ctx, func(ctx context.Context) error { return r.openGrant(ctx, g) }); err != nil {
		return nil, fmt.Errorf("firewalld: opening ports for %s: %w", store.FormatPrefix(p), err)
	}
	var once sync.Once
	return func() {
		once.Do(func() { r.enqueue(p, pendingOp{fromStore: true}) })
	}, nil
}

// Ready reports whether the protection holds: firewalld is running and
// every default rule is active in every protected zone. The error says
// why not. For /ready.
func (b *Backend) Ready() (err error) {
	r := b.reconciler()
	if r == nil {
		return fmt.Errorf("firewalld protection is not active: %w", ErrStopped)
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	defer metrics.done(opVerify, time.Now(), &err)
	if err := r.verify(ctx); err != nil {
		return fmt.Errorf("firewalld: %w", err)
	}
	return nil
}

const readyTimeout = 5 * time.Second

// Interface guards.
var (
	_ firewall.Backend      = (*Backend)(nil)
	_ caddy.Provisioner     = (*Backend)(nil)
	_ caddy.CleanerUpper    = (*Backend)(nil)
	_ caddyfile.Unmarshaler = (*Backend)(nil)
)

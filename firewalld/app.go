package firewalld

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/caddy-knocker/knocker/store"
)

// ModuleID is the Caddy app's ID.
const ModuleID = "knocker_firewalld"

func init() {
	caddy.RegisterModule(App{})
}

// App is the Caddy app that keeps firewalld in line with Knocker's
// whitelist: default drop (or reject) rules on the monitored ports in the
// protected zones, and a timed accept per grant and port.
type App struct {
	// Zones to protect in. Default: firewalld's default zone at Start.
	Zones []string `json:"zones,omitempty"`
	// Action for monitored ports without a grant: "drop" (default) or
	// "reject".
	Action string `json:"action,omitempty"`
	// Ports to gate, as "<port>/<tcp|udp>". At least one.
	Ports []string `json:"ports,omitempty"`
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

	cfg     settings
	logger  *zap.Logger
	ctx     caddy.Context
	handoff *Handoff
	source  Whitelist
	bus     string // D-Bus address; "": the system bus

	*lifecycle // behind a pointer so that App stays copyable
}

// lifecycle is the App's run-time state.
type lifecycle struct {
	mu  sync.Mutex // serialises Start and Stop
	rec atomic.Pointer[reconciler]
}

// reconciler returns the running reconciler, or nil.
func (a *App) reconciler() *reconciler {
	if a.lifecycle == nil {
		return nil
	}
	return a.rec.Load()
}

// Whitelist is the source of grants; the knocker app implements it.
// WhitelistStore may open the store lazily: apps start in random order.
type Whitelist interface {
	WhitelistStore() (*store.Store, error)
	WhitelistPath() string
}

// ConfigKey is the caddy.Context key under which the knocker app hands
// this app its configuration (a *Handoff); see Attach.
type ConfigKey struct{}

// Handoff carries the firewalld block of the knocker app's configuration
// (the Caddyfile adapter cannot emit a second app from one global option).
type Handoff struct {
	Config json.RawMessage // this App's JSON fields
	Source Whitelist
}

// Attach loads and provisions this app with config and src, through
// ctx.App so that Caddy also starts and stops it. The knocker app calls it
// from its Provision when it has a firewalld block. It fails if the app
// is also configured as apps.knocker_firewalld.
func Attach(ctx caddy.Context, config json.RawMessage, src Whitelist) (*App, error) {
	h := &Handoff{Config: config, Source: src}
	c := ctx
	c.Context = context.WithValue(ctx.Context, ConfigKey{}, h)
	v, err := c.App(ModuleID)
	if err != nil {
		return nil, err
	}
	a, ok := v.(*App)
	if !ok {
		return nil, fmt.Errorf("app %s has unexpected type %T", ModuleID, v)
	}
	if a.handoff != h {
		return nil, errOnePlace
	}
	return a, nil
}

var errOnePlace = errors.New("firewalld: configure firewalld in one place: either the knocker app's firewalld block or apps." + ModuleID + ", not both")

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  ModuleID,
		New: func() caddy.Module { return new(App) },
	}
}

// Provision validates the configuration. It does not touch D-Bus or any
// file, so `caddy validate` works anywhere.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.ctx = ctx
	a.lifecycle = new(lifecycle)
	if h, ok := ctx.Value(ConfigKey{}).(*Handoff); ok && h != nil {
		if a.configured() {
			return errOnePlace
		}
		if err := strictUnmarshal(h.Config, a); err != nil {
			return fmt.Errorf("firewalld: %v", err)
		}
		a.handoff, a.source = h, h.Source
	}
	s, err := a.parseSettings()
	if err != nil {
		return fmt.Errorf("firewalld: %v", err)
	}
	if s.stateFile != "" {
		p, err := caddy.NewReplacer().ReplaceOrErr(s.stateFile, true, true)
		if err == nil {
			p, err = filepath.Abs(p)
		}
		if err != nil {
			return fmt.Errorf("firewalld: state_file: %v", err)
		}
		s.stateFile = p
	}
	a.cfg = s
	return nil
}

func (a *App) configured() bool {
	return len(a.Zones) > 0 || a.Action != "" || len(a.Ports) > 0 || len(a.Monitor) > 0 ||
		a.StateFile != "" || a.QueueSize != 0
}

func strictUnmarshal(raw json.RawMessage, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("unexpected data after the configuration object")
	}
	return nil
}

// Start connects to firewalld, makes the protected zones hold this
// configuration's default rules (pruning what a previous one left),
// verifies them, restores every active grant's accept rules with its
// remaining time, and follows the store and firewalld from then on. It
// fails if the protection cannot be verified.
func (a *App) Start() error {
	if a.lifecycle == nil {
		return errors.New("firewalld: Start before Provision")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.rec.Load() != nil {
		return nil
	}
	src := a.source
	if src == nil {
		v, err := a.ctx.AppIfConfigured("knocker")
		if err != nil {
			return fmt.Errorf("firewalld: needs the knocker app for the whitelist: %w", err)
		}
		var ok bool
		if src, ok = v.(Whitelist); !ok {
			return fmt.Errorf("firewalld: the knocker app (%T) does not provide the whitelist", v)
		}
	}
	st, err := src.WhitelistStore()
	if err != nil {
		return fmt.Errorf("firewalld: opening the whitelist: %w", err)
	}
	statePath := a.cfg.stateFile
	if statePath == "" {
		statePath = defaultStatePath(src.WhitelistPath())
	}
	bus := a.bus
	if bus == "" {
		if bus, err = systemBusAddress(); err != nil {
			return fmt.Errorf("firewalld: %w", err)
		}
	}
	r := newReconciler(a.cfg, a.logger, st, statePath, bus)
	if err := r.start(); err != nil {
		return err // Caddy prefixes "knocker_firewalld app module: start:"
	}
	a.rec.Store(r)
	return nil
}

// Stop stops following the store and firewalld and closes the connection.
// It removes no rule: the protection stays, and timed accepts expire on
// their own. During a Caddy config reload the new App has started before
// the old one stops, so nothing is lost in between.
func (a *App) Stop() error {
	if a.lifecycle == nil { // Provision never ran
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if r := a.rec.Swap(nil); r != nil {
		r.stop()
	}
	return nil
}

// Cleanup stops the app if Start ran and Stop did not.
func (a *App) Cleanup() error { return a.Stop() }

// PrepareGrant opens p's ports (one timed accept rule per zone and port,
// expiring at expires, unix seconds) and returns once firewalld has them,
// before the knock is answered. A re-knock replaces the timeout. If a rule
// fails, those already changed are rolled back and the error is returned.
// The error wraps ErrBusy when the mutation queue is full (answer 503) and
// ErrStopped when the app is not running; anything else is a failure
// (answer 500). Call undo if the grant cannot be persisted: it returns at
// once and puts p's rules back in line with the store shortly after.
func (a *App) PrepareGrant(ctx context.Context, p netip.Prefix, expires int64) (undo func(), err error) {
	r := a.reconciler()
	if r == nil {
		return nil, ErrStopped
	}
	if err := store.CanonicalPrefix(p); err != nil {
		return nil, err
	}
	r.sh.noteOpened(p) // before the rules exist: see shared.recent
	if err := r.submit(ctx, func(ctx context.Context) error { return r.openGrant(ctx, p, expires) }); err != nil {
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
func (a *App) Ready() error {
	r := a.reconciler()
	if r == nil {
		return fmt.Errorf("firewalld protection is not active: %w", ErrStopped)
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := r.verify(ctx); err != nil {
		return fmt.Errorf("firewalld: %w", err)
	}
	return nil
}

const readyTimeout = 5 * time.Second

// Interface guards.
var (
	_ caddy.App             = (*App)(nil)
	_ caddy.Provisioner     = (*App)(nil)
	_ caddy.CleanerUpper    = (*App)(nil)
	_ caddyfile.Unmarshaler = (*App)(nil)
)

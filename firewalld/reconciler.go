//go:build !(illumos || solaris || dragonfly)

package firewalld

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	"go.uber.org/zap"

	"github.com/caddy-knocker/knocker/store"
)

// reconciler keeps firewalld in line with one Backend's configuration and the
// whitelist store, from Start to Stop.
type reconciler struct {
	cfg       settings
	log       *zap.Logger
	store     *store.Store
	statePath string
	bus       string  // D-Bus address of firewalld's bus
	sh        *shared // what the Backends on bus share; held until stop
	release   sync.Once

	ctx    context.Context // cancelled by stop
	cancel context.CancelFunc
	wg     sync.WaitGroup

	clientMu sync.RWMutex
	cl       *client // nil while reconnecting

	zonesMu sync.RWMutex
	zones   []string // the zones protected (resolved default zone if none configured)

	jobs         chan *job
	wake         chan struct{}
	workerDone   chan struct{}
	pendMu       sync.Mutex
	pending      map[netip.Prefix]pendingOp
	resyncReason string

	unsubscribe func()
}

// newReconciler returns a reconciler for the firewalld on bus; the caller
// must start it (start stops it again on failure) or stop it.
func newReconciler(cfg settings, log *zap.Logger, st *store.Store, statePath, bus string) *reconciler {
	ctx, cancel := context.WithCancel(context.Background())
	return &reconciler{
		cfg: cfg, log: log, store: st, statePath: statePath, bus: bus,
		sh:  acquireShared(bus),
		ctx: ctx, cancel: cancel,
		jobs:       make(chan *job, cfg.queueSize),
		wake:       make(chan struct{}, 1),
		workerDone: make(chan struct{}),
		pending:    map[netip.Prefix]pendingOp{},
	}
}

// setupTimeout bounds Start's zone set-up; restoring the grants is
// bounded by each call's timeout only, since it grows with their number.
const setupTimeout = time.Minute

// start connects, protects the zones and restores the grants. On error it
// has undone its own goroutines and connection (never any rule).
func (r *reconciler) start() (err error) {
	defer func() {
		if err != nil {
			r.stop()
		}
	}()
	conn, err := r.dial()
	if err != nil {
		return err
	}
	c := &client{conn: conn}
	r.setClient(c)
	ctx, cancel := context.WithTimeout(r.ctx, setupTimeout)
	defer cancel()

	if err := r.checkRunning(ctx, c); err != nil {
		return err
	}
	version, err := c.version(ctx)
	if err != nil {
		return err
	}
	if !supportsPriorities(version) {
		return fmt.Errorf("firewalld %s is too old: rich-rule priorities need 0.9 or later", version)
	}

	// Signals first, so that a reload during the rest of Start is seen.
	signals := make(chan *dbus.Signal, 64)
	if err := c.subscribe(ctx, signals); err != nil {
		return err
	}
	r.wg.Add(1)
	go r.watch(signals)

	r.sh.register(r)
	// Store events first too: those arriving while the grants are being
	// restored wait in the pending set and are applied afterwards.
	r.unsubscribe = r.store.Subscribe(r.onStoreEvent)

	r.sh.mu.Lock()
	err = r.protect(ctx)
	if err == nil {
		if err = r.verify(ctx); err != nil {
			err = fmt.Errorf("protection not verified after set-up: %w", err)
		}
	}
	var restored, pruned int
	if err == nil {
		var rerr error
		if restored, pruned, rerr = r.restoreGrants(r.ctx); rerr != nil {
			// Protection holds; grants whose rules could not be
			// restored are fixed by the next re-knock or resync.
			r.log.Error("restoring grants' accept rules", zap.Error(rerr))
		}
	}
	r.sh.mu.Unlock()
	if err != nil {
		return err
	}

	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.work()
	}()
	r.log.Info("firewalld protection active",
		zap.String("firewalld_version", version),
		zap.Strings("zones", r.currentZones()),
		zap.Stringers("ports", r.cfg.ports),
		zap.String("action", r.cfg.action),
		zap.Int("accept_rules", restored),
		zap.Int("stale_accepts_pruned", pruned),
		zap.String("state_file", r.statePath))
	return nil
}

// stop ends the goroutines and closes the connection. Rules stay: the
// protection outlives Caddy, and timed accepts expire on their own.
func (r *reconciler) stop() {
	if r.unsubscribe != nil {
		r.unsubscribe()
	}
	r.sh.unregister(r)
	r.cancel()
	r.wg.Wait()
	select {
	case <-r.workerDone:
	default:
		close(r.workerDone) // the worker never started
	}
	r.clientMu.Lock()
	if r.cl != nil {
		r.cl.close()
		r.cl = nil
	}
	r.clientMu.Unlock()
	r.release.Do(r.sh.release) // after the worker ended: nothing changes rules now
}

func (r *reconciler) client() (*client, error) {
	r.clientMu.RLock()
	defer r.clientMu.RUnlock()
	if r.cl == nil || !r.cl.alive() {
		return nil, errors.New("not connected to the D-Bus system bus (reconnecting)")
	}
	return r.cl, nil
}

func (r *reconciler) setClient(c *client) {
	r.clientMu.Lock()
	old := r.cl
	r.cl = c
	r.clientMu.Unlock()
	if old != nil && old != c {
		old.close()
	}
}

func (r *reconciler) currentZones() []string {
	r.zonesMu.RLock()
	defer r.zonesMu.RUnlock()
	return slices.Clone(r.zones)
}

// checkRunning fails unless firewalld owns its bus name and is RUNNING.
func (r *reconciler) checkRunning(ctx context.Context, c *client) error {
	owner, err := c.nameOwner(ctx)
	if err != nil {
		return err
	}
	if owner == "" {
		return &explained{fmt.Sprintf("firewalld is not running (D-Bus name %s has no owner)", busName), ErrNotRunning}
	}
	state, err := c.state(ctx)
	if err != nil {
		return err
	}
	if state != stateRunning {
		return &explained{fmt.Sprintf("firewalld is not running (state %s)", state), ErrNotRunning}
	}
	return nil
}

// waitRunning waits up to limit for a (re)started firewalld to finish
// loading its configuration.
func (r *reconciler) waitRunning(ctx context.Context, c *client, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		err := r.checkRunning(ctx, c)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// supportsPriorities reports whether a firewalld version has rich-rule
// priorities (0.9.0 and later).
func supportsPriorities(version string) bool {
	parts := strings.SplitN(version, ".", 3)
	major, err := strconv.Atoi(parts[0])
	if err != nil {
		return true // unknown format: let firewalld judge the rules
	}
	if major != 0 {
		return true
	}
	if len(parts) < 2 {
		return false
	}
	minor, _ := strconv.Atoi(parts[1])
	return minor >= 9
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-knocker/knocker/store"
)

// Skew is the clock difference between nodes a record's times may show: a
// record's expiry may exceed the largest max_ttl by this much, and the
// engine keeps a record this long past its expiry.
const Skew = 60 * time.Second

// minRecordTTL keeps tombstones and bans of short grants long enough for a
// briefly disconnected node to see them.
const minRecordTTL = time.Minute

// Options configure a Replicator.
type Options struct {
	Config Resolved
	Driver Driver
	Logger *zap.Logger
	// MaxTTL caps a received grant's remaining lifetime (seconds): the
	// largest max_ttl of the keys (plus Skew).
	MaxTTL int64
	// OnBan is told of another node's ban of a client (the rate limiter's
	// failure window filled there) until a unix time.
	OnBan func(actor netip.Addr, until int64)
	// Observer receives figures for metrics; nil fields are skipped.
	Observer Observer
	Now      func() time.Time // nil: time.Now
}

// Observer receives a replicator's figures.
type Observer struct {
	// Propagation is how long a peer's record took from being made to
	// being applied here.
	Propagation func(time.Duration)
	// EngineError counts a failed engine operation (put).
	EngineError func(op string)
	// Rejected counts a record that failed its check.
	Rejected func()
}

// Replicator keeps a store in step with a cluster bucket. Its methods are
// safe for concurrent use.
type Replicator struct {
	opts Options
	cfg  Resolved
	drv  Driver
	log  *zap.Logger
	now  func() time.Time

	st        *store.Store
	statePath string
	in        chan *item
	stop      chan struct{}
	wg        sync.WaitGroup
	kick      chan struct{}
	runMu     sync.Mutex // guards started and stopped
	started   bool
	stopped   bool
	sendMu    sync.RWMutex // orders sends to the applier against Stop
	closed    bool         // guarded by sendMu: the applier is gone

	ps *pendingSet // by key; the durable ones also on disk (pending.go)

	flightMu sync.Mutex
	inFlight map[string]int // keys of this node's grants being published

	synced    atomic.Bool
	followRev atomic.Uint64 // the last revision the driver delivered
	bucketMu  sync.Mutex
	bucketID  string // the bucket followed; "" before the first snapshot

	a applier // owned by the applier goroutine
}

// New makes a replicator; Start sets it going.
func New(opts Options) (*Replicator, error) {
	if opts.Driver == nil {
		return nil, errors.New("cluster: no driver")
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Replicator{
		opts:     opts,
		cfg:      opts.Config,
		drv:      opts.Driver,
		log:      opts.Logger,
		now:      opts.Now,
		in:       make(chan *item, 1024),
		stop:     make(chan struct{}),
		kick:     make(chan struct{}, 1),
		inFlight: make(map[string]int),
	}, nil
}

// Start replicates st (whose snapshot file is whitelistPath): it opens the
// driver and follows the bucket. It returns without waiting for the
// engine. Starting a started replicator does nothing (configs share one
// across reloads), a stopped one is an error.
func (r *Replicator) Start(st *store.Store, whitelistPath string) error {
	r.runMu.Lock()
	defer r.runMu.Unlock()
	switch {
	case r.stopped:
		return errors.New("cluster: replicator already stopped")
	case r.started:
		if st != r.st {
			return errors.New("cluster: replicator started on another whitelist")
		}
		return nil
	}
	r.st = st
	r.statePath = whitelistPath + stateSuffix
	r.ps = pendingSetOf(store.ResolvePath(whitelistPath))
	r.a.init(r)
	r.loadPending()
	if err := r.drv.Open(r.log); err != nil {
		return err
	}
	r.started = true
	r.wg.Add(3)
	go r.applyLoop()
	go r.publishLoop()
	go func() {
		defer r.wg.Done()
		r.drv.Follow(follower{r})
	}()
	return nil
}

// Stop stops following and publishing and closes the driver. Records not
// published yet are dropped: the local store has them, and the next
// catch-up reconciles.
func (r *Replicator) Stop() error {
	r.runMu.Lock()
	defer r.runMu.Unlock()
	if !r.started || r.stopped {
		r.stopped = true
		return nil
	}
	r.stopped = true
	err := r.drv.Close() // ends Follow
	r.sendMu.Lock()      // waits for sends in progress: the applier still takes them
	r.closed = true
	r.sendMu.Unlock()
	close(r.stop)
	r.wg.Wait()
	return err
}

// Node is this node's name.
func (r *Replicator) Node() string { return r.cfg.Node }

// WhenDown is what knocks get while the engine is down.
func (r *Replicator) WhenDown() string { return r.cfg.WhenDown }

// State is a replicator's state, for /ready and metrics.
type State struct {
	Status
	// Synced: the first catch-up with the bucket is done.
	Synced bool
	// Revision is the last bucket revision applied here.
	Revision uint64
	// Unpublished counts this node's records waiting for the engine.
	Unpublished int
}

// State reports the replicator's state.
func (r *Replicator) State() State {
	n := 0
	if r.ps != nil {
		r.ps.mu.Lock()
		n = len(r.ps.m)
		r.ps.mu.Unlock()
	}
	return State{Status: r.drv.Status(), Synced: r.synced.Load(), Revision: r.followRev.Load(), Unpublished: n}
}

// Ready reports whether knocks can be answered as the config says: with
// when_down refuse, the engine must be reachable and the first catch-up
// done.
func (r *Replicator) Ready() error {
	st := r.State()
	if r.cfg.WhenDown == Local {
		return nil
	}
	switch {
	case !st.Connected:
		if st.Err != nil {
			return fmt.Errorf("cluster engine unreachable: %v", st.Err)
		}
		return errors.New("cluster engine unreachable")
	case !st.Synced:
		return errors.New("cluster: catching up with the shared whitelist")
	}
	return nil
}

func (r *Replicator) nowMilli() int64 { return r.now().UnixMilli() }

// ttlFor is how long the engine keeps a record about something that ends
// at expires.
func (r *Replicator) ttlFor(expires int64) time.Duration {
	d := time.Duration(expires-r.now().Unix())*time.Second + Skew
	return max(d, minRecordTTL)
}

// Grant makes the grant of p until expires with opts (a knock's or the
// admin API's, opts.Scopes canonical) cluster-wide: it is published, and
// once the engine acknowledged it, stored here. With the engine down it
// fails wrapping ErrDown, or with when_down local is stored here and
// published later. Entries the grant evicts here are removed everywhere.
func (r *Replicator) Grant(ctx context.Context, p netip.Prefix, expires int64, opts store.GrantOptions) (store.GrantResult, error) {
	rec := &Record{Op: OpGrant, Entry: store.FormatPrefix(p), Scopes: opts.Scopes, Expires: expires,
		KeyName: opts.Owner, Node: r.cfg.Node, Time: r.nowMilli()}
	if opts.Client.IsValid() {
		rec.Client = opts.Client.String()
	}
	key := GrantKey(p, opts.Scopes)
	value := seal(r.cfg.Secret, key, rec)
	change := store.Change{Prefix: p, Scopes: opts.Scopes, Expires: expires, Options: opts}
	r.flight(key, 1)
	rev, err := r.put(ctx, key, value, expires)
	if err != nil {
		// The engine may have stored it all the same (an ack lost): if its
		// echo came, the applier applies it now, and a later one is not
		// held back any more.
		r.flight(key, -1)
		r.send(&item{kind: itemUnpark, key: key})
		if r.cfg.WhenDown != Local {
			return store.GrantResult{}, err
		}
		res, err := r.applyLocal(key, rec, 0, change)
		if err == nil {
			r.enqueue(key, rec, value, publishIfNewer)
			r.log.Warn("cluster engine unreachable: granted on this node only, to be published when it is back (when_down local)",
				zap.String("entry", rec.Entry), zap.String("key", rec.KeyName))
			r.removeEverywhere(res.Evicted, ReasonEvicted)
		}
		return res, err
	}
	res, err := r.applyLocal(key, rec, rev, change)
	r.flight(key, -1)
	if err != nil {
		// Published but refused here (the whitelist is full of entries the
		// key may not evict, or the disk failed): take it back everywhere.
		r.removeEverywhere([]store.Entry{{Prefix: p, Scopes: opts.Scopes, Expires: expires}}, ReasonRevoked)
		return res, err
	}
	r.removeEverywhere(res.Evicted, ReasonEvicted)
	return res, nil
}

// flight counts this node's grants of key between publishing and storing
// them: the applier holds back their echo from the bucket meanwhile, which
// could otherwise be applied first, as a remote grant, skipping the local
// bounds (max_entries) and evictions.
func (r *Replicator) flight(key string, delta int) {
	r.flightMu.Lock()
	if r.inFlight[key] += delta; r.inFlight[key] <= 0 {
		delete(r.inFlight, key)
	}
	r.flightMu.Unlock()
}

func (r *Replicator) flying(key string) bool {
	r.flightMu.Lock()
	defer r.flightMu.Unlock()
	return r.inFlight[key] > 0
}

// put publishes one record within the configured timeout.
func (r *Replicator) put(ctx context.Context, key string, value []byte, expires int64) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	rev, err := r.drv.Put(ctx, key, value, r.ttlFor(expires))
	if err != nil {
		if f := r.opts.Observer.EngineError; f != nil {
			f("put")
		}
		if !errors.Is(err, ErrDown) {
			err = fmt.Errorf("%w: %v", ErrDown, err)
		}
		return 0, err
	}
	return rev, nil
}

// Revoke removes every entry of p here at once and everywhere through the
// engine; a revocation is never refused for an engine outage: it is
// published when the engine is back.
func (r *Replicator) Revoke(p netip.Prefix) ([]store.Entry, error) {
	return r.revokeWith(func(st *store.Store) ([]store.Entry, error) {
		had := st.EntriesOf(p, 0) // expired ones too: the applier is the only other writer
		if _, err := st.Revoke(p); err != nil {
			return nil, err
		}
		return had, nil
	})
}

// RevokeOwner removes every entry owner holds, here and everywhere.
func (r *Replicator) RevokeOwner(owner string) ([]store.Entry, error) {
	return r.revokeWith(func(st *store.Store) ([]store.Entry, error) { return st.RevokeOwner(owner) })
}

func (r *Replicator) revokeWith(fn func(*store.Store) ([]store.Entry, error)) ([]store.Entry, error) {
	it := item{kind: itemExec, exec: fn, done: make(chan struct{})}
	if err := r.send(&it); err != nil {
		return nil, err
	}
	<-it.done
	if it.err != nil {
		return nil, it.err
	}
	r.removeEverywhere(it.removed, ReasonRevoked)
	return it.removed, nil
}

// removeEverywhere publishes tombstones for entries removed here.
func (r *Replicator) removeEverywhere(entries []store.Entry, reason string) {
	mode := publishNow
	if !r.drv.Status().Connected {
		mode = publishIfNewer
	}
	ds := make([]deferred, 0, len(entries))
	for _, e := range entries {
		rec := &Record{Op: OpRemove, Entry: store.FormatPrefix(e.Prefix), Scopes: e.Scopes, Expires: e.Expires,
			Reason: reason, Node: r.cfg.Node, Time: r.nowMilli()}
		key := GrantKey(e.Prefix, e.Scopes)
		ds = append(ds, deferred{key, rec, seal(r.cfg.Secret, key, rec)})
	}
	r.enqueueAll(ds, mode)
}

// Ban tells every node that actor (a rate-limit key: an address, or an
// IPv6 /64's first address) is refused until until.
func (r *Replicator) Ban(actor netip.Addr, until int64) {
	rec := &Record{Op: OpBan, Entry: actor.String(), Expires: until, Node: r.cfg.Node, Time: r.nowMilli()}
	key := BanKey(actor)
	r.enqueue(key, rec, seal(r.cfg.Secret, key, rec), publishNow)
}

// applyLocal stores this node's own change, in order with the cluster's.
func (r *Replicator) applyLocal(key string, rec *Record, rev uint64, c store.Change) (store.GrantResult, error) {
	it := item{kind: itemLocal, key: key, rec: rec, rev: rev, change: c, done: make(chan struct{})}
	if err := r.send(&it); err != nil {
		return store.GrantResult{}, err
	}
	<-it.done
	return it.result, it.err
}

// send hands it to the applier, or fails with ErrClosed once the
// replicator stopped: an item sent then would never be answered.
func (r *Replicator) send(it *item) error {
	r.sendMu.RLock()
	defer r.sendMu.RUnlock()
	if r.closed {
		return store.ErrClosed
	}
	r.in <- it // the applier runs until closed is set
	return nil
}

package cluster

import (
	"errors"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-knocker/knocker/store"
)

// The applier goroutine is the only writer of the store in cluster mode:
// this node's knocks and revocations and the bucket's changes pass through
// it in one order, so that an older record never overwrites a newer one.
// It hands what it decided to the store in batches (store.Apply), so that
// a catch-up of thousands of records costs a few fsyncs, not one each.

type itemKind uint8

const (
	itemUpdate   itemKind = iota + 1 // a change delivered by the driver
	itemSnapshot                     // a full snapshot of bucket follows
	itemSynced                       // the snapshot or resume caught up
	itemLocal                        // this node's grant (rev 0: not published yet)
	itemExec                         // this node's revocation
	itemMark                         // this node's record reached the engine at rev
	itemUnpark                       // this node's grant of key was not stored: apply its echo, if held
)

type item struct {
	kind   itemKind
	update Update
	bucket string

	key    string
	rec    *Record
	rev    uint64
	change store.Change
	exec   func(*store.Store) ([]store.Entry, error)

	// Results, set before done is closed.
	result  store.GrantResult
	removed []store.Entry
	err     error
	done    chan struct{}
}

// keyState is what the applier last applied for a key.
type keyState struct {
	rev     uint64
	time    int64 // the record's, unix ms
	expires int64 // unix s; the state is forgotten some time after
}

type applier struct {
	r       *Replicator
	applied map[string]keyState
	snap    *snapshot // during a full snapshot
	forged  map[string]bool
	parked  map[string]Update // echoes of this node's grants in flight
	pruneAt time.Time

	cappedLogAt time.Time // when a capped expiry may be logged again

	batch []*item
	queue []store.Change
	owner []int // queue[i] belongs to batch[owner[i]], or -1
}

type snapshot struct {
	bucket  string
	seen    map[string]bool // keys holding a live grant in the bucket
	touched map[string]bool // keys this node changed meanwhile
}

const (
	maxBan        = 3600 // seconds: a ban record lasts at most this long here
	maxApplyBatch = 512
	maxForgedLogs = 1024
	pruneEvery    = 10 * time.Minute
)

func (a *applier) init(r *Replicator) {
	a.r = r
	a.applied = make(map[string]keyState)
	a.forged = make(map[string]bool)
	a.parked = make(map[string]Update)
	a.pruneAt = r.now().Add(pruneEvery)
}

func (r *Replicator) applyLoop() {
	defer r.wg.Done()
	a := &r.a
	for {
		var first *item
		select {
		case first = <-r.in:
		case <-r.stop:
			a.drainClosed()
			return
		}
		a.batch = append(a.batch[:0], first)
	fill:
		for len(a.batch) < maxApplyBatch {
			select {
			case it := <-r.in:
				a.batch = append(a.batch, it)
			default:
				break fill
			}
		}
		a.run()
		clear(a.batch)
	}
}

// drainClosed fails what is still queued once the replicator stops.
func (a *applier) drainClosed() {
	for {
		select {
		case it := <-a.r.in:
			if it.done != nil {
				it.err = store.ErrClosed
				close(it.done)
			}
		default:
			return
		}
	}
}

// run decides each item of the batch in order, handing the store changes
// in as few Apply calls as ordering allows.
func (a *applier) run() {
	a.queue, a.owner = a.queue[:0], a.owner[:0]
	for i, it := range a.batch {
		switch it.kind {
		case itemUpdate:
			a.update(it.update)
		case itemLocal:
			a.local(i, it)
		case itemMark:
			a.mark(it.key, it.rev, it.rec)
		case itemUnpark:
			if u, ok := a.parked[it.key]; ok {
				delete(a.parked, it.key)
				a.update(u)
			}
		case itemSnapshot:
			a.flush()
			// A snapshot holds the newest record of every key: each is
			// decided afresh, so that none is skipped as applied before
			// (an interrupted snapshot, or another bucket's revisions)
			// and then missing from seen. This node's knocks from here on
			// are touched: the reconcile leaves them alone.
			clear(a.applied)
			a.r.followRev.Store(0)
			a.snap = &snapshot{bucket: it.bucket, seen: map[string]bool{}, touched: map[string]bool{}}
		case itemSynced:
			a.flush()
			a.synced()
		case itemExec:
			a.flush()
			it.removed, it.err = it.exec(a.r.st)
			now := a.r.nowMilli()
			for _, e := range it.removed {
				k := GrantKey(e.Prefix, e.Scopes)
				a.applied[k] = keyState{rev: a.applied[k].rev, time: now, expires: e.Expires}
				a.touch(k)
			}
			close(it.done)
		}
	}
	a.flush()
	if now := a.r.now(); now.After(a.pruneAt) {
		a.prune(now.Unix())
		a.pruneAt = now.Add(pruneEvery)
	}
}

// flush applies the queued changes and answers their items.
func (a *applier) flush() {
	if len(a.queue) == 0 {
		return
	}
	err := a.r.st.Apply(a.queue)
	for i := range a.queue {
		c := &a.queue[i]
		cerr := c.Err
		if err != nil {
			cerr = err
		}
		if o := a.owner[i]; o >= 0 {
			it := a.batch[o]
			it.result, it.err = c.Result, cerr
			close(it.done)
		} else if cerr != nil && !errors.Is(cerr, store.ErrClosed) {
			a.r.log.Error("applying a cluster change to the local whitelist failed; the next catch-up corrects it",
				zap.String("entry", store.FormatPrefix(c.Prefix)), zap.Error(cerr))
		}
	}
	a.queue, a.owner = a.queue[:0], a.owner[:0]
}

func (a *applier) touch(key string) {
	if a.snap != nil {
		a.snap.touched[key] = true
	}
}

// local queues this node's own grant.
func (a *applier) local(i int, it *item) {
	if u, ok := a.parked[it.key]; ok && (it.rev == 0 || u.Revision <= it.rev) {
		delete(a.parked, it.key)
	}
	if st, ok := a.applied[it.key]; ok && it.rev != 0 && st.rev > it.rev {
		// A newer record of the key (a peer's re-knock) is already here.
		it.result = store.GrantResult{Entry: store.Entry{Prefix: it.change.Prefix, Expires: it.change.Expires, Scopes: it.change.Scopes}}
		close(it.done)
		return
	}
	a.applied[it.key] = keyState{rev: max(it.rev, a.applied[it.key].rev), time: it.rec.Time, expires: it.rec.Expires}
	a.touch(it.key)
	a.queue = append(a.queue, it.change)
	a.owner = append(a.owner, i)
}

// mark records that this node's record of key reached the engine at rev.
func (a *applier) mark(key string, rev uint64, rec *Record) {
	if st := a.applied[key]; st.rev < rev {
		a.applied[key] = keyState{rev: rev, time: max(st.time, rec.Time), expires: max(st.expires, rec.Expires)}
	}
}

// update decides one change from the bucket.
func (a *applier) update(u Update) {
	r := a.r
	if u.Revision > r.followRev.Load() {
		r.followRev.Store(u.Revision)
	}
	st, known := a.applied[u.Key]
	if known && st.rev >= u.Revision {
		return // this node's own record, or one already applied
	}
	pendingAt, pending := r.pendingTime(u.Key)
	if u.Deleted {
		a.applied[u.Key] = keyState{rev: u.Revision, time: st.time, expires: st.expires}
		if pending {
			return // this node's deferred change of the key comes after it
		}
		if p, scopes, ok := parseGrantKey(u.Key); ok {
			a.remote(store.Change{Prefix: p, Scopes: scopes, Remote: true})
		}
		return
	}
	rec, err := open(r.cfg.Secret, u.Key, u.Value)
	if err != nil {
		a.reject(u, err)
		return
	}
	if pending && rec.Time < pendingAt {
		// This node changed the key later, during an outage: that record
		// is published over this one (publishDeferred).
		a.applied[u.Key] = keyState{rev: u.Revision, time: rec.Time, expires: rec.Expires}
		return
	}
	if rec.Node == r.cfg.Node && rec.Op == OpGrant && r.flying(u.Key) {
		a.parked[u.Key] = u // the knock stores it itself, with its bounds
		return
	}
	// Revisions order the records; the time only catches a record put
	// back from long ago (a replay by someone with write access to the
	// bucket), so clocks may differ by up to Skew.
	if known && rec.Time < st.time-Skew.Milliseconds() {
		r.log.Warn("ignoring a cluster record much older than the one applied for its key (replayed?)",
			zap.String("bucket_key", u.Key), zap.Uint64("revision", u.Revision), zap.String("node", rec.Node))
		return
	}
	a.applied[u.Key] = keyState{rev: u.Revision, time: rec.Time, expires: rec.Expires}
	now := r.now()
	switch rec.Op {
	case OpGrant:
		p, _ := store.ParseEntryKey(rec.Entry) // checked by open
		scopes, _ := store.CheckScopes(rec.Scopes)
		expires := rec.Expires
		if limit := now.Unix() + r.opts.MaxTTL + int64(Skew/time.Second); expires > limit {
			if now.After(a.cappedLogAt) { // at most once a minute: a whole bucket may need it
				a.cappedLogAt = now.Add(time.Minute)
				r.log.Warn("capping a cluster grant's expiry at the largest max_ttl of this node's keys (do all nodes have the same keys?)",
					zap.String("entry", rec.Entry), zap.String("node", rec.Node), zap.Int64("expires_at", expires), zap.Int64("capped_at", limit))
			}
			expires = limit
		}
		if expires <= now.Unix() {
			a.remote(store.Change{Prefix: p, Scopes: scopes, Remote: true}) // the last knock wins, and it has run out
			return
		}
		if a.snap != nil {
			a.snap.seen[u.Key] = true
		} else if rec.Node != r.cfg.Node {
			if f := r.opts.Observer.Propagation; f != nil {
				f(now.Sub(time.UnixMilli(rec.Time)))
			}
		}
		c := store.Change{Prefix: p, Scopes: scopes, Expires: expires, Remote: true, Created: rec.Created, Renewed: rec.Time / 1000}
		if store.CheckOwnerName(rec.KeyName) == nil {
			c.Options.Owner = rec.KeyName
		}
		c.Options.Client, _ = netip.ParseAddr(rec.Client)
		a.remote(c) // without Created (a knock's record), the store keeps the entry's own
	case OpBan:
		if rec.Node != r.cfg.Node && r.opts.OnBan != nil && rec.Expires > now.Unix() {
			addr, _ := netip.ParseAddr(rec.Entry)
			r.opts.OnBan(addr, min(rec.Expires, now.Unix()+maxBan))
		}
	case OpRemove:
		p, _ := store.ParseEntryKey(rec.Entry)
		scopes, _ := store.CheckScopes(rec.Scopes)
		a.remote(store.Change{Prefix: p, Scopes: scopes, Remote: true, Evicted: rec.Reason == ReasonEvicted})
	}
}

func (a *applier) remote(c store.Change) {
	a.queue = append(a.queue, c)
	a.owner = append(a.owner, -1)
}

// reject drops a record that fails its check; it is logged once per key.
func (a *applier) reject(u Update, err error) {
	if f := a.r.opts.Observer.Rejected; f != nil {
		f()
	}
	if a.forged[u.Key] || len(a.forged) >= maxForgedLogs {
		return
	}
	a.forged[u.Key] = true
	a.r.log.Error("rejected a cluster record: it admits nobody (is every node's secret the same?)",
		zap.String("bucket_key", u.Key), zap.Uint64("revision", u.Revision), zap.Error(err))
}

// synced ends a snapshot: local entries the bucket does not hold are
// removed, or, the first time this store joins this bucket, published
// (that is how a single node's whitelist moves into a new cluster).
func (a *applier) synced() {
	r := a.r
	if s := a.snap; s != nil {
		a.snap = nil
		joined := r.joinedBefore(s.bucket)
		if err := a.reconcile(s, joined); err != nil {
			r.log.Error("reconciling the local whitelist with the cluster failed; retrying at the next catch-up", zap.Error(err))
			return
		}
		if err := r.saveJoin(s.bucket); err != nil {
			r.log.Error("recording that this whitelist joined the cluster failed", zap.Error(err))
		}
		r.bucketMu.Lock()
		r.bucketID = s.bucket
		r.bucketMu.Unlock()
	}
	r.wake() // connected and caught up: publish what waits now
	if !r.synced.Swap(true) {
		r.log.Info("caught up with the cluster", zap.Uint64("revision", r.followRev.Load()), zap.Int("entries", r.st.Len()))
	}
}

func (a *applier) reconcile(s *snapshot, joined bool) error {
	r := a.r
	now := r.now().Unix()
	grants, err := r.st.Grants(now)
	if err != nil {
		return err
	}
	var migrate []deferred
	for _, g := range grants {
		k := GrantKey(g.Prefix, g.Scopes)
		if s.seen[k] || s.touched[k] || r.isPending(k) {
			continue
		}
		if joined {
			a.remote(store.Change{Prefix: g.Prefix, Scopes: g.Scopes, Remote: true})
			continue
		}
		rec := &Record{Op: OpGrant, Entry: store.FormatPrefix(g.Prefix), Scopes: g.Scopes, Expires: g.Expires,
			KeyName: g.Owner, Created: g.Created, Node: r.cfg.Node, Time: r.nowMilli()}
		if g.Client.IsValid() {
			rec.Client = g.Client.String()
		}
		migrate = append(migrate, deferred{k, rec, seal(r.cfg.Secret, k, rec)})
	}
	r.enqueueAll(migrate, publishIfAbsent)
	removed := len(a.queue)
	a.flush()
	if removed > 0 {
		r.log.Info("removed local grants the cluster no longer holds", zap.Int("entries", removed))
	}
	if len(migrate) > 0 {
		r.log.Info("this whitelist joins the cluster: publishing its grants", zap.Int("entries", len(migrate)))
	}
	return nil
}

// prune forgets keys whose records ended long ago.
func (a *applier) prune(now int64) {
	horizon := now - int64(Skew/time.Second) - int64(minRecordTTL/time.Second)
	for k, st := range a.applied {
		if st.expires < horizon {
			delete(a.applied, k)
		}
	}
}

// follower adapts the replicator to Driver.Follow.
type follower struct{ r *Replicator }

func (f follower) Resume() (string, uint64) {
	f.r.bucketMu.Lock()
	defer f.r.bucketMu.Unlock()
	if f.r.bucketID == "" {
		return "", 0
	}
	return f.r.bucketID, f.r.followRev.Load()
}

func (f follower) Snapshot(bucket string) { f.r.send(&item{kind: itemSnapshot, bucket: bucket}) }
func (f follower) Change(u Update)        { f.r.send(&item{kind: itemUpdate, update: u}) }
func (f follower) Synced()                { f.r.send(&item{kind: itemSynced}) }

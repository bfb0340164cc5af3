package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// This node's records that need not hold up an answer (tombstones, bans,
// grants made while the engine was down, a joining whitelist's grants)
// wait here, the latest per key, until the engine takes them.
//
// How one is published depends on when it was made:
//   - publishNow, made while connected (a revocation, an eviction): as is,
//     at once; the engine's revisions order it after every change it sees;
//   - publishIfNewer, made while the engine was unreachable (or not taken
//     at the first try): a peer may have changed the key since, so it is
//     published only if the bucket's newest record of the key is older by
//     the records' times, and only over that very revision (PutIfLast);
//   - publishIfAbsent, a joining whitelist's grants: only where the bucket
//     holds nothing for the key.
// Those of grant keys are kept in a file beside the whitelist until
// published: a revocation made during an outage survives a restart.

type pendingRecord struct {
	Value   []byte `json:"value"`
	Expires int64  `json:"expires"`
	Time    int64  `json:"time"` // the record's, unix ms
	Mode    string `json:"mode"`
}

// Publishing modes (above).
const (
	publishNow      = "now"
	publishIfNewer  = "if_newer"
	publishIfAbsent = "if_absent"
)

// retryEvery is how often unpublished records are retried while the
// engine seems up; a reconnect or a new record retries at once.
const retryEvery = time.Second

const pendingSuffix = ".cluster-pending"

// pendingSet is the unpublished records of one whitelist. Replicators of
// one whitelist share it (a reload that changes the cluster block runs two
// for a moment), so that a record the old one makes is published by the
// new one; each publishes what it finds, and PutIfLast keeps a record from
// being published twice.
type pendingSet struct {
	mu     sync.Mutex
	m      map[string]*pendingRecord
	loaded bool // the file was read
}

var pendingSets sync.Map // whitelist path -> *pendingSet

func pendingSetOf(whitelistPath string) *pendingSet {
	v, _ := pendingSets.LoadOrStore(whitelistPath, &pendingSet{m: map[string]*pendingRecord{}})
	return v.(*pendingSet)
}

func (r *Replicator) enqueue(key string, rec *Record, value []byte, mode string) {
	r.enqueueAll([]deferred{{key, rec, value}}, mode)
}

type deferred struct {
	key   string
	rec   *Record
	value []byte
}

// enqueueAll enqueues records, writing the file once (before it returns:
// a revocation survives a crash right after its answer).
func (r *Replicator) enqueueAll(ds []deferred, mode string) {
	if len(ds) == 0 {
		return
	}
	save := false
	r.ps.mu.Lock()
	for _, d := range ds {
		r.ps.m[d.key] = &pendingRecord{Value: d.value, Expires: d.rec.Expires, Time: d.rec.Time, Mode: mode}
		save = save || durable(d.key)
	}
	if save {
		r.savePendingLocked()
	}
	r.ps.mu.Unlock()
	r.wake()
}

// durable: records of grant keys outlive a restart; bans need not.
func durable(key string) bool { return strings.HasPrefix(key, grantKeyPrefix) }

func (r *Replicator) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// pendingTime is the time of key's unpublished record, if there is one.
func (r *Replicator) pendingTime(key string) (int64, bool) {
	r.ps.mu.Lock()
	defer r.ps.mu.Unlock()
	if p := r.ps.m[key]; p != nil {
		return p.Time, true
	}
	return 0, false
}

func (r *Replicator) isPending(key string) bool {
	_, ok := r.pendingTime(key)
	return ok
}

func (r *Replicator) publishLoop() {
	defer r.wg.Done()
	t := time.NewTicker(retryEvery)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-r.kick:
		case <-t.C:
		}
		r.publishPending()
	}
}

// publishPending publishes what waits, stopping at the first failure.
func (r *Replicator) publishPending() {
	r.ps.mu.Lock()
	keys := make([]string, 0, len(r.ps.m))
	for k := range r.ps.m {
		keys = append(keys, k)
	}
	r.ps.mu.Unlock()
	// Several at once: a joining whitelist may hold many thousands, and
	// each waits for the engine. The first failure ends the pass.
	var (
		wg      sync.WaitGroup
		failed  atomic.Bool
		dropped atomic.Bool
		next    = make(chan string)
	)
	for range min(publishers, len(keys)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range next {
				if r.publishOne(k) {
					dropped.Store(true)
				} else {
					failed.Store(true)
				}
			}
		}()
	}
	for _, k := range keys {
		if failed.Load() || !r.drv.Status().Connected {
			break
		}
		next <- k
	}
	close(next)
	wg.Wait()
	if dropped.Load() {
		// Once per pass, not per record: a record published but still in
		// the file after a crash is published again, which changes nothing.
		r.ps.mu.Lock()
		r.savePendingLocked()
		r.ps.mu.Unlock()
	}
}

// publishers bounds the records published at once.
const publishers = 16

// publishOne publishes k's record, or drops it when it ended or lost to a
// later change; false when it must wait for the next pass.
func (r *Replicator) publishOne(k string) bool {
	r.ps.mu.Lock()
	p := r.ps.m[k]
	r.ps.mu.Unlock()
	if p == nil {
		return true
	}
	if p.Expires+int64(Skew/time.Second) < r.now().Unix() {
		r.drop(k, p) // it ended before the engine came back
		return true
	}
	rev, err := r.publishDeferred(k, p)
	if errors.Is(err, ErrConflict) {
		r.log.Info("a later change of the key in the cluster won over this node's deferred record", zap.String("bucket_key", k))
		r.drop(k, p)
		return true
	}
	if err != nil {
		r.log.Debug("publishing to the cluster failed; retrying", zap.String("bucket_key", k), zap.Error(err))
		r.ps.mu.Lock()
		if p.Mode == publishNow && durable(k) {
			// Not taken now: by the time it is, a peer may have changed
			// the key.
			p.Mode = publishIfNewer
			r.savePendingLocked()
		}
		r.ps.mu.Unlock()
		return false
	}
	r.drop(k, p)
	if rec, err := open(r.cfg.Secret, k, p.Value); err == nil {
		r.send(&item{kind: itemMark, key: k, rev: rev, rec: rec})
	}
	return true
}

// publishDeferred publishes p as described above: ErrConflict when the
// bucket holds a record of k as new as p or newer.
func (r *Replicator) publishDeferred(k string, p *pendingRecord) (uint64, error) {
	switch {
	case !durable(k) || p.Mode == publishNow:
		return r.put(context.Background(), k, p.Value, p.Expires)
	case p.Mode == publishIfAbsent:
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout)
		defer cancel()
		return r.drv.PutIfLast(ctx, k, p.Value, r.ttlFor(p.Expires), 0)
	}
	for range 3 { // a conflict means the key moved meanwhile: look again
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout)
		cur, last, err := r.drv.Latest(ctx, k)
		cancel()
		if err != nil {
			return 0, err
		}
		if cur != nil {
			if rec, err := open(r.cfg.Secret, k, cur); err == nil && rec.Time >= p.Time {
				return 0, ErrConflict // changed later: that change wins
			}
		}
		ctx, cancel = context.WithTimeout(context.Background(), r.cfg.Timeout)
		rev, err := r.drv.PutIfLast(ctx, k, p.Value, r.ttlFor(p.Expires), last)
		cancel()
		if !errors.Is(err, ErrConflict) {
			return rev, err
		}
	}
	return 0, ErrConflict
}

// drop forgets p unless a newer record of k replaced it meanwhile; the
// file follows at the end of the pass.
func (r *Replicator) drop(k string, p *pendingRecord) {
	r.ps.mu.Lock()
	if r.ps.m[k] == p {
		delete(r.ps.m, k)
	}
	r.ps.mu.Unlock()
}

// savePendingLocked writes the durable pending records (write, fsync,
// rename), or removes the file when there are none. ps.mu is held.
func (r *Replicator) savePendingLocked() {
	if r.statePath == "" { // not started
		return
	}
	path := r.statePath[:len(r.statePath)-len(stateSuffix)] + pendingSuffix
	keep := map[string]*pendingRecord{}
	for k, p := range r.ps.m {
		if durable(k) {
			keep[k] = p
		}
	}
	var err error
	if len(keep) == 0 {
		if err = os.Remove(path); errors.Is(err, os.ErrNotExist) {
			err = nil
		}
	} else {
		b, _ := json.Marshal(keep)
		err = writeFileSync(path, b)
	}
	if err != nil {
		r.log.Error("saving this node's unpublished cluster records failed: a restart before the engine takes them loses them", zap.Error(err))
	}
}

// loadPending reads the records a previous run left unpublished.
func (r *Replicator) loadPending() {
	r.ps.mu.Lock()
	loaded := r.ps.loaded
	r.ps.loaded = true
	r.ps.mu.Unlock()
	if loaded { // a replicator of this whitelist runs, or ran, in this process
		return
	}
	path := r.statePath[:len(r.statePath)-len(stateSuffix)] + pendingSuffix
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var saved map[string]*pendingRecord
	if err == nil {
		err = json.Unmarshal(b, &saved)
	}
	if err != nil {
		r.log.Error("reading this node's unpublished cluster records failed; ignoring them", zap.String("file", path), zap.Error(err))
		return
	}
	r.ps.mu.Lock()
	for k, p := range saved {
		if _, err := open(r.cfg.Secret, k, p.Value); err == nil && r.ps.m[k] == nil { // another secret's: not ours to publish
			r.ps.m[k] = p
		}
	}
	r.ps.mu.Unlock()
	if len(saved) > 0 {
		r.log.Info("publishing this node's records left from before the restart", zap.Int("records", len(saved)))
	}
}

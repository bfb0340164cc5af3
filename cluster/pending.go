package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"
)

// This node's records that need not hold up an answer (tombstones, bans,
// grants made while the engine was down, a joining whitelist's grants)
// wait here, the latest per key, until the engine takes them.
//
// They were made while this node could not write (or did not wait), so a
// peer may have changed the key since: a deferred record of a grant key
// is published only if the bucket's newest record of the key is older (by
// the records' times), and only over that very revision (PutIfLast), so
// that it never overwrites a later knock or revocation. Those of grant
// keys are also kept in a file beside the whitelist until published: a
// revocation made during an outage survives a restart.

type pendingRecord struct {
	Value   []byte `json:"value"`
	Expires int64  `json:"expires"`
	Time    int64  `json:"time"` // the record's, unix ms
	// Last is the key's revision this node had applied when it made the
	// record: it is published only over that one. Offline records were
	// made while the engine was unreachable: a change since may be older
	// in fact, so the records' times decide instead.
	Last    uint64 `json:"last"`
	Offline bool   `json:"offline,omitempty"`
}

// retryEvery is how often unpublished records are retried while the
// engine seems up; a reconnect or a new record retries at once.
const retryEvery = time.Second

const pendingSuffix = ".cluster-pending"

func (r *Replicator) enqueue(key string, rec *Record, value []byte, last uint64, offline bool) {
	p := &pendingRecord{Value: value, Expires: rec.Expires, Time: rec.Time, Last: last, Offline: offline}
	r.pendMu.Lock()
	r.pending[key] = p
	if durable(key) {
		r.savePendingLocked()
	}
	r.pendMu.Unlock()
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
	r.pendMu.Lock()
	defer r.pendMu.Unlock()
	if p := r.pending[key]; p != nil {
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
	r.pendMu.Lock()
	keys := make([]string, 0, len(r.pending))
	for k := range r.pending {
		keys = append(keys, k)
	}
	r.pendMu.Unlock()
	for _, k := range keys {
		r.pendMu.Lock()
		p := r.pending[k]
		r.pendMu.Unlock()
		if p == nil {
			continue
		}
		if p.Expires+int64(Skew/time.Second) < r.now().Unix() {
			r.drop(k, p) // it ended before the engine came back
			continue
		}
		if !r.drv.Status().Connected {
			return
		}
		rev, err := r.publishDeferred(k, p)
		if errors.Is(err, ErrConflict) {
			r.log.Info("a later change of the key in the cluster won over this node's deferred record", zap.String("bucket_key", k))
			r.drop(k, p)
			continue
		}
		if err != nil {
			r.log.Debug("publishing to the cluster failed; retrying", zap.String("bucket_key", k), zap.Error(err))
			return
		}
		r.drop(k, p)
		if rec, err := open(r.cfg.Secret, k, p.Value); err == nil {
			r.send(&item{kind: itemMark, key: k, rev: rev, rec: rec})
		}
	}
}

// publishDeferred publishes p as described above: ErrConflict when the
// bucket holds a record of k as new as p or newer.
func (r *Replicator) publishDeferred(k string, p *pendingRecord) (uint64, error) {
	if !durable(k) {
		return r.put(context.Background(), k, p.Value, p.Expires)
	}
	last := p.Last
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout)
		rev, err := r.drv.PutIfLast(ctx, k, p.Value, r.ttlFor(p.Expires), last)
		cancel()
		if !errors.Is(err, ErrConflict) || !p.Offline {
			return rev, err // online, a conflict is a later change: it wins
		}
		// Made offline: the change since wins only if it is later.
		ctx, cancel = context.WithTimeout(context.Background(), r.cfg.Timeout)
		cur, rev, err := r.drv.Latest(ctx, k)
		cancel()
		if err != nil {
			return 0, err
		}
		if cur != nil {
			if rec, err := open(r.cfg.Secret, k, cur); err == nil && rec.Time >= p.Time {
				return 0, ErrConflict
			}
		}
		last = rev
	}
	return 0, ErrConflict
}

// drop forgets p unless a newer record of k replaced it meanwhile.
func (r *Replicator) drop(k string, p *pendingRecord) {
	r.pendMu.Lock()
	if r.pending[k] == p {
		delete(r.pending, k)
		if durable(k) {
			r.savePendingLocked()
		}
	}
	r.pendMu.Unlock()
}

// savePendingLocked writes the durable pending records (write, fsync,
// rename), or removes the file when there are none. pendMu is held.
func (r *Replicator) savePendingLocked() {
	if r.statePath == "" { // not started
		return
	}
	path := r.statePath[:len(r.statePath)-len(stateSuffix)] + pendingSuffix
	keep := map[string]*pendingRecord{}
	for k, p := range r.pending {
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
	r.pendMu.Lock()
	for k, p := range saved {
		if _, err := open(r.cfg.Secret, k, p.Value); err == nil { // another secret's: not ours to publish
			r.pending[k] = p
		}
	}
	r.pendMu.Unlock()
	if len(saved) > 0 {
		r.log.Info("publishing this node's records left from before the restart", zap.Int("records", len(saved)))
	}
}

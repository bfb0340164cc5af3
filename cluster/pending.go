package cluster

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// This node's records that need not hold up an answer (tombstones, bans,
// grants made while the engine was down, a joining whitelist's grants)
// wait here, the latest per key, until the engine acknowledges them.

type pendingRecord struct {
	value   []byte
	expires int64
}

// retryEvery is how often unpublished records are retried while the
// engine seems up; a reconnect or a new record retries at once.
const retryEvery = time.Second

func (r *Replicator) enqueue(key string, value []byte, expires int64) {
	r.pendMu.Lock()
	r.pending[key] = &pendingRecord{value: value, expires: expires}
	r.pendMu.Unlock()
	r.wake()
}

func (r *Replicator) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *Replicator) isPending(key string) bool {
	r.pendMu.Lock()
	defer r.pendMu.Unlock()
	return r.pending[key] != nil
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
		if p.expires+int64(Skew/time.Second) < r.now().Unix() {
			r.drop(k, p) // it ended before the engine came back
			continue
		}
		if !r.drv.Status().Connected {
			return
		}
		rev, err := r.put(context.Background(), k, p.value, p.expires)
		if err != nil {
			r.log.Debug("publishing to the cluster failed; retrying", zap.String("bucket_key", k), zap.Error(err))
			return
		}
		r.drop(k, p)
		if rec, err := open(r.cfg.Secret, k, p.value); err == nil {
			r.send(&item{kind: itemMark, key: k, rev: rev, rec: rec})
		}
	}
}

// drop forgets p unless a newer record of k replaced it meanwhile.
func (r *Replicator) drop(k string, p *pendingRecord) {
	r.pendMu.Lock()
	if r.pending[k] == p {
		delete(r.pending, k)
	}
	r.pendMu.Unlock()
}

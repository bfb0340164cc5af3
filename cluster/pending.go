package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"
)

// This node's records that need not hold up an answer (tombstones, bans,
// grants made while the engine was down, a joining whitelist's grants)
// wait here, the latest per key, until the engine acknowledges them.
//
// They are also written to a journal beside the whitelist
// (whitelist.json.cluster-pending), fsynced before enqueue returns, so
// that they survive a restart or a reload before the engine is back: a
// revocation answered while the engine was down would otherwise be lost
// with the process, and the next catch-up would bring the revoked grant
// back from the bucket (and remove a when_down local grant, which the
// bucket lacks). The journal holds one JSON line per record, the last of a
// key winning; it is rewritten with what still waits after each
// publishing pass that published something (and when superseded lines
// pile up during a long outage), and removed when nothing waits. Leave
// keeps it: a revocation made before leaving still reaches the cluster
// when this whitelist joins again.
//
// The records belong to the whitelist, not to a config: during a reload
// the replicators of the old and the new config share one pendingSet (as
// they share the store), so that neither rewrites the journal without
// the other's records, and what the old one could not publish the new one
// publishes.

type pendingRecord struct {
	value   []byte
	expires int64
	// time is the record's (unix ms): a bucket record of the key that is
	// no newer is superseded by this one, and not applied here.
	time int64
}

// queued is a record to enqueue under key.
type queued struct {
	key     string
	value   []byte
	expires int64
	time    int64
}

// retryEvery is how often unpublished records are retried while the
// engine seems up; a reconnect or a new record retries at once.
const retryEvery = time.Second

const pendingSuffix = ".cluster-pending"

// pendingSet is a whitelist's unpublished records and their journal.
type pendingSet struct {
	mu      sync.Mutex
	records map[string]*pendingRecord
	journal journal
	refs    int // guarded by pendingSets.mu
	log     *zap.Logger
}

var pendingSets = struct {
	mu sync.Mutex
	m  map[string]*pendingSet // by journal path
}{m: map[string]*pendingSet{}}

// acquirePending returns the pending set of the journal at path, reading
// the journal (dropping records that ended long before now) if no
// replicator holds it yet. release gives it back.
func acquirePending(path string, now int64, log *zap.Logger) (*pendingSet, error) {
	pendingSets.mu.Lock()
	defer pendingSets.mu.Unlock()
	if ps := pendingSets.m[path]; ps != nil {
		ps.refs++
		return ps, nil
	}
	ps := &pendingSet{records: map[string]*pendingRecord{}, journal: journal{path: path}, log: log}
	recs, err := ps.journal.load()
	if err != nil {
		return nil, err
	}
	for _, q := range recs {
		if q.expires+int64(Skew/time.Second) >= now {
			ps.records[q.key] = &pendingRecord{value: q.value, expires: q.expires, time: q.time}
		} else {
			delete(ps.records, q.key)
		}
	}
	if n := len(ps.records); n > 0 {
		log.Info("cluster records from before the restart wait to be published", zap.Int("records", n))
	}
	// Rewritten at once: without the records that ended, and without a
	// torn last line, after which appends would be lost to the next load.
	if len(recs) > 0 {
		ps.compact()
	}
	ps.refs = 1
	pendingSets.m[path] = ps
	return ps, nil
}

// release gives the set back; the last holder closes the journal.
func (ps *pendingSet) release() {
	pendingSets.mu.Lock()
	defer pendingSets.mu.Unlock()
	if ps.refs--; ps.refs == 0 {
		delete(pendingSets.m, ps.journal.path)
		ps.journal.close()
	}
}

func (ps *pendingSet) len() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return len(ps.records)
}

func (ps *pendingSet) get(key string) *pendingRecord {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.records[key]
}

// keys lists the keys waiting.
func (ps *pendingSet) keys() []string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	keys := make([]string, 0, len(ps.records))
	for k := range ps.records {
		keys = append(keys, k)
	}
	return keys
}

// add queues records, durably. A journal write failure is logged: the
// records still wait in memory.
func (ps *pendingSet) add(recs []queued) {
	ps.mu.Lock()
	for _, q := range recs {
		ps.records[q.key] = &pendingRecord{value: q.value, expires: q.expires, time: q.time}
	}
	n := len(ps.records)
	ps.mu.Unlock()
	lines, err := ps.journal.append(recs)
	switch {
	case err != nil:
		ps.log.Error("cannot record unpublished cluster records durably: a restart before the engine acknowledges them loses them",
			zap.String("file", ps.journal.path), zap.Int("records", len(recs)), zap.Error(err))
		ps.compact() // a partial line must not hide later ones
	case lines > 2*n+1024:
		ps.compact() // re-knocks of the same keys during a long outage
	}
}

// drop forgets p unless a newer record of k replaced it meanwhile.
func (ps *pendingSet) drop(k string, p *pendingRecord) {
	ps.mu.Lock()
	if ps.records[k] == p {
		delete(ps.records, k)
	}
	ps.mu.Unlock()
}

// supersede drops the record of key waiting, if it is no newer than t
// (unix ms): a newer record of the key reached the engine first, and
// publishing the waiting one after it would leave the bucket's last word
// on the key stale. It reports whether it dropped one.
func (ps *pendingSet) supersede(key string, t int64) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p := ps.records[key]; p != nil && p.time <= t {
		delete(ps.records, key)
		return true
	}
	return false
}

// compact rewrites the journal with what still waits.
func (ps *pendingSet) compact() {
	if err := ps.journal.rewrite(func() []queued {
		ps.mu.Lock()
		defer ps.mu.Unlock()
		out := make([]queued, 0, len(ps.records))
		for k, p := range ps.records {
			out = append(out, queued{key: k, value: p.value, expires: p.expires, time: p.time})
		}
		return out
	}); err != nil {
		ps.log.Error("rewriting the journal of unpublished cluster records failed", zap.String("file", ps.journal.path), zap.Error(err))
	}
}

// enqueue queues records for publishing, durably, and wakes the publisher.
func (r *Replicator) enqueue(recs ...queued) {
	if len(recs) == 0 {
		return
	}
	r.pend.add(recs)
	r.wake()
}

func (r *Replicator) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *Replicator) isPending(key string) bool { return r.pend.get(key) != nil }

// supersedes reports whether this node's unpublished record of key is at
// least as new as a bucket record made at t (unix ms): that one is then
// not applied, since this node's will replace it in the bucket.
func (r *Replicator) supersedes(key string, t int64) bool {
	p := r.pend.get(key)
	return p != nil && p.time >= t
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

// publishPending publishes what waits, stopping at the first failure, and
// then rewrites the journal if anything was published or dropped.
func (r *Replicator) publishPending() {
	done := 0
	defer func() {
		if done > 0 {
			r.pend.compact()
		}
	}()
	for _, k := range r.pend.keys() {
		p := r.pend.get(k)
		if p == nil {
			continue
		}
		if p.expires+int64(Skew/time.Second) < r.now().Unix() {
			r.pend.drop(k, p) // it ended before the engine came back
			done++
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
		r.pend.drop(k, p)
		done++
		if rec, err := open(r.cfg.Secret, k, p.value); err == nil {
			r.send(&item{kind: itemMark, key: k, rev: rev, rec: rec})
		}
	}
}

// journal is the file of unpublished records.
type journal struct {
	mu    sync.Mutex
	path  string
	f     *os.File // open for appending; nil when closed or absent
	lines int      // records in the file
}

// journalLine is one record in the journal.
type journalLine struct {
	Key     string `json:"key"`
	Value   string `json:"value"` // a record's value is ASCII: a hex signature and JSON
	Expires int64  `json:"expires"`
	Time    int64  `json:"time"`
}

func encodeLines(recs []queued) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, q := range recs {
		enc.Encode(journalLine{Key: q.key, Value: string(q.value), Expires: q.expires, Time: q.time}) // always encodes
	}
	return b.Bytes()
}

// append writes recs at the end of the journal and fsyncs it; it returns
// how many records the file holds.
func (j *journal) append(recs []queued) (int, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return j.lines, err
		}
		j.f = f
		syncDir(j.path) // the file's name, if it was just made
	}
	_, err := j.f.Write(encodeLines(recs))
	if err == nil {
		err = j.f.Sync()
	}
	if err != nil {
		j.f.Close()
		j.f = nil
		return j.lines, err
	}
	j.lines += len(recs)
	return j.lines, nil
}

// rewrite replaces the journal with the records current returns (read
// under the journal's lock, so that no append is lost between), or
// removes it when there are none.
func (j *journal) rewrite(current func() []queued) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	recs := current()
	if j.f != nil {
		j.f.Close()
		j.f = nil
	}
	j.lines = 0
	if len(recs) == 0 {
		err := os.Remove(j.path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err == nil {
			syncDir(j.path)
		}
		return err
	}
	if err := writeDurably(j.path, encodeLines(recs)); err != nil {
		return err
	}
	j.lines = len(recs)
	return nil
}

// load reads the journal; a torn last line (a crash while appending) ends
// it.
func (j *journal) load() ([]queued, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	f, err := os.Open(j.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []queued
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l journalLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l.Key == "" {
			break
		}
		out = append(out, queued{key: l.Key, value: []byte(l.Value), expires: l.Expires, time: l.Time})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %v", j.path, err)
	}
	j.lines = len(out)
	return out, nil
}

func (j *journal) close() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f != nil {
		j.f.Close()
		j.f = nil
	}
}

// writeDurably writes data to path atomically (temp file, fsync, rename,
// fsync of the directory).
func writeDurably(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	syncDir(path)
	return nil
}

// syncDir fsyncs the directory holding path (best effort).
func syncDir(path string) {
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
}

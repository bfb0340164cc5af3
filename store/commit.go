package store

import (
	"fmt"
	"net/netip"
	"os"
	"time"

	"go.uber.org/zap"
)

// The committer goroutine is the only writer: it owns the journal, the
// expiry heap and the index's write side. Callers hand it requests and wait.

type reqKind uint8

const (
	reqGrant reqKind = iota + 1
	reqRevoke
	reqSweep
	reqExec // run fn on the committer (test helpers)
)

type request struct {
	kind    reqKind
	prefix  netip.Prefix
	key     entryKey
	expires int64
	limit   int // a grant's MaxEntries; 0: the store's
	now     int64
	fn      func()

	// Results, written by the committer before done is closed.
	result  GrantResult
	existed bool
	swept   int
	err     error
	done    chan struct{}
}

func (r *request) fail(err error) {
	r.result, r.existed, r.swept, r.err = GrantResult{}, false, 0, err
	close(r.done)
}

// writer is the committer-owned state.
type writer struct {
	journal      *os.File
	journalSize  int64 // bytes of fsynced records in the journal
	writeFailed  bool  // the last journal write failed
	snapshotSize int64
	minCompact   int64 // compact when the journal exceeds max(minCompact, snapshotSize)
	snapshotOK   bool  // the snapshot file exists
	loadDirty    bool  // the loaded data differs from what the snapshot says
	heap         expiryHeap

	// Per-batch planning state.
	overlay map[entryKey]overlayState // the batch's own earlier changes
	delta   int                       // net entries added by the batch so far
	buf     []byte                    // the batch's journal records
	changes []change

	compacting  bool
	compactDone chan compactResult
	oldPending  bool      // .journal.old exists: a compaction must finish
	retryAfter  time.Time // back-off after a failed compaction
}

type overlayState struct {
	exp     int64
	present bool
}

type change struct {
	key entryKey
	ev  Event
}

type compactResult struct {
	size int64
	err  error
}

const (
	maxBatch           = 1024             // requests sharing one write and fsync
	minCompactSize     = 1 << 20          // journal size that always allows compaction
	compactRetryDelay  = 30 * time.Second // after a failed compaction (disk full...)
	heapSlack          = 1024             // stale heap items tolerated beyond 2x live
	maxRetainedScratch = 1 << 20          // batch buffers above this are not kept
)

func (s *Store) commitLoop() {
	defer close(s.committerDone)
	s.maybeCompact() // finish a compaction a crash interrupted
	batch := make([]*request, 0, maxBatch)
	for {
		r, ok := <-s.reqs
		if !ok {
			break
		}
		batch = append(batch[:0], r)
	drain:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		s.commit(batch)
		clear(batch)
	}
	s.shutdown()
}

// commit makes one batch durable with a single write and fsync, then applies
// it to memory, emits its events and wakes its callers.
func (s *Store) commit(batch []*request) {
	s.pollCompaction()
	if s.broken.Load() {
		if err := s.recoverJournal(); err != nil {
			err = fmt.Errorf("store: the journal is unusable after an earlier write failure and rewriting the snapshot failed: %w", err)
			for _, r := range batch {
				r.fail(err)
			}
			return
		}
	}
	w := &s.w
	clear(w.overlay)
	w.delta, w.buf, w.changes = 0, w.buf[:0], w.changes[:0]
	for _, r := range batch {
		s.plan(r)
	}
	if len(w.buf) > 0 {
		if err := s.appendJournal(w.buf); err != nil {
			s.rebuildHeap() // planning popped and pushed items for the failed batch
			if s.broken.Load() {
				// The failed records may be on disk and could not be cut
				// off. Replace the journal with a snapshot of memory (which
				// never saw them) before answering, so that a crash after
				// this answer cannot bring them back. If this fails too,
				// the next batch retries it first; only a crash between a
				// double fault and a successful rewrite can replay them.
				if rerr := s.recoverJournal(); rerr != nil {
					s.log.Error("cannot replace the whitelist journal yet", zap.String("journal", s.journalPath), zap.Error(rerr))
				}
			}
			for _, r := range batch {
				r.fail(err)
			}
			return
		}
	}
	for _, c := range w.changes {
		s.apply(c)
	}
	s.idx.publishProbes()
	for _, r := range batch {
		close(r.done)
	}
	if cap(w.buf) > maxRetainedScratch {
		w.buf = nil
	}
	if cap(w.changes) > maxRetainedScratch/64 {
		w.changes = nil
	}
	if len(w.heap) > 2*s.Len()+heapSlack {
		s.rebuildHeap()
	}
	s.maybeCompact()
}

// current returns k's expiry as seen by the batch being planned.
func (s *Store) current(k entryKey) (int64, bool) {
	if o, ok := s.w.overlay[k]; ok {
		return o.exp, o.present
	}
	return s.idx.get(k)
}

func (s *Store) plan(r *request) {
	switch r.kind {
	case reqGrant:
		prev, had := s.current(r.key)
		if !had {
			limit := r.limit
			if limit == 0 {
				limit = int(s.maxEntries.Load())
			}
			for s.Len()+s.w.delta >= limit {
				// r.key is absent, so any heap item for it is stale and is
				// skipped: the entry being granted is never the victim.
				it, ok := s.w.heap.popLive(s.current)
				if !ok {
					break
				}
				victim := Entry{Prefix: it.key.prefix(), Expires: it.exp}
				s.stage(it.key, Event{Kind: Removed, Entry: victim})
				r.result.Evicted = append(r.result.Evicted, victim)
			}
		}
		ev := Event{Kind: Added, Entry: Entry{Prefix: r.prefix, Expires: r.expires}}
		if had {
			ev.Kind, ev.Previous = Extended, prev
			r.result.Previous = prev
		}
		s.stage(r.key, ev)
		s.w.heap.push(keyExp{r.key, r.expires})
		r.result.Entry = ev.Entry
	case reqRevoke:
		if exp, had := s.current(r.key); had {
			s.stage(r.key, Event{Kind: Removed, Entry: Entry{Prefix: r.prefix, Expires: exp}})
			r.existed = true
		}
	case reqSweep:
		for {
			it, ok := s.w.heap.peekLive(s.current)
			if !ok || it.exp > r.now {
				break
			}
			s.w.heap.pop()
			s.stage(it.key, Event{Kind: Expired, Entry: Entry{Prefix: it.key.prefix(), Expires: it.exp}})
			r.swept++
		}
	case reqExec:
		r.fn()
	}
}

// stage records one planned change: its journal record, its overlay state
// and its event.
func (s *Store) stage(k entryKey, ev Event) {
	w := &s.w
	switch ev.Kind {
	case Added, Extended:
		w.buf = appendRecord(w.buf, opSet, ev.Entry.Prefix, ev.Entry.Expires)
		w.overlay[k] = overlayState{exp: ev.Entry.Expires, present: true}
		if ev.Kind == Added {
			w.delta++
		}
	default:
		w.buf = appendRecord(w.buf, opDelete, ev.Entry.Prefix, 0)
		w.overlay[k] = overlayState{}
		w.delta--
	}
	w.changes = append(w.changes, change{k, ev})
}

func (s *Store) apply(c change) {
	switch c.ev.Kind {
	case Added, Extended:
		if s.idx.set(c.key, c.ev.Entry.Expires) {
			s.count.Add(1)
		}
	default:
		if s.idx.del(c.key) {
			s.count.Add(-1)
		}
	}
	s.subs.emit(c.ev, s.log)
}

// appendJournal writes b and fsyncs. On failure it truncates the journal
// back so that no record of the failed batch can be replayed later; if even
// that fails, the journal is marked broken and will be replaced.
func (s *Store) appendJournal(b []byte) error {
	hooks := s.hooks.Load()
	var err error
	if hooks != nil && hooks.write != nil {
		_, err = hooks.write(s.w.journal, b)
	} else {
		_, err = s.w.journal.Write(b)
	}
	if err == nil {
		s.fsyncs.Add(1)
		err = s.w.journal.Sync()
	}
	if err == nil {
		s.w.journalSize += int64(len(b))
		if s.w.writeFailed { // the disk is back: Check must look again
			s.w.writeFailed = false
			s.probe.stale.Store(true)
		}
		return nil
	}
	s.w.writeFailed = true
	s.probe.stale.Store(true) // Check must look at the disk again
	var terr error
	if hooks != nil && hooks.truncate != nil {
		terr = hooks.truncate(s.w.journal, s.w.journalSize)
	} else {
		terr = s.w.journal.Truncate(s.w.journalSize)
	}
	if terr == nil {
		terr = s.w.journal.Sync()
	}
	if terr != nil {
		s.broken.Store(true)
		s.log.Error("cannot roll back the whitelist journal after a failed write; it will be replaced by a full snapshot on the next write",
			zap.String("journal", s.journalPath), zap.Error(terr))
	}
	return fmt.Errorf("store: writing journal %s: %w", s.journalPath, err)
}

// rebuildHeap recreates the expiry heap from the index, dropping stale items.
func (s *Store) rebuildHeap() {
	h := make(expiryHeap, 0, s.Len())
	s.idx.each(func(k entryKey, exp int64) { h = append(h, keyExp{k, exp}) })
	h.init()
	s.w.heap = h
}

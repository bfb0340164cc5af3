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
	reqRevokeOwner
	reqSweep
	reqExec // run fn on the committer
)

type request struct {
	kind    reqKind
	prefix  netip.Prefix
	key     entryKey
	expires int64
	limit   int // a grant's MaxEntries; 0: the store's
	now     int64

	// A grant's ownership (see GrantOptions).
	owner    string
	client   netip.Addr
	maxOwned int
	mayEvict func(owner string) bool
	scopes   []string // canonical; the committer interns them into key.set
	fn       func()

	// A replicated change (see Change): it is marked Remote in events,
	// bypasses the entry limits and keeps the grant's recorded times.
	remote           bool
	created, renewed int64
	oneSet           bool // reqRevoke: only the entry of scopes
	evicted          bool // reqRevoke: the removal is an eviction made elsewhere

	// Results, written by the committer before done is closed.
	result  GrantResult
	revoked []Entry // reqRevoke, reqRevokeOwner
	swept   int
	err     error
	done    chan struct{}
}

func (r *request) fail(err error) {
	r.result, r.swept, r.revoked, r.err = GrantResult{}, 0, nil, err
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
	own          owners

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
	meta    entryMeta
}

type change struct {
	key  entryKey
	ev   Event
	meta entryMeta
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
			s.rebuildHeaps() // planning popped and pushed items for the failed batch
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
	s.publishProbes()
	for _, r := range batch {
		close(r.done)
	}
	if cap(w.buf) > maxRetainedScratch {
		w.buf = nil
	}
	if cap(w.changes) > maxRetainedScratch/64 {
		w.changes = nil
	}
	if w.own.heapItems() > 2*s.Len()+heapSlack {
		s.rebuildHeaps()
	}
	s.maybeCompact()
}

// current returns k's expiry as seen by the batch being planned.
func (s *Store) current(k entryKey) (int64, bool) {
	if o, ok := s.w.overlay[k]; ok {
		return o.exp, o.present
	}
	return s.indexOf(k).get(k)
}

func (s *Store) plan(r *request) {
	switch r.kind {
	case reqGrant:
		s.planGrant(r)
	case reqRevoke: // every scope set's entry of the prefix, or one
		only, known := s.lookupSet(r.scopes)
		if r.oneSet && !known {
			return
		}
		for id := range s.setTable().sets {
			k := r.key
			k.set = scopeSetID(id)
			if r.oneSet && k.set != only {
				continue
			}
			if exp, had := s.current(k); had {
				e := s.entry(k, exp)
				s.stage(k, Event{Kind: Removed, Entry: e, Remote: r.remote, Evicted: r.evicted}, entryMeta{})
				r.revoked = append(r.revoked, e)
			}
		}
	case reqRevokeOwner:
		id, ok := s.w.own.ids[r.owner]
		if !ok || id == noOwner {
			return
		}
		var keys []entryKey
		for k := range s.w.own.of {
			if _, staged := s.w.overlay[k]; !staged && s.w.own.of[k].owner == id {
				keys = append(keys, k)
			}
		}
		for k, st := range s.w.overlay {
			if st.present && st.meta.owner == id {
				keys = append(keys, k)
			}
		}
		for _, k := range keys {
			if exp, had := s.current(k); had {
				e := s.entry(k, exp)
				s.stage(k, Event{Kind: Removed, Entry: e}, entryMeta{})
				r.revoked = append(r.revoked, e)
			}
		}
	case reqSweep:
		for {
			it, _, ok := s.soonest(nil, nil)
			if !ok || it.exp > r.now {
				break
			}
			s.stage(it.key, Event{Kind: Expired, Entry: s.entry(it.key, it.exp)}, entryMeta{})
			r.swept++
		}
	case reqExec:
		r.fn()
	}
}

// planGrant plans a grant and the evictions it needs, or fails it with
// ErrFull having staged nothing. Victims are chosen (popped from their
// heaps) before anything is staged, and pushed back if the grant fails.
func (s *Store) planGrant(r *request) {
	w := &s.w
	r.key.set = s.internSet(r.scopes)
	prev, had := s.current(r.key)
	id := w.own.intern(r.owner)
	if r.remote && had && prev == r.expires && s.ownerOf(r.key) == id {
		// A replicated grant this store already holds (its own knock
		// coming back, or a second delivery): nothing to write or tell.
		r.result.Entry = s.entry(r.key, prev)
		r.result.Previous = prev
		return
	}
	gains := !had || s.ownerOf(r.key) != id // id holds one entry more afterwards
	var victims []keyExp
	var victimOwners []ownerID
	chosen := map[entryKey]bool{}
	take := func(it keyExp, o ownerID) {
		s.w.own.heaps[o].pop()
		victims, victimOwners = append(victims, it), append(victimOwners, o)
		chosen[it.key] = true
	}
	chosen[r.key] = true // the entry being granted is never the victim
	if gains && r.maxOwned > 0 {
		own := func(o ownerID) bool { return o == id }
		for w.own.held[id]-len(victims) >= r.maxOwned {
			it, o, ok := s.soonest(own, chosen)
			if !ok {
				break
			}
			take(it, o)
		}
	}
	if !had && !r.remote { // a replicated grant was bounded where it was made
		limit := r.limit
		if limit == 0 {
			limit = int(s.maxEntries.Load())
		}
		evictable := func(o ownerID) bool {
			return o == id || r.mayEvict != nil && r.mayEvict(w.own.names[o])
		}
		now := s.now().Unix()
		for s.Len()+w.delta-len(victims) >= limit {
			// An expired entry the sweeper has not removed yet belongs to
			// nobody any more: anyone may take its place.
			it, o, ok := s.soonest(nil, chosen)
			if !ok || it.exp > now {
				it, o, ok = s.soonest(evictable, chosen)
			}
			if !ok {
				for i, v := range victims {
					w.own.heaps[victimOwners[i]].push(v)
				}
				r.err = fmt.Errorf("%w: %d entries (max_entries %d) and none this grant may evict", ErrFull, s.Len()+w.delta, limit)
				return
			}
			take(it, o)
		}
	}
	for _, v := range victims {
		victim := s.entry(v.key, v.exp)
		s.stage(v.key, Event{Kind: Removed, Entry: victim, Evicted: true}, entryMeta{})
		r.result.Evicted = append(r.result.Evicted, victim)
	}
	m := entryMeta{owner: id}
	if id != noOwner {
		now := s.now().Unix()
		m.created, m.renewed = now, now
		if old := s.metaOf(r.key); had && prev > now && old.owner == id && old.created != 0 {
			m.created = old.created // a re-knock renews the grant; an expired one, or another key's, starts anew
		}
		if r.client.IsValid() {
			m.client = r.client.Unmap().As16()
		}
		if r.remote && r.created != 0 {
			m.created, m.renewed = r.created, max(r.renewed, r.created)
		}
	}
	ev := Event{Kind: Added, Entry: Entry{Prefix: r.prefix, Expires: r.expires, Scopes: s.setScopes(r.key.set)}, Remote: r.remote}
	w.own.fill(&ev.Entry, m)
	if had {
		ev.Kind, ev.Previous = Extended, prev
		r.result.Previous = prev
	}
	s.stage(r.key, ev, m)
	w.own.heaps[id].push(keyExp{r.key, r.expires})
	r.result.Entry = ev.Entry
}

// entry is k's entry with expiry exp and its current owner and details.
func (s *Store) entry(k entryKey, exp int64) Entry {
	e := Entry{Prefix: k.prefix(), Expires: exp, Scopes: s.setScopes(k.set)}
	s.w.own.fill(&e, s.metaOf(k))
	return e
}

// stage records one planned change: its journal record, its overlay state,
// the owners' counts and its event. m is the new owner and details of a set.
func (s *Store) stage(k entryKey, ev Event, m entryMeta) {
	owner := m.owner
	w := &s.w
	prevOwner, had := s.ownerOf(k), false
	if _, ok := s.current(k); ok {
		had = true
	}
	if had {
		w.own.held[prevOwner]--
	}
	switch ev.Kind {
	case Added, Extended:
		w.buf = appendRecord(w.buf, opSet, ev.Entry.Prefix, ev.Entry.Expires, ev.Entry.Scopes, w.own.names[owner], m.grantInfo)
		w.overlay[k] = overlayState{exp: ev.Entry.Expires, present: true, meta: m}
		w.own.held[owner]++
		if ev.Kind == Added {
			w.delta++
		}
	default:
		w.buf = appendRecord(w.buf, opDelete, ev.Entry.Prefix, 0, ev.Entry.Scopes, "", grantInfo{})
		w.overlay[k] = overlayState{}
		w.delta--
	}
	w.changes = append(w.changes, change{k, ev, m})
}

func (s *Store) apply(c change) {
	switch c.ev.Kind {
	case Added, Extended:
		if s.indexOf(c.key).set(c.key, c.ev.Entry.Expires) {
			s.count.Add(1)
		}
		s.w.own.setCommitted(c.key, c.meta)
	default:
		if s.indexOf(c.key).del(c.key) {
			s.count.Add(-1)
		}
		s.w.own.setCommitted(c.key, entryMeta{})
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
		began := time.Now()
		err = s.w.journal.Sync()
		if s.observeSync != nil {
			s.observeSync(time.Since(began))
		}
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

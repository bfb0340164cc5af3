package store

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"go.uber.org/zap"
)

// load fills the index from the snapshot and the journals and opens the
// journal for appending. It runs in Open before any goroutine starts. Both
// journals are fully validated before anything on disk is modified.
func (s *Store) load() error {
	now := s.now().Unix()

	st, err := s.loadSnapshot(now)
	if err != nil {
		return err
	}
	if err := s.loadMeta(now); err != nil {
		return err
	}

	// A record setting an expiry that has passed since is applied as a
	// delete: the entry would be dropped as expired anyway.
	expiredRecords := 0
	apply := func(r journalRecord) {
		k := keyOf(r.prefix)
		if r.op == opSet && active(r.exp, now) {
			k.set = s.internSet(r.scopes)
			if s.indexOf(k).set(k, r.exp) {
				s.count.Add(1)
			}
			s.w.own.setCommitted(k, entryMeta{owner: s.w.own.intern(r.owner), grantInfo: r.info})
			return
		}
		if r.op == opSet {
			expiredRecords++
		}
		id, known := s.lookupSet(r.scopes)
		if !known {
			return // no entry of a set never seen
		}
		k.set = id
		if s.indexOf(k).del(k) {
			s.count.Add(-1)
		}
		s.w.own.setCommitted(k, entryMeta{})
	}
	oldScan, err := replayJournal(s.oldJournalPath, apply)
	if err != nil {
		return err
	}
	curScan, err := replayJournal(s.journalPath, apply)
	if err != nil {
		return err
	}
	_, err = os.Lstat(s.oldJournalPath)
	s.w.oldPending = err == nil
	if oldScan.torn {
		// A journal is rotated only after its torn tail was cut off, so this
		// is unexpected; still, an unterminated tail was never acknowledged
		// and is safe to ignore. The file goes with the next compaction.
		s.log.Warn("ignoring torn tail of old whitelist journal", zap.String("journal", s.oldJournalPath), zap.Int("line", oldScan.tornLine))
	}

	if s.w.journal, err = openJournalFile(s.journalPath); err != nil {
		return fmt.Errorf("store: opening journal: %w", err)
	}
	if curScan.torn {
		s.log.Warn("cutting off torn tail of whitelist journal (left by a crash during a write)",
			zap.String("journal", s.journalPath), zap.Int("line", curScan.tornLine), zap.Int64("offset", curScan.validLen))
		if err := s.w.journal.Truncate(curScan.validLen); err != nil {
			return fmt.Errorf("store: truncating torn journal %s: %w", s.journalPath, err)
		}
		if err := s.w.journal.Sync(); err != nil {
			return fmt.Errorf("store: truncating torn journal %s: %w", s.journalPath, err)
		}
	}
	s.w.journalSize = curScan.validLen
	if err := syncDir(s.dir); err != nil { // the journal may have just been created
		return fmt.Errorf("store: %w", err)
	}

	s.w.loadDirty = st.rewritten+st.expired+st.unsupported+st.duplicates > 0 || oldScan.records+curScan.records > 0
	s.rebuildHeaps()
	if err := s.trimToLimit(); err != nil {
		return err
	}
	s.publishProbes()
	s.removeStaleTemps() // only now: a corrupt store is left exactly as found
	if st.read > 0 || curScan.records > 0 || oldScan.records > 0 {
		s.log.Info("whitelist loaded",
			zap.Int("entries", s.Len()), zap.Int("snapshot_keys", st.read), zap.Int("journal_records", oldScan.records+curScan.records),
			zap.Int("expired_dropped", st.expired+expiredRecords), zap.Int("keys_rewritten", st.rewritten), zap.Int("unsupported_keys_skipped", st.unsupported))
	}
	return nil
}

// trimToLimit keeps the latest-expiring MaxEntries entries. The removals are
// journaled, so the dropped entries cannot come back from the snapshot.
func (s *Store) trimToLimit() error {
	limit := int(s.maxEntries.Load())
	before := s.Len()
	if before <= limit {
		return nil
	}
	var buf []byte
	var victims []entryKey
	for n := before; n > limit; n-- {
		it, o, ok := s.soonest(nil, nil)
		if !ok {
			break
		}
		s.w.own.heaps[o].pop()
		buf = appendRecord(buf, opDelete, it.key.prefix(), 0, s.setScopes(it.key.set), "", grantInfo{})
		victims = append(victims, it.key)
	}
	if err := s.appendJournal(buf); err != nil {
		return err
	}
	for _, k := range victims {
		if s.indexOf(k).del(k) {
			s.count.Add(-1)
		}
		s.w.own.setCommitted(k, entryMeta{})
	}
	s.rebuildHeaps()
	s.w.loadDirty = true
	s.log.Warn("whitelist holds more entries than max_entries; dropped the soonest-expiring ones",
		zap.Int("loaded", before), zap.Int("kept", s.Len()), zap.Int("dropped", len(victims)), zap.Int("max_entries", limit))
	return nil
}

type snapshotStats struct{ read, rewritten, expired, unsupported, duplicates int }

// loadSnapshot reads the snapshot into the index, dropping expired entries
// and keeping the later expiry of duplicate keys. Parsing and index inserts
// run as a two-stage pipeline, which roughly halves the time to load a
// large file on a multi-core machine.
func (s *Store) loadSnapshot(now int64) (snapshotStats, error) {
	var st snapshotStats
	f, err := os.Open(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("store: opening %s: %w", s.path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return st, fmt.Errorf("store: opening %s: %w", s.path, err)
	}
	s.w.snapshotSize, s.w.snapshotOK = fi.Size(), true

	const batchSize = 4096
	batches := make(chan []keyExp, 4)
	free := make(chan []keyExp, 4)
	inserted := make(chan int) // duplicates seen by the inserter
	go func() {
		dups := 0
		for b := range batches {
			for _, r := range b {
				had, added := s.idx.setLater(r.key, r.exp)
				if had {
					dups++
				}
				if added {
					s.count.Add(1)
				}
			}
			select {
			case free <- b[:0]:
			default:
			}
		}
		inserted <- dups
	}()

	batch := make([]keyExp, 0, batchSize)
	var scratch []byte
	err = decodeSnapshot(f,
		func(key string, p netip.Prefix, exp int64) {
			st.read++
			if !canonicalKey(key, p, &scratch) {
				st.rewritten++
			}
			if !active(exp, now) {
				st.expired++
				return
			}
			batch = append(batch, keyExp{keyOf(p), exp})
			if len(batch) == batchSize {
				batches <- batch
				select {
				case batch = <-free:
				default:
					batch = make([]keyExp, 0, batchSize)
				}
			}
		},
		func(key string, err error) {
			st.unsupported++
			s.log.Warn("skipping an unsupported whitelist entry", zap.String("key", key), zap.String("reason", err.Error()))
		})
	batches <- batch
	close(batches)
	st.duplicates = <-inserted
	if err != nil {
		return st, &CorruptionError{File: s.path, Err: err}
	}
	return st, nil
}

// canonicalKey reports whether key is already written the canonical way.
// A bare IPv4 address always is (netip rejects other spellings), which
// spares formatting most keys of a large file again.
func canonicalKey(key string, p netip.Prefix, scratch *[]byte) bool {
	if strings.IndexByte(key, '/') < 0 && strings.IndexByte(key, ':') < 0 {
		return true
	}
	*scratch = appendPrefix((*scratch)[:0], p)
	return string(*scratch) == key
}

// active reports whether an entry with expiry exp still authorizes at now.
// Stored expiries are always positive (zero marks empty index slots).
func active(exp, now int64) bool { return exp > now && exp > 0 }

package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"
)

// Snapshots and journal maintenance, all driven by the committer goroutine:
// background compaction, replacement of a broken journal, and the final
// snapshot on Close.

// recoverJournal replaces a broken journal: it writes a full snapshot from
// memory (which holds exactly the committed state) and then starts a fresh
// journal under a new inode, so the failed batch's records are gone.
func (s *Store) recoverJournal() error {
	s.waitCompaction()
	size, err := s.writeSnapshot(s.capture(s.now().Unix()))
	if err != nil {
		return err
	}
	f, err := s.freshJournal()
	if err != nil {
		return err
	}
	s.w.journal.Close()
	s.w.journal, s.w.journalSize = f, 0
	s.w.snapshotSize, s.w.snapshotOK, s.w.oldPending = size, true, false
	s.broken.Store(false)
	s.log.Warn("whitelist journal replaced by a full snapshot after an earlier write failure")
	return nil
}

// freshJournal atomically replaces the journal with an empty file and
// removes .journal.old (both are contained in a snapshot just written).
func (s *Store) freshJournal() (*os.File, error) {
	tmp, err := os.CreateTemp(s.dir, filepath.Base(s.path)+tempSuffix+"*")
	if err != nil {
		return nil, fmt.Errorf("store: creating journal: %w", err)
	}
	name := tmp.Name()
	err = tmp.Sync()
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name, s.journalPath)
	}
	if err != nil {
		os.Remove(name)
		return nil, fmt.Errorf("store: creating journal: %w", err)
	}
	if err := os.Remove(s.oldJournalPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("store: removing old journal: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		return nil, fmt.Errorf("store: creating journal: %w", err)
	}
	f, err := openJournalFile(s.journalPath)
	if err != nil {
		return nil, fmt.Errorf("store: opening journal: %w", err)
	}
	return f, nil
}

// capture copies the entries active at now, their owners and scopes, for
// a snapshot.
func (s *Store) capture(now int64) captured {
	c := captured{entries: make([]keyExp, 0, s.Len())}
	s.eachEntry(func(k entryKey, exp int64) {
		if now >= exp {
			return
		}
		m := s.w.own.of[k]
		if k.set == fullAccess {
			c.entries = append(c.entries, keyExp{k, exp})
			if m.owner == noOwner {
				return
			}
		}
		c.meta = append(c.meta, metaEntry{k, exp, s.setScopes(k.set), s.w.own.names[m.owner], m.grantInfo})
	})
	return c
}

// writeSnapshot writes the metadata file and then the snapshot of c (see
// meta.go for why in this order) and returns their size.
func (s *Store) writeSnapshot(c captured) (int64, error) {
	if h := s.hooks.Load(); h != nil && h.snapshot != nil {
		if err := h.snapshot(); err != nil {
			return 0, fmt.Errorf("store: writing snapshot %s: %w", s.path, err)
		}
	}
	m, err := writeMeta(s.path+metaSuffix, c.meta)
	if err != nil {
		return 0, err
	}
	n, err := writeSnapshot(s.path, c.entries)
	if err != nil {
		return 0, err
	}
	return m + n, nil
}

// maybeCompact starts a background compaction when the journal has outgrown
// max(1 MiB, last snapshot size), or when an earlier one did not finish.
//
// Rotation renames .journal to .journal.old and starts a fresh .journal; the
// entries are captured at that instant, so the new snapshot equals the
// snapshot plus .journal.old. Until the snapshot is in place and
// .journal.old removed, Open replays the old snapshot, .journal.old and
// .journal. Afterwards a crash may still leave .journal.old next to the new
// snapshot; replaying it again is harmless because journal records are
// absolute (set/delete), and every later change is in .journal, replayed
// after it. The same argument covers a retried compaction, which captures
// entries without rotating: its snapshot already contains part of .journal,
// which is then replayed over it.
func (s *Store) maybeCompact() {
	w := &s.w
	if w.compacting || s.broken.Load() || time.Now().Before(w.retryAfter) {
		return
	}
	if !w.oldPending {
		if w.journalSize <= max(w.minCompact, w.snapshotSize) {
			return
		}
		if err := s.rotateJournal(); err != nil {
			s.log.Error("rotating the whitelist journal failed", zap.Error(err))
			w.retryAfter = time.Now().Add(compactRetryDelay)
			return
		}
	}
	recs := s.capture(s.now().Unix())
	w.compacting = true
	go func() {
		size, err := s.writeSnapshot(recs)
		if err == nil {
			if err = os.Remove(s.oldJournalPath); errors.Is(err, os.ErrNotExist) {
				err = nil
			}
			if err == nil {
				err = syncDir(s.dir)
			}
		}
		s.w.compactDone <- compactResult{size, err}
	}()
}

func (s *Store) rotateJournal() error {
	if err := os.Rename(s.journalPath, s.oldJournalPath); err != nil {
		return err
	}
	f, err := openJournalFile(s.journalPath)
	if err == nil {
		if err = syncDir(s.dir); err != nil {
			f.Close()
		}
	}
	if err != nil {
		// Everything committed is in .journal.old, which Open replays, but
		// there is no usable fresh journal: have the next batch write a
		// full snapshot and start over.
		s.broken.Store(true)
		return err
	}
	s.w.journal.Close()
	s.w.journal, s.w.journalSize, s.w.oldPending = f, 0, true
	return nil
}

func (s *Store) pollCompaction() {
	if !s.w.compacting {
		return
	}
	select {
	case r := <-s.w.compactDone:
		s.compactionDone(r)
	default:
	}
}

func (s *Store) waitCompaction() {
	if s.w.compacting {
		s.compactionDone(<-s.w.compactDone)
	}
}

func (s *Store) compactionDone(r compactResult) {
	s.w.compacting = false
	if r.err != nil {
		s.log.Error("whitelist compaction failed; will retry", zap.Error(r.err))
		s.w.retryAfter = time.Now().Add(compactRetryDelay)
		return
	}
	s.w.oldPending, s.w.snapshotSize, s.w.snapshotOK = false, r.size, true
}

// shutdown runs when Close has closed reqs and every request is committed:
// it writes the final snapshot and removes the journals.
func (s *Store) shutdown() {
	s.waitCompaction()
	w := &s.w
	defer w.journal.Close()
	if s.crashed.Load() {
		return
	}
	if s.broken.Load() || w.oldPending || w.journalSize > 0 || w.loadDirty || !w.snapshotOK {
		if _, err := s.writeSnapshot(s.capture(s.now().Unix())); err != nil {
			s.closeErr = err
			s.log.Error("writing the final whitelist snapshot failed; the journal is kept", zap.Error(err))
			return
		}
	}
	for _, p := range []string{s.journalPath, s.oldJournalPath} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) && s.closeErr == nil {
			s.closeErr = fmt.Errorf("store: removing journal: %w", err)
		}
	}
	if err := syncDir(s.dir); err != nil && s.closeErr == nil {
		s.closeErr = fmt.Errorf("store: %w", err)
	}
}

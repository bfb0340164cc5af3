package store

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Grant metadata lives beside the snapshot, in Path+".meta", so that the
// snapshot stays the Python service's whitelist.json, which its loader (and
// any other reader of that format) can still import. The file is a JSON
// object from canonical entry keys to their metadata:
//
//	{
//	  "203.0.113.7": {"key": "phone"}
//	}
//
// Only entries with an owner appear. It is written, atomically, before the
// snapshot of the same capture: a crash between the two leaves the journal
// (which carries the owners too) in place, so replaying it restores every
// owner the older snapshot lacks. Entries it names that the snapshot does not
// hold are ignored.

const metaSuffix = ".meta"

type metaRecord struct {
	Key *string `json:"key"`
}

// ownedEntry is an entry's owner, captured for the metadata file.
type ownedEntry struct {
	key   entryKey
	owner string
}

// captured is what a snapshot writes: the entries and their owners.
type captured struct {
	entries []keyExp
	owned   []ownedEntry
}

// writeMeta atomically replaces path with the metadata of owned.
func writeMeta(path string, owned []ownedEntry) error {
	recs := make(map[string]metaRecord, len(owned))
	for _, o := range owned {
		recs[FormatPrefix(o.key.prefix())] = metaRecord{Key: &o.owner}
	}
	data, err := json.MarshalIndent(recs, "", "  ") // sorted keys
	if err != nil {
		return fmt.Errorf("store: writing metadata %s: %w", path, err)
	}
	if _, err := writeFileAtomic(path, func(w *bufio.Writer) int64 {
		n, _ := w.Write(data)
		return int64(n)
	}); err != nil {
		return fmt.Errorf("store: writing metadata: %w", err)
	}
	return nil
}

// loadMeta sets the owners the metadata file records for entries the index
// holds. A missing file records none.
func (s *Store) loadMeta() error {
	path := s.path + metaSuffix
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: reading metadata: %w", err)
	}
	var recs map[string]metaRecord
	if err := json.Unmarshal(data, &recs); err != nil {
		return fmt.Errorf("%w: metadata %s: %v", ErrCorrupt, path, err)
	}
	keys := make([]string, 0, len(recs))
	for k := range recs {
		keys = append(keys, k)
	}
	slices.Sort(keys) // interning order, and so the first bad key reported, stay the same from run to run
	for _, key := range keys {
		rec := recs[key]
		if rec.Key == nil || *rec.Key == "" {
			continue
		}
		if err := checkOwnerName(*rec.Key); err != nil {
			return fmt.Errorf("%w: metadata %s: entry %q: %v", ErrCorrupt, path, key, err)
		}
		p, err := ParseEntryKey(key)
		if err != nil {
			if errors.Is(err, errUnsupportedKey) {
				continue // skipped in the snapshot too
			}
			return fmt.Errorf("%w: metadata %s: entry %q: %v", ErrCorrupt, path, key, err)
		}
		k := keyOf(p)
		if _, ok := s.idx.get(k); ok {
			s.w.own.setCommitted(k, s.w.own.intern(*rec.Key))
		}
	}
	return nil
}

// writeFileAtomic replaces path with what fill writes: a temporary file in
// the same directory (named with tempSuffix, so Open removes a leftover),
// fsynced, renamed over path, and the directory fsynced. A crash at any
// point leaves either the old or the new file, never a partial one. It
// returns fill's byte count.
func writeFileAtomic(path string, fill func(*bufio.Writer) int64) (int64, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, base+tempSuffix+"*")
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	fail := func(err error) (int64, error) {
		f.Close()
		os.Remove(tmp)
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	w := bufio.NewWriterSize(f, 1<<18)
	n := fill(w)
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// isTempOf reports whether name is a temporary file of the snapshot or the
// metadata file of base.
func isTempOf(name, base string) bool {
	return strings.HasPrefix(name, base+tempSuffix) || strings.HasPrefix(name, base+metaSuffix+tempSuffix)
}

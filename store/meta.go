package store

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Grant metadata lives beside the snapshot, in Path+".meta", so that the
// snapshot stays the Python service's whitelist.json, which its loader (and
// any other reader of that format) can still import. After a header line,
// each line names an entry and its metadata as name=value fields, values
// Go-quoted:
//
//	knocker grant metadata v1
//	203.0.113.7 key="phone"
//
// Only entries with an owner appear; lines are written and read as a
// stream, so a million owned grants cost no large temporary structures. It
// is written, atomically, before the snapshot of the same capture: a crash
// between the two leaves the journal (which carries the owners too) in
// place, so replaying it restores every owner the older snapshot lacks.
// Entries it names that the snapshot does not hold are ignored.

const (
	metaSuffix = ".meta"
	metaHeader = "knocker grant metadata v1"
)

// ownedEntry is an entry's owner and details, captured for the metadata
// file.
type ownedEntry struct {
	key   entryKey
	owner string
	info  grantInfo
}

// captured is what a snapshot writes: the entries and their owners.
type captured struct {
	entries []keyExp
	owned   []ownedEntry
}

// writeMeta atomically replaces path with the metadata of owned.
func writeMeta(path string, owned []ownedEntry) error {
	if _, err := writeFileAtomic(path, func(w *bufio.Writer) int64 {
		var line []byte
		n, _ := w.WriteString(metaHeader + "\n")
		total := int64(n)
		for _, o := range owned {
			line = appendPrefix(line[:0], o.key.prefix())
			line = append(line, " key="...)
			line = strconv.AppendQuoteToASCII(line, o.owner)
			line = appendInfo(line, o.info)
			line = append(line, '\n')
			n, _ := w.Write(line)
			total += int64(n)
		}
		return total
	}); err != nil {
		return fmt.Errorf("store: writing metadata: %w", err)
	}
	return nil
}

// loadMeta sets the owners the metadata file records for entries the index
// holds. A missing file records none.
func (s *Store) loadMeta() error {
	path := s.path + metaSuffix
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: reading metadata: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<10)
	corrupt := func(line int, format string, args ...any) error {
		return &CorruptionError{File: path, Kind: "metadata", Line: line, Err: fmt.Errorf(format, args...)}
	}
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if line == 1 {
			if text != metaHeader {
				return corrupt(line, "not a grant metadata file (want the header %q)", metaHeader)
			}
			continue
		}
		key, fields, ok := strings.Cut(text, " ")
		owner, rest, err := metaOwner(fields)
		var info grantInfo
		if err == nil {
			info, err = parseInfo(rest)
		}
		if !ok || err != nil {
			return corrupt(line, "want <entry> key=\"<name>\" [<name>=<value>...]: %v", err)
		}
		p, err := ParseEntryKey(key)
		if err != nil {
			if errors.Is(err, errUnsupportedKey) {
				continue // skipped in the snapshot too
			}
			return corrupt(line, "entry %q: %v", key, err)
		}
		k := keyOf(p)
		if _, ok := s.idx.get(k); ok {
			s.w.own.setCommitted(k, entryMeta{owner: s.w.own.intern(owner), grantInfo: info})
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("store: reading metadata %s: %w", path, err)
	}
	return nil
}

// metaOwner parses a metadata line's first field, key="<name>", and
// returns the fields after it.
func metaOwner(fields string) (owner, rest string, err error) {
	v, ok := strings.CutPrefix(fields, "key=")
	if !ok {
		return "", "", errors.New("no key= field")
	}
	q, err := strconv.QuotedPrefix(v)
	if err != nil || len(q) < len(v) && v[len(q)] != ' ' {
		return "", "", errors.New("key= must be one quoted string")
	}
	owner, _ = strconv.Unquote(q)
	if owner == "" {
		return "", "", errors.New("empty key name")
	}
	return owner, strings.TrimPrefix(v[len(q):], " "), CheckOwnerName(owner)
}

// A grant's details follow its owner, in the journal and the metadata
// file alike, as space-separated fields, each absent when unknown:
//
//	created=<unix seconds> renewed=<unix seconds> client=<address>
//
// Unknown field names are refused, not skipped: a file written by a newer
// version must not be half-read.

// appendInfo appends g's fields, each with a leading space.
func appendInfo(dst []byte, g grantInfo) []byte {
	if g.created != 0 {
		dst = append(dst, " created="...)
		dst = strconv.AppendInt(dst, g.created, 10)
	}
	if g.renewed != 0 {
		dst = append(dst, " renewed="...)
		dst = strconv.AppendInt(dst, g.renewed, 10)
	}
	if c := g.clientAddr(); c.IsValid() {
		dst = append(dst, " client="...)
		dst = c.AppendTo(dst)
	}
	return dst
}

// parseInfo parses the fields appendInfo writes.
func parseInfo(fields string) (grantInfo, error) {
	var g grantInfo
	seen := map[string]bool{}
	for f := range strings.FieldsSeq(fields) {
		name, value, _ := strings.Cut(f, "=")
		if seen[name] {
			return g, fmt.Errorf("field %q given twice", name)
		}
		seen[name] = true
		var err error
		switch name {
		case "created":
			g.created, err = strconv.ParseInt(value, 10, 64)
		case "renewed":
			g.renewed, err = strconv.ParseInt(value, 10, 64)
		case "client":
			var a netip.Addr
			if a, err = netip.ParseAddr(value); err == nil && a.Zone() == "" {
				g.client = a.Unmap().As16()
			} else if err == nil {
				err = errors.New("zoned")
			}
		default:
			return g, fmt.Errorf("unknown field %q", f)
		}
		if err != nil || g.created < 0 || g.renewed < 0 {
			return g, fmt.Errorf("bad field %q", f)
		}
	}
	return g, nil
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

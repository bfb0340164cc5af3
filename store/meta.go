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
// each line names an entry and its metadata as name=value fields, the key
// name Go-quoted:
//
//	knocker grant metadata v1
//	203.0.113.7 key="phone" created=1767225000 renewed=1767225000 client=198.51.100.9
//	203.0.113.7 key="guest" scopes=games,media expires=1767225600 created=1767225000
//
// in this order: key= (the owner), then, for an entry limited to scopes,
// scopes= and expires=, then the grant's details (see appendInfo); a line
// has key=, scopes= or both. A line without scopes= describes the
// full-access entry of the snapshot; entries it names that the snapshot
// does not hold are ignored. A line with scopes= is itself the scoped
// entry: the snapshot holds only full-access entries, so that a reader of
// the original format (the Python service, when migrating back) drops
// scoped entries instead of turning them into full ones.
//
// Only owned and scoped entries appear; lines are written and read as a
// stream, so a million owned grants cost no large temporary structures. It
// is written, atomically, before the snapshot of the same capture: a crash
// between the two leaves the journal (which carries owners and scoped
// entries too) in place, and replaying it over the newer metadata and the
// older snapshot restores every entry: journal records are absolute, so
// replaying the records that led to the metadata's state over that state
// leaves it unchanged.

const (
	metaSuffix = ".meta"
	metaHeader = "knocker grant metadata v1"
)

// metaEntry is an entry of the metadata file: an owned entry (scoped or
// not) or a scoped one without owner.
type metaEntry struct {
	key    entryKey
	exp    int64    // written for scoped entries only
	scopes []string // nil: full access
	owner  string
	info   grantInfo
}

// captured is what a snapshot writes: the full-access entries (the
// snapshot) and the metadata file's entries.
type captured struct {
	entries []keyExp
	meta    []metaEntry
}

// writeMeta atomically replaces path with the metadata of entries and
// returns its size.
func writeMeta(path string, entries []metaEntry) (int64, error) {
	n, err := writeFileAtomic(path, func(w *bufio.Writer) int64 {
		var line []byte
		n, _ := w.WriteString(metaHeader + "\n")
		total := int64(n)
		for _, m := range entries {
			line = appendPrefix(line[:0], m.key.prefix())
			if m.owner != "" {
				line = append(line, " key="...)
				line = strconv.AppendQuoteToASCII(line, m.owner)
			}
			if m.scopes != nil {
				line = appendScopes(line, m.scopes)
				line = append(line, " expires="...)
				line = strconv.AppendInt(line, m.exp, 10)
			}
			line = appendInfo(line, m.info)
			line = append(line, '\n')
			n, _ := w.Write(line)
			total += int64(n)
		}
		return total
	})
	if err != nil {
		return 0, fmt.Errorf("store: writing metadata: %w", err)
	}
	return n, nil
}

// loadMeta sets the owners the metadata file records for full-access
// entries the index holds and restores the scoped entries it holds that
// are active at now. A missing file records none.
func (s *Store) loadMeta(now int64) error {
	path := s.path + metaSuffix
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: reading metadata: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil {
		s.w.snapshotSize += fi.Size() // rewritten with the snapshot
	}
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
		m, err := parseMetaFields(fields)
		if !ok || err != nil {
			return corrupt(line, "want <entry> [key=\"<name>\"] [scopes=<set> expires=<unix time>] [<name>=<value>...]: %v", err)
		}
		p, err := ParseEntryKey(key)
		if err != nil {
			if errors.Is(err, errUnsupportedKey) {
				continue // skipped in the snapshot too
			}
			return corrupt(line, "entry %q: %v", key, err)
		}
		k := keyOf(p)
		if m.scopes == nil {
			if _, ok := s.idx.get(k); ok {
				s.w.own.setCommitted(k, entryMeta{owner: s.w.own.intern(m.owner), grantInfo: m.info})
			}
			continue
		}
		if !active(m.exp, now) {
			s.w.loadDirty = true
			continue
		}
		k.set = s.internSet(m.scopes)
		if s.indexOf(k).set(k, m.exp) {
			s.count.Add(1)
		}
		s.w.own.setCommitted(k, entryMeta{owner: s.w.own.intern(m.owner), grantInfo: m.info})
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("store: reading metadata %s: %w", path, err)
	}
	return nil
}

// parseMetaFields parses the fields of a metadata line after its entry.
func parseMetaFields(fields string) (metaEntry, error) {
	var m metaEntry
	var err error
	if strings.HasPrefix(fields, "key=") {
		if m.owner, fields, err = metaOwner(fields); err != nil {
			return m, err
		}
	}
	if m.scopes, fields, err = cutScopes(fields); err != nil {
		return m, err
	}
	if m.scopes != nil {
		v, rest, _ := strings.Cut(fields, " ")
		exp, ok := strings.CutPrefix(v, "expires=")
		if m.exp, err = strconv.ParseInt(exp, 10, 64); !ok || err != nil || m.exp <= 0 {
			return m, errors.New("scopes= must be followed by expires=<unix time>")
		}
		fields = rest
	}
	if m.owner == "" && m.scopes == nil {
		return m, errors.New("neither key= nor scopes=")
	}
	m.info, err = parseInfo(fields)
	return m, err
}

// metaOwner parses a metadata line's field key="<name>" and returns the
// fields after it.
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

// A grant's details follow its owner (and scopes), in the journal and the metadata
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

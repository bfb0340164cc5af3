package store

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Access scopes: a grant may be limited to scopes (GrantOptions.Scopes);
// a grant without scopes is a full-access grant. A grant is identified by
// its prefix and its scope set, so one address may hold a full grant and
// grants of several sets at once, each with its own expiry and owner.
//
// Scope sets are interned committer-side as small ids, like owner names;
// id 0 is the empty set (full access). Each set has its own index, so the
// full-access index, the only one Allowed reads, stays exactly what it was
// without scopes. A published table maps every scope name to the indexes of
// the sets containing it, for AllowedIn; it is replaced, never changed, when
// a set is interned.

type scopeSetID uint32

const fullAccess scopeSetID = 0

const (
	maxScopes    = 16 // per set
	maxScopeName = 32
)

// CheckScopes validates scope names and returns them as a canonical set:
// sorted, without duplicates, nil for none (full access). A name is 1 to
// 32 lower-case letters, digits, '_' and '-', starting with a letter or a
// digit; a set holds at most 16 names. The error wraps ErrInvalid and
// names the bad scope. scopes itself is not modified.
func CheckScopes(scopes []string) ([]string, error) {
	if len(scopes) == 0 {
		return nil, nil
	}
	for _, sc := range scopes {
		switch {
		case len(sc) > maxScopeName:
			return nil, scopeError(fmt.Sprintf("%q is not a scope name: longer than %d characters", sc, maxScopeName))
		case !validScope(sc):
			return nil, scopeError(fmt.Sprintf("%q is not a scope name: use lowercase letters, digits, '_' and '-', starting with a letter or digit", sc))
		}
	}
	set := slices.Compact(slices.Sorted(slices.Values(scopes)))
	if len(set) > maxScopes {
		return nil, scopeError(fmt.Sprintf("%d scopes, at most %d allowed", len(set), maxScopes))
	}
	return slices.Clip(set), nil
}

// scopeError is a CheckScopes error: it wraps ErrInvalid but reads as the
// reason alone, since config errors quote it.
type scopeError string

func (e scopeError) Error() string { return string(e) }
func (e scopeError) Unwrap() error { return ErrInvalid }

func validScope(sc string) bool {
	if len(sc) == 0 || len(sc) > maxScopeName {
		return false
	}
	for i := range len(sc) {
		switch c := sc[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// parseScopeList parses the canonical comma-separated form written to the
// journal and the metadata file. Anything else, even a set that would
// canonicalise, is refused: these files are only written canonically.
func parseScopeList(v string) ([]string, error) {
	list := strings.Split(v, ",")
	set, err := CheckScopes(list)
	if err != nil || len(set) != len(list) || !slices.Equal(set, list) {
		return nil, fmt.Errorf("bad scopes %q: want a sorted list of distinct scope names", v)
	}
	return set, nil
}

// appendScopes appends " scopes=<set>" for a non-empty set.
func appendScopes(dst []byte, scopes []string) []byte {
	for i, sc := range scopes {
		if i == 0 {
			dst = append(dst, " scopes="...)
		} else {
			dst = append(dst, ',')
		}
		dst = append(dst, sc...)
	}
	return dst
}

// cutScopes parses a leading "scopes=<set>" field of fields, if there is
// one, and returns the fields after it.
func cutScopes(fields string) (scopes []string, rest string, err error) {
	v, ok := strings.CutPrefix(fields, "scopes=")
	if !ok {
		return nil, fields, nil
	}
	v, rest, _ = strings.Cut(v, " ")
	scopes, err = parseScopeList(v)
	return scopes, rest, err
}

// scopeTable is the readers' view of the scope sets; immutable once
// published.
type scopeTable struct {
	sets   [][]string          // by id; sets[0] == nil
	idx    []*index            // by id; idx[0] is the store's full-access index
	byName map[string][]*index // scope name -> the indexes of the sets containing it
}

// scopeSets is the writer side: interning by the set's text.
type scopeSets struct {
	ids map[string]scopeSetID // "a,b" -> id
}

// setTable returns the published table.
func (s *Store) setTable() *scopeTable { return s.scoped.Load() }

// initScopes publishes the table holding only the full-access set.
func (s *Store) initScopes() {
	s.sets.ids = map[string]scopeSetID{"": fullAccess}
	s.scoped.Store(&scopeTable{sets: [][]string{nil}, idx: []*index{&s.idx}, byName: map[string][]*index{}})
}

// lookupSet returns the id of the canonical set scopes, if interned.
func (s *Store) lookupSet(scopes []string) (scopeSetID, bool) {
	if len(scopes) == 0 {
		return fullAccess, true
	}
	id, ok := s.sets.ids[strings.Join(scopes, ",")]
	return id, ok
}

// internSet returns the id of the canonical set scopes, adding it (and its
// index) if new. Writer-only.
func (s *Store) internSet(scopes []string) scopeSetID {
	if id, ok := s.lookupSet(scopes); ok {
		return id
	}
	old := s.setTable()
	id := scopeSetID(len(old.sets))
	x := &index{seed: s.idx.seed, scopeSet: id}
	t := &scopeTable{
		sets:   append(slices.Clip(old.sets), scopes),
		idx:    append(slices.Clip(old.idx), x),
		byName: maps.Clone(old.byName),
	}
	for _, sc := range scopes {
		t.byName[sc] = append(slices.Clip(t.byName[sc]), x)
	}
	s.sets.ids[strings.Join(scopes, ",")] = id
	s.scoped.Store(t)
	return id
}

// setScopes returns the scopes of set id (nil for full access).
func (s *Store) setScopes(id scopeSetID) []string { return s.setTable().sets[id] }

// indexOf returns the index holding k: its set's.
func (s *Store) indexOf(k entryKey) *index { return s.setTable().idx[k.set] }

// publishProbes republishes the probe lists of every set (index.publishProbes).
// Writer-only.
func (s *Store) publishProbes() {
	for _, x := range s.setTable().idx {
		x.publishProbes()
	}
}

// eachEntry calls fn for every stored entry of every set, expired or not
// (see index.each).
func (s *Store) eachEntry(fn func(k entryKey, exp int64)) {
	for _, x := range s.setTable().idx {
		x.each(fn)
	}
}

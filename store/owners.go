package store

import (
	"fmt"
	"net/netip"
	"unicode/utf8"
)

// Ownership: every entry may name who made it (GrantOptions.Owner). The
// committer keeps, per owner, an expiry heap of its entries (so that a grant
// evicts the soonest-expiring entry among those it may evict without
// scanning others) and a count (for MaxOwned). Owner names are interned as
// small ids; id 0 is "", the unknown owner of entries loaded from the Python
// service's whitelist.json. Entries of owner 0 are not in the owner map, so
// a whitelist of such entries costs no memory for ownership.

type ownerID uint32

const noOwner ownerID = 0

// maxOwnerName bounds an owner name (key names are short; a bound keeps a
// journal record a line a human can read).
const maxOwnerName = 256

// CheckOwnerName reports why name cannot own entries: it must be valid
// UTF-8 of at most 256 bytes.
func CheckOwnerName(name string) error {
	if len(name) > maxOwnerName || !utf8.ValidString(name) {
		return fmt.Errorf("%w: owner name must be valid UTF-8 of at most %d bytes", ErrInvalid, maxOwnerName)
	}
	return nil
}

// owners is the committer-owned ownership state.
type owners struct {
	ids   map[string]ownerID
	names []string // by id; names[0] == ""
	// of holds the committed owner and grant details of every entry with
	// an owner.
	of map[entryKey]entryMeta
	// heaps[id] holds id's entries by expiry (lazy deletion, see heap.go).
	heaps []expiryHeap
	// held[id] counts id's entries, including the changes the batch being
	// planned has staged; rebuild restores it from committed state.
	held []int
}

func (o *owners) init() {
	o.ids = map[string]ownerID{"": noOwner}
	o.names = []string{""}
	o.of = make(map[entryKey]entryMeta)
	o.heaps = []expiryHeap{nil}
	o.held = []int{0}
}

// intern returns name's id, adding it if new.
func (o *owners) intern(name string) ownerID {
	if id, ok := o.ids[name]; ok {
		return id
	}
	id := ownerID(len(o.names))
	o.ids[name] = id
	o.names = append(o.names, name)
	o.heaps = append(o.heaps, nil)
	o.held = append(o.held, 0)
	return id
}

// entryMeta is an owned entry's owner and grant details.
type entryMeta struct {
	owner ownerID
	grantInfo
}

// grantInfo says when and by whom a grant was made: unix seconds and the
// client's address in 16-byte form, zero when unknown. Only grants with
// an owner (knocks) record it.
type grantInfo struct {
	created, renewed int64
	client           [16]byte
}

func (g grantInfo) clientAddr() netip.Addr {
	if g.client == ([16]byte{}) {
		return netip.Addr{}
	}
	return netip.AddrFrom16(g.client).Unmap()
}

func infoOf(e Entry) grantInfo {
	g := grantInfo{created: e.Created, renewed: e.Renewed}
	if e.Client.IsValid() {
		g.client = e.Client.As16()
	}
	return g
}

// fill sets e's owner and grant details from m.
func (o *owners) fill(e *Entry, m entryMeta) {
	e.Owner = o.names[m.owner]
	e.Created, e.Renewed, e.Client = m.created, m.renewed, m.clientAddr()
}

// setCommitted records k's committed owner and details.
func (o *owners) setCommitted(k entryKey, m entryMeta) {
	if m.owner == noOwner {
		delete(o.of, k)
	} else {
		o.of[k] = m
	}
}

// heapItems is the number of items over all heaps, stale ones included.
func (o *owners) heapItems() int {
	n := 0
	for _, h := range o.heaps {
		n += len(h)
	}
	return n
}

// ownerOf returns k's owner as the batch being planned sees it.
func (s *Store) ownerOf(k entryKey) ownerID { return s.metaOf(k).owner }

// metaOf returns k's owner and details as the batch being planned sees it.
func (s *Store) metaOf(k entryKey) entryMeta {
	if st, ok := s.w.overlay[k]; ok {
		return st.meta
	}
	return s.w.own.of[k]
}

// liveIn returns the live check for items of id's heap: the entry still
// exists with that expiry and still belongs to id.
func (s *Store) liveIn(id ownerID) func(entryKey) (int64, bool) {
	return func(k entryKey) (int64, bool) {
		exp, ok := s.current(k)
		if !ok || s.ownerOf(k) != id {
			return 0, false
		}
		return exp, true
	}
}

// soonest returns the live minimum over the heaps of the owners for which
// eligible is true (every owner when eligible is nil), without removing it.
// skip names entries already chosen by the caller; their items are dropped.
func (s *Store) soonest(eligible func(ownerID) bool, skip map[entryKey]bool) (keyExp, ownerID, bool) {
	var best keyExp
	bestOwner, found := noOwner, false
	for i := range s.w.own.heaps {
		id := ownerID(i)
		if eligible != nil && !eligible(id) {
			continue
		}
		h := &s.w.own.heaps[i]
		live := s.liveIn(id)
		for {
			it, ok := h.peekLive(live)
			if !ok {
				break
			}
			if skip[it.key] {
				h.pop()
				continue
			}
			if !found || it.exp < best.exp {
				best, bestOwner, found = it, id, true
			}
			break
		}
	}
	return best, bestOwner, found
}

// rebuildHeaps recreates every owner's heap and count from the committed
// state, dropping stale items and anything a failed batch staged.
func (s *Store) rebuildHeaps() {
	o := &s.w.own
	clear(o.held)
	s.eachEntry(func(k entryKey, _ int64) { o.held[o.of[k].owner]++ })
	for i := range o.heaps {
		o.heaps[i] = make(expiryHeap, 0, o.held[i])
	}
	s.eachEntry(func(k entryKey, exp int64) {
		id := o.of[k].owner
		o.heaps[id] = append(o.heaps[id], keyExp{k, exp})
	})
	for i := range o.heaps {
		o.heaps[i].init()
	}
}

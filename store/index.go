package store

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"sync/atomic"
)

// The in-memory index: one hash table per (family, prefix length), each
// split into 64 shards, each shard an open-addressing array of slots.
//
// Readers (Allowed, Match, Entries) take no locks and write no shared
// memory, so parallel readers never contend. All mutations come from a
// single writer (the committer, or Open before the store is shared):
//
//   - Updating the expiry of a present key is one atomic store; a reader
//     sees the old or the new expiry.
//   - A new key goes into an empty slot by storing the key first and the
//     expiry (non-zero, which marks the slot used) last; readers load the
//     expiry first, so they never pair a new expiry with an old key.
//   - Deletion moves later entries of the probe cluster back (no tombstones)
//     and is bracketed by the shard's sequence counter (odd while moving).
//     Readers retry a probe that overlapped a change, so they can never
//     combine one entry's key with another's expiry.
//   - Growing or shrinking builds a new array while readers keep using the
//     unchanged old one, then swaps the pointer.
//
// A lookup hashes the masked address once and usually touches a single
// cache line of slots, which matters at a million entries, where a Go map
// probe costs several dependent cache misses.

const (
	shardBits  = 6
	shardCount = 1 << shardBits
	minSlots   = 8 // per shard, once it holds anything
)

// key128 is a masked network address: IPv6 as two 64-bit halves, IPv4 in
// the low 32 bits of lo.
type key128 struct{ hi, lo uint64 }

type slot struct {
	hi, lo atomic.Uint64
	exp    atomic.Int64 // unix expiry; 0 marks an empty slot
}

type slotArray struct {
	slots []slot // power-of-two length
	shift uint8  // 64 - log2(len(slots)), to take a slot index from a hash
}

// shard is padded to a cache line so that the writer bumping one shard's
// sequence counter does not disturb readers of its neighbours.
type shard struct {
	seq atomic.Uint64 // odd while entries are being moved
	arr atomic.Pointer[slotArray]
	n   int // entries; writer-only
	_   [64 - 24]byte
}

// table holds the entries of one family and prefix length.
type table struct {
	shards [shardCount]shard
	n      int // entries; writer-only
}

// hashKey mixes a key with the per-store seed (so that nobody can prepare
// colliding addresses in advance). The top shardBits bits choose the shard,
// the following ones the home slot.
func hashKey(k key128, seed uint64) uint64 {
	x := (k.hi^seed)*0x9E3779B97F4A7C15 ^ k.lo
	x ^= x >> 30
	x *= 0xBF58476D1CE4E5B9
	x ^= x >> 27
	x *= 0x94D049BB133111EB
	return x ^ x>>31
}

func (t *table) shard(h uint64) *shard { return &t.shards[h>>(64-shardBits)] }

func (a *slotArray) home(h uint64) uint64 { return (h << shardBits) >> a.shift }

// probe looks k up in the current array without synchronisation; get
// validates the result.
func (sh *shard) probe(k key128, h uint64) (exp int64, found bool) {
	a := sh.arr.Load()
	if a == nil {
		return 0, false
	}
	mask := uint64(len(a.slots) - 1)
	i := a.home(h)
	for range len(a.slots) { // bounded even if a concurrent move confuses it
		s := &a.slots[i&mask]
		e := s.exp.Load()
		if e == 0 {
			return 0, false
		}
		if s.lo.Load() == k.lo && s.hi.Load() == k.hi {
			return e, true
		}
		i++
	}
	return 0, false
}

// get returns k's expiry. Safe for any goroutine, concurrently with the writer.
func (sh *shard) get(k key128, h uint64) (int64, bool) {
	for spins := 0; ; spins++ {
		seq := sh.seq.Load()
		if seq&1 == 0 {
			exp, found := sh.probe(k, h)
			if sh.seq.Load() == seq {
				return exp, found
			}
		}
		if spins >= 100 {
			runtime.Gosched() // the writer was preempted mid-move
		}
	}
}

// find returns k's slot index. Writer-only (nothing moves meanwhile).
func (a *slotArray) find(k key128, h uint64) (uint64, bool) {
	mask := uint64(len(a.slots) - 1)
	for i := a.home(h); ; i = (i + 1) & mask {
		s := &a.slots[i]
		if s.exp.Load() == 0 {
			return i, false // the empty slot where k would go
		}
		if s.lo.Load() == k.lo && s.hi.Load() == k.hi {
			return i, true
		}
	}
}

// set stores k; with later it keeps an existing later-or-equal expiry. It
// reports whether k was present and whether it was added. Writer-only.
func (sh *shard) set(k key128, h uint64, exp int64, later bool, seed uint64) (had, added bool) {
	if exp <= 0 {
		panic("store: index expiry must be positive") // 0 marks empty slots
	}
	a := sh.arr.Load()
	if a != nil {
		i, found := a.find(k, h)
		if found {
			if s := &a.slots[i]; !later || exp > s.exp.Load() {
				s.exp.Store(exp)
			}
			return true, false
		}
	}
	switch {
	case a == nil:
		a = sh.resize(minSlots, seed)
	case (sh.n+1)*4 > len(a.slots)*3: // keep the load factor at most 3/4
		a = sh.resize(2*len(a.slots), seed)
	}
	i, _ := a.find(k, h)
	s := &a.slots[i]
	s.hi.Store(k.hi)
	s.lo.Store(k.lo)
	s.exp.Store(exp) // publishes the slot
	sh.n++
	return false, true
}

// del removes k and reports whether it was present. Writer-only.
func (sh *shard) del(k key128, h uint64, seed uint64) bool {
	a := sh.arr.Load()
	if a == nil {
		return false
	}
	hole, found := a.find(k, h)
	if !found {
		return false
	}
	// Backward-shift deletion: move each later entry of the cluster whose
	// home slot is not between the hole and itself into the hole.
	sh.seq.Add(1)
	mask := uint64(len(a.slots) - 1)
	for j := (hole + 1) & mask; ; j = (j + 1) & mask {
		s := &a.slots[j]
		exp := s.exp.Load()
		if exp == 0 {
			break
		}
		kj := key128{s.hi.Load(), s.lo.Load()}
		home := a.home(hashKey(kj, seed))
		if (j-home)&mask >= (j-hole)&mask { // home is at or before the hole
			d := &a.slots[hole]
			d.hi.Store(kj.hi)
			d.lo.Store(kj.lo)
			d.exp.Store(exp)
			hole = j
		}
	}
	a.slots[hole].exp.Store(0)
	sh.seq.Add(1)
	sh.n--
	switch {
	case sh.n == 0:
		sh.arr.Store(nil)
	case len(a.slots) > minSlots && sh.n*8 < len(a.slots):
		sh.resize(len(a.slots)/2, seed)
	}
	return true
}

// resize publishes a copy of the shard's entries in an array of n slots.
// Readers keep using the old array, which no longer changes, until they
// see the new one.
func (sh *shard) resize(n int, seed uint64) *slotArray {
	na := &slotArray{slots: make([]slot, n), shift: uint8(64 - bits.TrailingZeros(uint(n)))}
	if old := sh.arr.Load(); old != nil {
		for i := range old.slots {
			s := &old.slots[i]
			if exp := s.exp.Load(); exp != 0 {
				k := key128{s.hi.Load(), s.lo.Load()}
				j, _ := na.find(k, hashKey(k, seed))
				d := &na.slots[j]
				d.hi.Store(k.hi)
				d.lo.Store(k.lo)
				d.exp.Store(exp)
			}
		}
	}
	sh.arr.Store(na)
	return na
}

// appendEntries appends a consistent view of the shard's entries to buf.
func (sh *shard) appendEntries(buf []keyExp128) []keyExp128 {
	start := len(buf)
	for spins := 0; ; spins++ {
		seq := sh.seq.Load()
		if seq&1 == 0 {
			buf = buf[:start]
			if a := sh.arr.Load(); a != nil {
				for i := range a.slots {
					s := &a.slots[i]
					if exp := s.exp.Load(); exp != 0 {
						buf = append(buf, keyExp128{key128{s.hi.Load(), s.lo.Load()}, exp})
					}
				}
			}
			if sh.seq.Load() == seq {
				return buf
			}
		}
		if spins >= 100 {
			runtime.Gosched()
		}
	}
}

type keyExp128 struct {
	key key128
	exp int64
}

// index maps every (family, prefix length) to a table. Tables are created
// on first use and kept. For each family, a published probe list names the
// lengths that hold entries, smallest table first: Allowed may stop at the
// first active entry, so it tries the small tables (typically a few CIDR
// grants, cache-resident) before the big one of single hosts, and a client
// covered by a network grant never pays for a miss in the big table.
type index struct {
	probe4, probe6 atomic.Pointer[[]uint8] // immutable once published
	v4             [33]atomic.Pointer[table]
	v6             [129]atomic.Pointer[table]
	seed           uint64
	scopeSet       scopeSetID // the scope set whose entries it holds
	resized        bool       // a table changed size since the probe lists were ordered; writer-only
}

func newIndexSeed() uint64 { return rand.Uint64() | 1 }

func mask4(a uint32, l int) key128 { return key128{0, uint64(a & (^uint32(0) << (32 - uint(l))))} }

func mask6(hi, lo uint64, l int) key128 {
	if l >= 64 {
		return key128{hi, lo & (^uint64(0) << (128 - uint(l)))}
	}
	return key128{hi & (^uint64(0) << (64 - uint(l))), 0}
}

// best4 returns, among entries covering the IPv4 address a that are active
// at now, the one with the latest expiry (the longest prefix on ties): its
// expiry and prefix length. With first set it returns the first active
// entry found instead, which is all Allowed needs. The cost is one probe per
// prefix length in use, whatever the number of entries.
func (x *index) best4(a uint32, now int64, first bool) (exp int64, length int, ok bool) {
	lens := x.probe4.Load()
	if lens == nil {
		return
	}
	for _, l8 := range *lens {
		l := int(l8)
		k := mask4(a, l)
		h := hashKey(k, x.seed)
		e, found := x.v4[l].Load().shard(h).get(k, h)
		if found && now < e && (!ok || e > exp || e == exp && l > length) {
			exp, length, ok = e, l, true
			if first {
				return
			}
		}
	}
	return
}

// best6 is best4 for IPv6.
func (x *index) best6(hi, lo uint64, now int64, first bool) (exp int64, length int, ok bool) {
	lens := x.probe6.Load()
	if lens == nil {
		return
	}
	for _, l8 := range *lens {
		l := int(l8)
		k := mask6(hi, lo, l)
		h := hashKey(k, x.seed)
		e, found := x.v6[l].Load().shard(h).get(k, h)
		if found && now < e && (!ok || e > exp || e == exp && l > length) {
			exp, length, ok = e, l, true
			if first {
				return
			}
		}
	}
	return
}

// allowed reports whether an entry covering ip is active at now, with the
// address rules of Store.Allowed.
func (x *index) allowed(ip netip.Addr, now int64) bool {
	if ip.Is4() {
		b := ip.As4()
		_, _, ok := x.best4(binary.BigEndian.Uint32(b[:]), now, true)
		return ok
	}
	if !ip.Is6() || ip.Zone() != "" {
		return false
	}
	if ip.Is4In6() {
		return x.allowed(ip.Unmap(), now)
	}
	b := ip.As16()
	_, _, ok := x.best6(binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:]), now, true)
	return ok
}

// match returns the active entry covering ip with the latest expiry, with
// the address rules of Store.Allowed.
func (x *index) match(ip netip.Addr, now int64) (p netip.Prefix, exp int64, ok bool) {
	var length int
	switch {
	case ip.Zone() != "":
	case ip.Is4() || ip.Is4In6():
		ip = ip.Unmap()
		b := ip.As4()
		exp, length, ok = x.best4(binary.BigEndian.Uint32(b[:]), now, false)
	case ip.Is6():
		b := ip.As16()
		exp, length, ok = x.best6(binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:]), now, false)
	}
	if !ok {
		return netip.Prefix{}, 0, false
	}
	p, _ = ip.Prefix(length)
	return p, exp, true
}

// publishProbes republishes the probe lists if tables changed size. A list
// only ever names lengths whose table exists. Writer-only.
func (x *index) publishProbes() {
	if !x.resized {
		return
	}
	x.resized = false
	x.publish(&x.probe4, x.v4[:])
	x.publish(&x.probe6, x.v6[:])
}

func (x *index) publish(dst *atomic.Pointer[[]uint8], tables []atomic.Pointer[table]) {
	var lens []uint8
	for l := range tables {
		if t := tables[l].Load(); t != nil && t.n > 0 {
			lens = append(lens, uint8(l))
		}
	}
	slices.SortStableFunc(lens, func(a, b uint8) int { return tables[a].Load().n - tables[b].Load().n })
	if old := dst.Load(); old == nil && len(lens) == 0 || old != nil && slices.Equal(*old, lens) {
		return
	}
	dst.Store(&lens)
}

// tableFor returns the table for k's family and length, creating it if
// create is set (writer-only).
func (x *index) tableFor(k entryKey, create bool) *table {
	var p *atomic.Pointer[table]
	if k.v6 {
		p = &x.v6[k.bits]
	} else {
		p = &x.v4[k.bits]
	}
	t := p.Load()
	if t == nil && create {
		t = new(table)
		p.Store(t)
	}
	return t
}

// get returns the stored expiry of k, expired or not.
func (x *index) get(k entryKey) (int64, bool) {
	t := x.tableFor(k, false)
	if t == nil {
		return 0, false
	}
	kk := key128{k.hi, k.lo}
	h := hashKey(kk, x.seed)
	return t.shard(h).get(kk, h)
}

// set stores k with expiry exp (> 0) and reports whether k is new. Writer-only.
func (x *index) set(k entryKey, exp int64) bool {
	_, added := x.store(k, exp, false)
	return added
}

// setLater is set that keeps an existing later-or-equal expiry (duplicate
// snapshot keys: the later expiry wins). It reports whether k was already
// present and whether it was added. Writer-only.
func (x *index) setLater(k entryKey, exp int64) (had, added bool) {
	return x.store(k, exp, true)
}

func (x *index) store(k entryKey, exp int64, later bool) (had, added bool) {
	t := x.tableFor(k, true)
	kk := key128{k.hi, k.lo}
	h := hashKey(kk, x.seed)
	had, added = t.shard(h).set(kk, h, exp, later, x.seed)
	if added {
		x.resized = true
		if t.n++; t.n == 1 {
			x.publishProbes() // a new length must be probed at once
		}
	}
	return had, added
}

// del removes k and reports whether it was present. Writer-only.
func (x *index) del(k entryKey) bool {
	t := x.tableFor(k, false)
	if t == nil {
		return false
	}
	kk := key128{k.hi, k.lo}
	h := hashKey(kk, x.seed)
	if !t.shard(h).del(kk, h, x.seed) {
		return false
	}
	x.resized = true
	t.n--
	return true
}

// each calls fn for every stored entry, expired or not. Each shard is read
// consistently, but other shards may change meanwhile.
func (x *index) each(fn func(k entryKey, exp int64)) {
	var buf []keyExp128
	visit := func(t *table, bits uint8, v6 bool) {
		for i := range t.shards {
			buf = t.shards[i].appendEntries(buf[:0])
			for _, e := range buf {
				fn(entryKey{hi: e.key.hi, lo: e.key.lo, bits: bits, v6: v6, set: x.scopeSet}, e.exp)
			}
		}
	}
	for l := range x.v4 {
		if t := x.v4[l].Load(); t != nil {
			visit(t, uint8(l), false)
		}
	}
	for l := range x.v6 {
		if t := x.v6[l].Load(); t != nil {
			visit(t, uint8(l), true)
		}
	}
}

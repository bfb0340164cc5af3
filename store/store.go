package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Entry is one whitelisted address or network.
type Entry struct {
	// Prefix is canonical: masked, never IPv4-mapped IPv6, never zoned;
	// single hosts are /32 or /128.
	Prefix netip.Prefix
	// Expires is a unix time in seconds; the entry authorizes while
	// now < Expires.
	Expires int64
	// Owner names who made the grant (a key name), "" when unknown (an
	// entry of the Python Knocker's whitelist.json). Events, grant results
	// and Grants carry it and the details below; Match and Entries, which
	// read the lock-free index, leave them empty.
	Owner string
	// Created is when the grant was first made and Renewed when it was
	// last made (unix seconds); Client is the address that made it last.
	// Zero when unknown: only grants with an owner record them.
	Created, Renewed int64
	Client           netip.Addr
	// Scopes limits the entry to these access scopes (sorted, distinct);
	// nil for a full-access entry. Entries of one prefix with different
	// scope sets are different entries. The slice is shared: callers must
	// not modify it.
	Scopes []string
}

// Options configure Open.
type Options struct {
	Path            string           // whitelist snapshot file (JSON); required
	MaxEntries      int              // > 0
	CleanupInterval time.Duration    // > 0; period of the background sweep of expired entries
	Now             func() time.Time // nil means time.Now
	Logger          *zap.Logger      // nil means no logging
	// ObserveSync, when set, is called with the duration of every journal
	// fsync (one per group commit, shared by the grants and revocations of
	// its batch), on the committer goroutine: it must be quick and must not
	// call the store. For metrics.
	ObserveSync func(time.Duration)
}

// GrantResult describes the effect of a Grant.
type GrantResult struct {
	Entry Entry
	// Previous is the prefix's previous expiry if it was present (even if
	// already expired but not yet swept), else 0.
	Previous int64
	// Evicted lists entries removed to make room under MaxEntries or the
	// owner's MaxOwned, each with its owner.
	Evicted []Entry
}

var (
	// ErrLocked is wrapped by Open when another process (or another Open in
	// this process) holds the whitelist file's lock.
	ErrLocked = errors.New("store: whitelist file is locked")
	// ErrClosed is returned by mutating calls after Close.
	ErrClosed = errors.New("store: closed")
	// ErrInvalid is wrapped for a non-canonical prefix or an expiry that is
	// not in the future.
	ErrInvalid = errors.New("store: invalid entry")
	// ErrCorrupt is wrapped by Open when the snapshot or a journal cannot be
	// trusted. The message names the file and the problem; the files are
	// left untouched for the operator to inspect.
	ErrCorrupt = errors.New("store: corrupt whitelist data")
	// ErrFull is wrapped by GrantWith when a new entry would exceed
	// MaxEntries and no entry the grant may evict is left.
	ErrFull = errors.New("store: whitelist is full")
)

// Store is the whitelist. All methods are safe for concurrent use.
type Store struct {
	path, journalPath, oldJournalPath, dir string

	log         *zap.Logger
	now         func() time.Time
	observeSync func(time.Duration) // nil: not observed

	idx    index                      // full-access entries (scope set 0)
	scoped atomic.Pointer[scopeTable] // every scope set's index (scopes.go)
	sets   scopeSets                  // writer-only
	count  atomic.Int64               // entries of all sets, expired-not-swept included
	subs   subscribers

	maxEntries atomic.Int64
	probe      struct {
		mu    sync.Mutex
		at    time.Time   // of the last probe
		err   error       // its result
		stale atomic.Bool // a journal write failed since
	}
	interval      atomic.Int64 // time.Duration
	limitsChanged chan struct{}

	sendMu        sync.RWMutex // orders sends on reqs against Close closing it
	reqs          chan *request
	closed        atomic.Bool
	closeOnce     sync.Once
	closeErr      error // set by the committer before committerDone closes
	stopSweep     chan struct{}
	sweepDone     chan struct{}
	committerDone chan struct{}
	lock          io.Closer // the inter-process lock; Close releases it

	broken atomic.Bool // the journal must be replaced before the next append

	// Test seams.
	fsyncs  atomic.Int64 // journal fsyncs
	hooks   atomic.Pointer[faultHooks]
	crashed atomic.Bool // exit like kill -9: no final compaction

	w writer // owned by the committer goroutine
}

// faultHooks lets tests inject I/O errors on the journal.
type faultHooks struct {
	write    func(f *os.File, b []byte) (int, error)
	truncate func(f *os.File, size int64) error
	snapshot func() error // called before a snapshot is written
}

// ResolvePath follows symbolic links in path, also a link to a file not
// written yet, so that two names for one whitelist take one lock:
// otherwise two stores would run on one file and diverge. Parts that do
// not exist yet stay as they are. Open uses it; callers that share stores
// by path should key them by it too.
func ResolvePath(path string) string {
	for range 40 { // as many links as Linux follows
		path = filepath.Join(resolveExisting(filepath.Dir(path)), filepath.Base(path))
		target, err := os.Readlink(path)
		if err != nil {
			return path // not a link (or not there yet)
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		path = filepath.Clean(target)
	}
	return path
}

// resolveExisting resolves the symlinks of p's longest existing prefix and
// keeps the rest, so that a directory not created yet (Open creates it)
// still gets the same answer before and after it exists.
func resolveExisting(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	parent := filepath.Dir(p)
	if parent == p {
		return p
	}
	return filepath.Join(resolveExisting(parent), filepath.Base(p))
}

// Open loads the whitelist at opts.Path (a missing file is an empty
// whitelist), replays its journals, takes the inter-process lock and starts
// the committer and the expiry sweeper. A corrupt file makes Open fail with
// an error wrapping ErrCorrupt; nothing is modified in that case.
func Open(opts Options) (*Store, error) {
	switch {
	case opts.Path == "":
		return nil, errors.New("store: Options.Path is required")
	case opts.MaxEntries <= 0:
		return nil, fmt.Errorf("store: Options.MaxEntries must be positive, got %d", opts.MaxEntries)
	case opts.CleanupInterval <= 0:
		return nil, fmt.Errorf("store: Options.CleanupInterval must be positive, got %v", opts.CleanupInterval)
	}
	path := ResolvePath(filepath.Clean(opts.Path))
	s := &Store{
		path:           path,
		journalPath:    path + ".journal",
		oldJournalPath: path + ".journal.old",
		dir:            filepath.Dir(path),
		log:            opts.Logger,
		now:            opts.Now,
		observeSync:    opts.ObserveSync,
		limitsChanged:  make(chan struct{}, 1),
		reqs:           make(chan *request, 1024),
		stopSweep:      make(chan struct{}),
		sweepDone:      make(chan struct{}),
		committerDone:  make(chan struct{}),
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.log = s.log.With(zap.String("whitelist", path))
	s.maxEntries.Store(int64(opts.MaxEntries))
	s.interval.Store(int64(opts.CleanupInterval))
	s.idx.seed = newIndexSeed()
	s.initScopes()
	s.w.compactDone = make(chan compactResult, 1)
	s.w.minCompact = minCompactSize
	s.w.overlay = make(map[entryKey]overlayState)
	s.w.own.init()

	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: creating directory for %s: %w", path, err)
	}
	lock, err := lockFile(path+".lock", path)
	if err != nil {
		return nil, err
	}
	s.lock = lock
	if err := s.load(); err != nil {
		if s.w.journal != nil {
			s.w.journal.Close()
		}
		lock.Close()
		return nil, err
	}
	go s.commitLoop()
	go s.sweepLoop()
	return s, nil
}

// Close stops the sweeper, commits everything already submitted, writes a
// final snapshot (leaving no journals behind), and releases the lock.
// Mutating calls made after Close return ErrClosed. Close is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stopSweep)
		<-s.sweepDone
		s.sendMu.Lock()
		s.closed.Store(true)
		close(s.reqs)
		s.sendMu.Unlock()
		<-s.committerDone
		if err := s.lock.Close(); err != nil && s.closeErr == nil {
			s.closeErr = fmt.Errorf("store: releasing lock: %w", err)
		}
	})
	return s.closeErr
}

// Path returns the snapshot file's path.
func (s *Store) Path() string { return s.path }

// CleanupInterval is the current sweep interval.
func (s *Store) CleanupInterval() time.Duration { return time.Duration(s.interval.Load()) }

// SetCleanupInterval changes the sweep interval, restarting the sweep
// timer; a non-positive value leaves it unchanged. (MaxEntries has no
// setter: a caller with another bound passes it with each grant, see
// GrantOptions, so that a config that never runs changes nothing.)
func (s *Store) SetCleanupInterval(cleanupInterval time.Duration) {
	if cleanupInterval > 0 && s.interval.Swap(int64(cleanupInterval)) != int64(cleanupInterval) {
		select {
		case s.limitsChanged <- struct{}{}:
		default:
		}
	}
}

// Allowed reports whether a full-access entry covering ip is active at now
// (unix seconds, now < Expires); entries limited to scopes never count
// here (see AllowedIn). It is the hot path: in memory, allocation-free,
// and its cost depends only on how many distinct prefix lengths are in use,
// not on the number of entries. An IPv4-mapped IPv6 address is treated as
// the IPv4 address; invalid and zoned addresses are never allowed.
func (s *Store) Allowed(ip netip.Addr, now int64) bool { return s.idx.allowed(ip, now) }

// AllowedIn reports whether an entry active at now admits ip to scope: a
// full-access entry, or one whose scopes include scope. AllowedIn(ip, "",
// now) is Allowed. It does not allocate; beyond Allowed's cost it probes
// the entries of each scope set containing scope the same way.
func (s *Store) AllowedIn(ip netip.Addr, scope string, now int64) bool {
	if s.idx.allowed(ip, now) {
		return true
	}
	if scope == "" {
		return false
	}
	for _, x := range s.setTable().byName[scope] {
		if x.allowed(ip, now) {
			return true
		}
	}
	return false
}

// Match returns the active full-access entry covering ip with the latest
// expiry (the longest prefix on ties), with the same address rules and cost
// bound as Allowed.
func (s *Store) Match(ip netip.Addr, now int64) (Entry, bool) {
	p, exp, ok := s.idx.match(ip, now)
	return Entry{Prefix: p, Expires: exp}, ok
}

// MatchIn is Match among the entries that admit ip to scope (see
// AllowedIn); on equal expiry and length a full-access entry wins.
func (s *Store) MatchIn(ip netip.Addr, scope string, now int64) (Entry, bool) {
	best, ok := s.Match(ip, now)
	if scope == "" {
		return best, ok
	}
	t := s.setTable()
	for _, x := range t.byName[scope] {
		p, exp, found := x.match(ip, now)
		if found && (!ok || exp > best.Expires || exp == best.Expires && p.Bits() > best.Prefix.Bits()) {
			best, ok = Entry{Prefix: p, Expires: exp, Scopes: t.sets[x.scopeSet]}, true
		}
	}
	return best, ok
}

// MatchAny is Match among all active entries covering ip, whatever their
// scopes: what a client holds, for showing it (not a gate's decision). On
// equal expiry and length a full-access entry wins.
func (s *Store) MatchAny(ip netip.Addr, now int64) (Entry, bool) {
	best, ok := s.Match(ip, now)
	t := s.setTable()
	for id, x := range t.idx[1:] {
		p, exp, found := x.match(ip, now)
		if found && (!ok || exp > best.Expires || exp == best.Expires && p.Bits() > best.Prefix.Bits()) {
			best, ok = Entry{Prefix: p, Expires: exp, Scopes: t.sets[id+1]}, true
		}
	}
	return best, ok
}

// Entries returns all entries active at now, of every scope set, in no
// particular order.
func (s *Store) Entries(now int64) []Entry {
	out := make([]Entry, 0, s.count.Load())
	t := s.setTable()
	for _, x := range t.idx {
		x.each(func(k entryKey, exp int64) {
			if now < exp {
				out = append(out, Entry{Prefix: k.prefix(), Expires: exp, Scopes: t.sets[k.set]})
			}
		})
	}
	return out
}

// EntriesOf returns p's entries active at now, one per scope set, in no
// particular order: a firewall backend opens a prefix's ports from all of
// them. Like Entries it reads the index, without owners; its cost grows
// with the number of scope sets in use, not of entries. A non-canonical p
// has none.
func (s *Store) EntriesOf(p netip.Prefix, now int64) []Entry {
	if CanonicalPrefix(p) != nil {
		return nil
	}
	var out []Entry
	k := keyOf(p)
	t := s.setTable()
	for id, x := range t.idx {
		k.set = scopeSetID(id)
		if exp, ok := x.get(k); ok && now < exp {
			out = append(out, Entry{Prefix: p, Expires: exp, Scopes: t.sets[id]})
		}
	}
	return out
}

// Grants returns the entries active at now with their owners, in no
// particular order. Unlike Entries it is answered by the committer, which
// owns the owners, so it waits for the writes queued before it.
func (s *Store) Grants(now int64) ([]Entry, error) {
	var out []Entry
	err := s.submit(&request{kind: reqExec, fn: func() {
		out = make([]Entry, 0, s.Len())
		s.eachEntry(func(k entryKey, exp int64) {
			if now < exp {
				e := Entry{Prefix: k.prefix(), Expires: exp, Scopes: s.setScopes(k.set)}
				s.w.own.fill(&e, s.w.own.of[k]) // committed, as the index is
				out = append(out, e)
			}
		})
	}})
	return out, err
}

// Len returns the number of entries held, including expired entries the
// sweeper has not removed yet.
func (s *Store) Len() int { return int(s.count.Load()) }

// Grant sets the expiry of p's full-access entry (p a canonical prefix,
// see CanonicalPrefix), adding it if new; the last grant wins even if it shortens the expiry. A
// new entry beyond MaxEntries first evicts the soonest-expiring other
// entries of no owner; the entry being granted is never evicted. When
// Grant returns nil the change is on disk (fsynced) and visible to Allowed.
func (s *Store) Grant(p netip.Prefix, expires int64) (GrantResult, error) {
	return s.GrantWith(p, expires, GrantOptions{})
}

// GrantOptions are a grant's own settings.
type GrantOptions struct {
	// MaxEntries bounds the whitelist for this grant instead of the
	// store's MaxEntries (0: the store's).
	MaxEntries int
	// Owner names who makes the grant; it is stored with the entry (the
	// last grant of an entry owns it) and persisted.
	Owner string
	// Client is the address that asks for the grant, recorded with it
	// (with when it was first and last made) when Owner is set.
	Client netip.Addr
	// MaxOwned bounds the entries Owner holds: at the bound, a grant of a
	// further entry first evicts Owner's soonest-expiring ones (0: none).
	MaxOwned int
	// MayEvict reports whether the grant may evict entries of owner to
	// make room under MaxEntries. Entries of Owner itself are always
	// evictable; nil allows no others. Among the evictable entries the
	// soonest-expiring goes first; when none is left, GrantWith fails with
	// ErrFull and changes nothing.
	MayEvict func(owner string) bool
	// Scopes limits the grant to these access scopes (see CheckScopes;
	// nil: full access). The grant is the entry of p and this scope set:
	// it renews an entry of p with the same set and leaves p's entries of
	// other sets alone.
	Scopes []string
}

// GrantWith is Grant with options.
func (s *Store) GrantWith(p netip.Prefix, expires int64, opts GrantOptions) (GrantResult, error) {
	if expires <= 0 { // 0 would ask changeRequest for a removal
		return GrantResult{}, fmt.Errorf("%w: expiry %d is not in the future", ErrInvalid, expires)
	}
	r, err := s.changeRequest(&Change{Prefix: p, Scopes: opts.Scopes, Expires: expires, Options: opts})
	if err != nil {
		return GrantResult{}, err
	}
	if err := s.submit(r); err != nil {
		return GrantResult{}, err
	}
	return r.result, nil
}

// Revoke removes every entry of p, of every scope set, durably, and
// returns how many it removed.
func (s *Store) Revoke(p netip.Prefix) (int, error) {
	if err := CanonicalPrefix(p); err != nil {
		return 0, err
	}
	r := &request{kind: reqRevoke, prefix: p, key: keyOf(p)}
	if err := s.submit(r); err != nil {
		return 0, err
	}
	return len(r.revoked), nil
}

// RevokeOwner removes every entry owner holds, durably, in one write, and
// returns them.
func (s *Store) RevokeOwner(owner string) ([]Entry, error) {
	if owner == "" {
		return nil, fmt.Errorf("%w: no owner named", ErrInvalid)
	}
	r := &request{kind: reqRevokeOwner, owner: owner}
	if err := s.submit(r); err != nil {
		return nil, err
	}
	return r.revoked, nil
}

// Sweep durably removes every entry with Expires <= now and returns how many
// it removed. The background sweeper calls it every CleanupInterval.
func (s *Store) Sweep() (int, error) {
	r := &request{kind: reqSweep, now: s.now().Unix()}
	if err := s.submit(r); err != nil {
		return 0, err
	}
	return r.swept, nil
}

// Subscribe registers fn to be told about every committed change, in commit
// order, one Event per change, after the change is visible in memory. fn runs
// on the committer goroutine: it must return quickly and must not block or
// call Grant, Revoke, Sweep or Close (that would deadlock); a consumer with
// real work to do should queue it. cancel unsubscribes; an event being
// delivered while cancel runs may still reach fn.
func (s *Store) Subscribe(fn func(Event)) (cancel func()) {
	return s.subs.add(fn)
}

// Check reports whether the store can accept writes: it is open, its journal
// is usable, the directory (and the snapshot file, if present) allow the
// needed access, and a small write in the directory succeeds (see
// probeWrite; at most one a second).
func (s *Store) Check() error {
	if s.closed.Load() {
		return ErrClosed
	}
	if s.broken.Load() {
		return fmt.Errorf("store: journal %s could not be rolled back after a write failure; the next write will try to rewrite the snapshot", s.journalPath)
	}
	if err := dirWritable(s.dir); err != nil {
		return fmt.Errorf("store: directory %s is not writable: %w", s.dir, err)
	}
	if err := fileReadWritable(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: whitelist file %s is not readable and writable: %w", s.path, err)
	}
	return s.probeWrite()
}

// probeEvery bounds how often Check writes its probe (/ready is public).
const probeEvery = time.Second

// probeWrite writes, syncs and removes one page in the store's directory,
// as a journal append would: permissions say nothing about a full disk.
// One probe runs at a time and its result, failure included, is reused for
// probeEvery; a failed journal write makes the next Check probe again.
func (s *Store) probeWrite() error {
	s.probe.mu.Lock()
	defer s.probe.mu.Unlock()
	if !s.probe.stale.Swap(false) && !s.probe.at.IsZero() && time.Since(s.probe.at) < probeEvery {
		return s.probe.err
	}
	f, err := os.CreateTemp(s.dir, filepath.Base(s.path)+tempSuffix+"probe-*")
	if err == nil {
		_, err = f.Write(make([]byte, 4096))
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		os.Remove(f.Name())
	}
	if err != nil {
		err = fmt.Errorf("store: cannot write in %s (is the disk full?): %w", s.dir, err)
	}
	s.probe.at, s.probe.err = time.Now(), err
	return err
}

func (s *Store) submit(r *request) error {
	r.done = make(chan struct{})
	s.sendMu.RLock()
	if s.closed.Load() {
		s.sendMu.RUnlock()
		return ErrClosed
	}
	s.reqs <- r
	s.sendMu.RUnlock()
	<-r.done
	return r.err
}

func (s *Store) sweepLoop() {
	defer close(s.sweepDone)
	t := time.NewTimer(time.Duration(s.interval.Load()))
	defer t.Stop()
	for {
		select {
		case <-s.stopSweep:
			return
		case <-s.limitsChanged:
			t.Reset(time.Duration(s.interval.Load()))
		case <-t.C:
			if _, err := s.Sweep(); err != nil && !errors.Is(err, ErrClosed) {
				s.log.Error("sweeping expired whitelist entries failed", zap.Error(err))
			}
			t.Reset(time.Duration(s.interval.Load()))
		}
	}
}

// removeStaleTemps deletes temporary snapshot files left by a crash. The
// lock is held, so no other writer can own them.
func (s *Store) removeStaleTemps() {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return
	}
	base := filepath.Base(s.path)
	for _, e := range ents {
		if isTempOf(e.Name(), base) {
			os.Remove(filepath.Join(s.dir, e.Name()))
		}
	}
}

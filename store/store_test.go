package store

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestOpenValidatesOptions(t *testing.T) {
	e := newEnv(t)
	for _, mutate := range []func(*Options){
		func(o *Options) { o.Path = "" },
		func(o *Options) { o.MaxEntries = 0 },
		func(o *Options) { o.CleanupInterval = 0 },
	} {
		o := e.options()
		mutate(&o)
		if s, err := Open(o); err == nil {
			s.Close()
			t.Errorf("Open(%+v) succeeded", o)
		}
	}
}

func TestOpenCreatesParentDirectory(t *testing.T) {
	e := newEnv(t)
	e.path = filepath.Join(t.TempDir(), "a", "b", "whitelist.json")
	s := e.open()
	fi, err := os.Stat(filepath.Dir(e.path))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("created directory mode %o, want 700", perm)
	}
	if err := s.Check(); err != nil {
		t.Errorf("Check on a fresh store: %v", err)
	}
	if s.Path() != e.path {
		t.Errorf("Path() = %q, want %q", s.Path(), e.path)
	}
}

func TestGrantRejectsInvalid(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	cases := []struct {
		p   netip.Prefix
		exp int64
	}{
		{netip.MustParsePrefix("10.1.2.3/24"), t0 + 10}, // host bits
		{netip.MustParsePrefix("::ffff:10.1.2.3/128"), t0 + 10},
		{netip.Prefix{}, t0 + 10},
		{netip.MustParsePrefix("10.1.2.3/32"), t0},     // not in the future
		{netip.MustParsePrefix("10.1.2.3/32"), t0 - 5}, // past
	}
	for _, c := range cases {
		if _, err := s.Grant(c.p, c.exp); !errors.Is(err, ErrInvalid) {
			t.Errorf("Grant(%v, %d) = %v, want ErrInvalid", c.p, c.exp-t0, err)
		}
	}
	if _, err := s.Revoke(netip.MustParsePrefix("10.1.2.3/24")); !errors.Is(err, ErrInvalid) {
		t.Errorf("Revoke(non-canonical) = %v, want ErrInvalid", err)
	}
	if s.Len() != 0 {
		t.Errorf("Len = %d after rejected grants", s.Len())
	}
}

func TestEventsAndResults(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	rec := record(s)

	r := mustGrant(t, s, "1.2.3.4", t0+100)
	if r.Previous != 0 || r.Entry.Expires != t0+100 || len(r.Evicted) != 0 {
		t.Errorf("first grant result = %+v", r)
	}
	r = mustGrant(t, s, "1.2.3.4", t0+200)
	if r.Previous != t0+100 {
		t.Errorf("re-grant Previous = %d, want 100", r.Previous-t0)
	}
	mustGrant(t, s, "1.2.3.4", t0+50) // last knock wins, even if earlier
	mustGrant(t, s, "2001:db8::/64", t0+10)
	if n, err := s.Revoke(mustPrefix(t, "1.2.3.4")); n != 1 || err != nil {
		t.Errorf("Revoke = %v, %v", n, err)
	}
	if n, err := s.Revoke(mustPrefix(t, "1.2.3.4")); n != 0 || err != nil {
		t.Errorf("second Revoke = %v, %v; want 0, nil", n, err)
	}
	mustGrant(t, s, "9.9.9.9", t0+20)
	e.clock.Advance(20)
	if n, err := s.Sweep(); n != 2 || err != nil {
		t.Errorf("Sweep = %d, %v; want 2", n, err)
	}
	if s.Len() != 0 {
		t.Errorf("Len after sweep = %d", s.Len())
	}
	want := []string{
		"added 1.2.3.4 100",
		"extended 1.2.3.4 200 100",
		"extended 1.2.3.4 50 200",
		"added 2001:db8::/64 10",
		"removed 1.2.3.4 50",
		"added 9.9.9.9 20",
		"expired 2001:db8::/64 10",
		"expired 9.9.9.9 20",
	}
	if got := rec.take(); !slices.Equal(got, want) {
		t.Errorf("events:\n got %q\nwant %q", got, want)
	}
}

func TestGrantOfExpiredUnsweptEntryReportsPrevious(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	mustGrant(t, s, "1.2.3.4", t0+10)
	e.clock.Advance(30)
	r := mustGrant(t, s, "1.2.3.4", t0+100)
	if r.Previous != t0+10 {
		t.Errorf("Previous = %d, want 10", r.Previous-t0)
	}
}

func TestSubscribeCancel(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	var a, b []Kind
	cancelA := s.Subscribe(func(ev Event) { a = append(a, ev.Kind) })
	s.Subscribe(func(ev Event) { b = append(b, ev.Kind) })
	s.Subscribe(func(ev Event) { panic("subscriber bug") }) // must not break anything
	mustGrant(t, s, "1.2.3.4", t0+10)
	cancelA()
	cancelA() // idempotent
	mustGrant(t, s, "1.2.3.5", t0+10)
	if len(a) != 1 || len(b) != 2 {
		t.Errorf("got %d and %d events, want 1 and 2", len(a), len(b))
	}
}

func TestEvictionNeverRemovesNewEntry(t *testing.T) {
	e := newEnv(t)
	e.max = 3
	s := e.open()
	rec := record(s)
	mustGrant(t, s, "10.0.0.1", t0+300)
	mustGrant(t, s, "10.0.0.2", t0+100)
	mustGrant(t, s, "10.0.0.3", t0+200)
	rec.take()

	// The new entry expires sooner than all others and must still stay.
	r := mustGrant(t, s, "10.0.0.4", t0+50)
	if len(r.Evicted) != 1 || FormatPrefix(r.Evicted[0].Prefix) != "10.0.0.2" {
		t.Errorf("evicted %v, want 10.0.0.2 (soonest expiring other entry)", r.Evicted)
	}
	if !s.Allowed(netip.MustParseAddr("10.0.0.4"), t0) {
		t.Error("the granted entry is not allowed")
	}
	if want := []string{"removed 10.0.0.2 100 evicted", "added 10.0.0.4 50"}; !slices.Equal(rec.take(), want) {
		t.Errorf("events differ from %q", want)
	}
	// Extending an existing entry at the limit evicts nothing.
	if r := mustGrant(t, s, "10.0.0.4", t0+60); len(r.Evicted) != 0 {
		t.Errorf("extending evicted %v", r.Evicted)
	}
	// Expired-but-unswept entries are the first victims.
	mustGrant(t, s, "10.0.0.3", t0+5)
	e.clock.Advance(10)
	r = mustGrant(t, s, "10.0.0.5", t0+500)
	if len(r.Evicted) != 1 || FormatPrefix(r.Evicted[0].Prefix) != "10.0.0.3" {
		t.Errorf("evicted %v, want the expired 10.0.0.3", r.Evicted)
	}
	if s.Len() != 3 {
		t.Errorf("Len = %d, want 3", s.Len())
	}

	// A grant with a lower limit evicts until there is room under it.
	r, err := s.GrantWith(netip.MustParsePrefix("10.0.0.6/32"), t0+40, GrantOptions{MaxEntries: 1})
	if err != nil || len(r.Evicted) != 3 || s.Len() != 1 || !s.Allowed(netip.MustParseAddr("10.0.0.6"), e.clock.Unix()) {
		t.Errorf("with limit 1: %v, evicted %v, Len %d", err, r.Evicted, s.Len())
	}
	// ...and sets no limit for later grants: the store's 3 holds.
	mustGrant(t, s, "10.0.0.7", t0+40)
	mustGrant(t, s, "10.0.0.8", t0+40)
	if s.Len() != 3 {
		t.Errorf("after grants without a limit: Len %d, want 3", s.Len())
	}
	if _, err := s.GrantWith(netip.MustParsePrefix("10.0.0.9/32"), t0+40, GrantOptions{MaxEntries: -1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("negative MaxEntries: %v", err)
	}
}

func TestEvictionWithinOneBatch(t *testing.T) {
	// Concurrent grants land in the same batch; eviction must see the
	// batch's own earlier additions.
	e := newEnv(t)
	e.max = 10
	s := e.open()
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Grant(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}), 32), t0+100+int64(i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if s.Len() != 10 {
		t.Errorf("Len = %d, want 10", s.Len())
	}
	s.Close()
	s2 := e.open()
	if s2.Len() != 10 {
		t.Errorf("after reopen Len = %d, want 10", s2.Len())
	}
}

func TestPersistenceRoundTrip(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	mustGrant(t, s, "203.0.113.7", t0+100)
	mustGrant(t, s, "192.168.1.0/24", t0+200)
	mustGrant(t, s, "2001:db8::1", t0+300)
	mustGrant(t, s, "2001:db8:1::/48", t0+400)
	mustGrant(t, s, "8.8.8.8", t0+500)
	s.Revoke(mustPrefix(t, "8.8.8.8"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Grant(mustPrefix(t, "1.1.1.1"), t0+10); !errors.Is(err, ErrClosed) {
		t.Errorf("Grant after Close = %v, want ErrClosed", err)
	}
	if _, err := s.Sweep(); !errors.Is(err, ErrClosed) {
		t.Errorf("Sweep after Close = %v, want ErrClosed", err)
	}
	if err := s.Check(); !errors.Is(err, ErrClosed) {
		t.Errorf("Check after Close = %v, want ErrClosed", err)
	}

	data, err := os.ReadFile(e.path)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`{
  "192.168.1.0/24": %d,
  "2001:db8:1::/48": %d,
  "2001:db8::1": %d,
  "203.0.113.7": %d
}`, t0+200, t0+400, t0+300, t0+100) // plain byte order: '1' sorts before ':'

	if string(data) != want {
		t.Errorf("snapshot:\n%s\nwant:\n%s", data, want)
	}
	assertNoJournals(t, e.path)
	if fi, _ := os.Stat(e.path); fi.Mode().Perm() != 0o600 {
		t.Errorf("snapshot mode %o, want 600", fi.Mode().Perm())
	}

	s2 := e.open()
	if s2.Len() != 4 {
		t.Errorf("reopened Len = %d, want 4", s2.Len())
	}
	for _, ip := range []string{"203.0.113.7", "192.168.1.9", "2001:db8::1", "2001:db8:1:2::3"} {
		if !s2.Allowed(netip.MustParseAddr(ip), t0) {
			t.Errorf("%s not allowed after reopen", ip)
		}
	}
}

func TestEmptyStoreWritesEmptyObject(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(e.path); string(data) != "{}" {
		t.Errorf("empty snapshot = %q, want {}", data)
	}
}

func assertNoJournals(t *testing.T, path string) {
	t.Helper()
	for _, p := range []string{path + ".journal", path + ".journal.old"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists after Close (err %v)", filepath.Base(p), err)
		}
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range ents {
		if strings.Contains(e.Name(), tempSuffix) {
			t.Errorf("temp file %s left behind", e.Name())
		}
	}
}

func TestCrashRecovery(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	mustGrant(t, s, "1.2.3.4", t0+100)
	mustGrant(t, s, "10.0.0.0/8", t0+200)
	mustGrant(t, s, "2001:db8::/64", t0+300)
	s.Revoke(mustPrefix(t, "10.0.0.0/8"))
	mustGrant(t, s, "1.2.3.4", t0+150)
	s.crash()

	if _, err := os.Stat(e.path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("crash wrote a snapshot (err %v); the test needs the journal path", err)
	}
	s2 := e.open()
	got := entryStrings(s2.Entries(t0))
	if want := []string{"1.2.3.4 150", "2001:db8::/64 300"}; !slices.Equal(got, want) {
		t.Errorf("after crash: %q, want %q", got, want)
	}
}

func entryStrings(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, FormatPrefix(e.Prefix)+" "+itoa(e.Expires))
	}
	slices.Sort(out)
	return out
}

// Two names for one whitelist (a symlinked file, a symlinked directory)
// take one lock, so the second store refuses instead of diverging.
func TestSymlinkedPathsShareTheLock(t *testing.T) {
	e := newEnv(t)
	mustGrant(t, e.open(), "10.0.0.1", t0+60) // e.open's store stays open (closed with the test)
	base := t.TempDir()
	fileLink := filepath.Join(base, "link.json")
	dirLink := filepath.Join(base, "dirlink")
	if err := os.Symlink(e.path, fileLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Dir(e.path), dirLink); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fileLink, filepath.Join(dirLink, filepath.Base(e.path))} {
		opts := e.options()
		opts.Path = p
		if s, err := Open(opts); !errors.Is(err, ErrLocked) {
			if err == nil {
				s.Close()
			}
			t.Errorf("Open(%s) = %v, want ErrLocked: it names the open whitelist %s", p, err, e.path)
		}
	}
}

// A path under a symlinked directory resolves the same before and after
// its missing directories exist (Open creates them): the pool key of the
// first start must equal that of every reload.
func TestResolvePathBeforeTheDirectoryExists(t *testing.T) {
	real := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(link, "state", "sub", "whitelist.json")
	before := ResolvePath(p)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	after := ResolvePath(p)
	want, _ := filepath.EvalSymlinks(real)
	want = filepath.Join(want, "state", "sub", "whitelist.json")
	if before != want || after != want {
		t.Fatalf("ResolvePath before mkdir %q, after %q, want %q both times", before, after, want)
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	_, err := Open(e.options())
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), e.path) || !strings.Contains(err.Error(), "another process") {
		t.Errorf("lock error %q should name the file and mention another process", err)
	}
	s.Close()
	s2, err := Open(e.options())
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s2.Close()
	if _, err := os.Stat(e.path + ".lock"); err != nil {
		t.Errorf("lock file should be kept: %v", err)
	}
}

func TestConcurrentGrantsShareFsyncs(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	const n = 200
	start := s.fsyncs.Load()
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 32)
			if _, err := s.Grant(p, t0+1000); err != nil {
				t.Error(err)
			}
		}()
	}
	close(gate)
	wg.Wait()
	fsyncs := s.fsyncs.Load() - start
	t.Logf("%d concurrent grants took %d fsyncs", n, fsyncs)
	if fsyncs >= n {
		t.Errorf("%d grants used %d fsyncs; group commit should share them", n, fsyncs)
	}
	s.crash()
	s2 := e.open()
	if s2.Len() != n {
		t.Errorf("after crash %d entries, want %d", s2.Len(), n)
	}
}

func TestSweeperRuns(t *testing.T) {
	e := newEnv(t)
	o := e.options()
	o.CleanupInterval = time.Hour
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	expired := make(chan Event, 1)
	s.Subscribe(func(ev Event) {
		if ev.Kind == Expired {
			expired <- ev
		}
	})
	mustGrant(t, s, "1.2.3.4", t0+10)
	e.clock.Advance(20)
	s.SetCleanupInterval(time.Millisecond) // restarts the timer with the short interval
	select {
	case ev := <-expired:
		if FormatPrefix(ev.Entry.Prefix) != "1.2.3.4" {
			t.Errorf("expired %v", ev.Entry)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sweeper did not run")
	}
}

func TestCheckDetectsUnwritableFile(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	mustGrant(t, s, "1.2.3.4", t0+10)
	if err := s.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
	s.broken.Store(true)
	if err := s.Check(); err == nil {
		t.Error("Check passed with a broken journal")
	}
	s.broken.Store(false)
	// Permission checks are meaningless for root; the rest is covered above.
	if os.Geteuid() == 0 {
		return
	}
	os.WriteFile(e.path, []byte("{}"), 0o400)
	if err := s.Check(); err == nil {
		t.Error("Check passed with a read-only snapshot")
	}
}

// TestConcurrentUse runs readers against grants, revokes, sweeps and
// evictions (meaningful under -race), and checks that replaying the event
// stream reproduces the final contents: events are complete and ordered.
func TestConcurrentUse(t *testing.T) {
	e := newEnv(t)
	e.max = 300
	s := e.open()
	mirror := map[netip.Prefix]int64{}
	s.Subscribe(func(ev Event) {
		switch ev.Kind {
		case Added, Extended:
			mirror[ev.Entry.Prefix] = ev.Entry.Expires
		case Removed, Expired:
			if mirror[ev.Entry.Prefix] != ev.Entry.Expires {
				t.Errorf("%s event for %v with expiry %d, mirror has %d", ev.Kind, ev.Entry.Prefix, ev.Entry.Expires, mirror[ev.Entry.Prefix])
			}
			delete(mirror, ev.Entry.Prefix)
		}
	})
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for r := range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ip := netip.AddrFrom4([4]byte{10, byte(r), byte(i >> 8), byte(i)})
				s.Allowed(ip, e.clock.Unix())
				s.Match(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)}), e.clock.Unix())
				if i%500 == 0 {
					s.Entries(e.clock.Unix())
					s.Check()
				}
			}
		}()
	}
	var writers sync.WaitGroup
	for w := range 8 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := range 150 {
				var p netip.Prefix
				if i%2 == 0 {
					p = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(w), 0, byte(i % 97)}), 32)
				} else {
					p = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 6: byte(w), 7: byte(i % 89)}), 64)
				}
				switch i % 7 {
				case 3:
					s.Revoke(p)
				case 5:
					s.Sweep()
				default:
					if _, err := s.Grant(p, e.clock.Unix()+int64(1+i%40)); err != nil {
						t.Error(err)
					}
				}
				if w == 0 && i%10 == 0 {
					e.clock.Advance(1)
				}
			}
		}()
	}
	writers.Wait()
	close(stop)
	readers.Wait()

	var final []string
	for _, en := range s.Entries(0) { // everything held, expired or not
		final = append(final, fmt.Sprintf("%v %d", en.Prefix, en.Expires))
	}
	var replayed []string
	for p, exp := range mirror {
		replayed = append(replayed, fmt.Sprintf("%v %d", p, exp))
	}
	slices.Sort(final)
	slices.Sort(replayed)
	if !slices.Equal(final, replayed) {
		t.Errorf("event replay differs from the store:\nstore %d entries, replay %d", len(final), len(replayed))
	}
	if s.Len() > e.max {
		t.Errorf("Len %d exceeds MaxEntries %d", s.Len(), e.max)
	}
	s.Close()
	s2 := e.open()
	if got := len(s2.Entries(e.clock.Unix())); got != len(s.Entries(e.clock.Unix())) {
		t.Errorf("reopened store has %d active entries, want %d", got, len(s.Entries(e.clock.Unix())))
	}
}

func TestCloseStopsGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	e := newEnv(t)
	s := e.open()
	s.exec(func() { s.w.minCompact = 1 }) // make compactions happen too
	for i := range 20 {
		mustGrant(t, s, fmt.Sprintf("10.0.0.%d", i), t0+100)
	}
	s.Close()
	// Exited goroutines may take a moment to be accounted for.
	for range 100 {
		if runtime.NumGoroutine() <= before {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%d goroutines after Close, %d before Open", runtime.NumGoroutine(), before)
}

func TestObserveSyncSeesEveryJournalFsync(t *testing.T) {
	e := newEnv(t)
	var calls atomic.Int64
	var negative atomic.Bool
	opts := e.options()
	opts.ObserveSync = func(d time.Duration) {
		calls.Add(1)
		if d < 0 {
			negative.Store(true)
		}
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 3 {
		mustGrant(t, s, fmt.Sprintf("10.0.0.%d", i), t0+100)
	}
	if _, err := s.Revoke(netip.MustParsePrefix("10.0.0.0/32")); err != nil {
		t.Fatal(err)
	}
	// Each call returns after its batch's fsync and its observation.
	if got, want := calls.Load(), s.fsyncs.Load(); got != want || got < 4 {
		t.Errorf("ObserveSync called %d times for %d journal fsyncs (4 commits)", got, want)
	}
	if negative.Load() {
		t.Error("ObserveSync saw a negative duration")
	}
}

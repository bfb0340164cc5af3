package store

import (
	"net/netip"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// t0 is the fake clock's start: 2026-11-22T00:00:00Z.
const t0 = 1795305600

type fakeClock struct{ sec atomic.Int64 }

func newClock() *fakeClock {
	c := &fakeClock{}
	c.sec.Store(t0)
	return c
}

func (c *fakeClock) Now() time.Time      { return time.Unix(c.sec.Load(), 0) }
func (c *fakeClock) Unix() int64         { return c.sec.Load() }
func (c *fakeClock) Advance(seconds int) { c.sec.Add(int64(seconds)) }

type testEnv struct {
	t     testing.TB
	path  string
	clock *fakeClock
	max   int
	log   *zap.Logger
}

func newEnv(t testing.TB) *testEnv {
	return &testEnv{
		t:     t,
		path:  filepath.Join(t.TempDir(), "data", "whitelist.json"),
		clock: newClock(),
		max:   1000,
		log:   zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
	}
}

func (e *testEnv) options() Options {
	return Options{
		Path:            e.path,
		MaxEntries:      e.max,
		CleanupInterval: time.Hour, // tests sweep explicitly
		Now:             e.clock.Now,
		Logger:          e.log,
	}
}

// open opens the store and closes it at the end of the test (unless the
// test closed or crashed it already).
func (e *testEnv) open() *Store {
	e.t.Helper()
	s, err := Open(e.options())
	if err != nil {
		e.t.Fatalf("Open: %v", err)
	}
	e.t.Cleanup(func() { s.Close() })
	return s
}

// crash stops the store like kill -9 would: no final snapshot, journals and
// lock left as they are (the kernel releases the lock of a dead process).
func (s *Store) crash() {
	s.crashed.Store(true)
	s.Close()
}

// exec runs fn on the committer goroutine, where the writer state lives.
func (s *Store) exec(fn func()) {
	if err := s.submit(&request{kind: reqExec, fn: fn}); err != nil {
		panic(err)
	}
}

// bulkLoad inserts n entries straight into memory, without journaling, the
// way a grant's apply step would (index + heap). For benchmarks and memory
// measurements that need a million entries.
func (s *Store) bulkLoad(n int, gen func(i int) (netip.Prefix, int64)) {
	s.bulkLoadIn(n, nil, gen)
}

// bulkLoadIn is bulkLoad with entry i in the scope set setOf(i) (a
// canonical set; nil: full access), or all full-access if setOf is nil.
func (s *Store) bulkLoadIn(n int, setOf func(i int) []string, gen func(i int) (netip.Prefix, int64)) {
	s.exec(func() {
		for i := range n {
			p, exp := gen(i)
			k := keyOf(p)
			if setOf != nil {
				k.set = s.internSet(setOf(i))
			}
			if s.indexOf(k).set(k, exp) {
				s.count.Add(1)
				s.w.own.held[noOwner]++
			}
			s.w.own.heaps[noOwner].push(keyExp{k, exp})
		}
		s.publishProbes()
	})
}

func mustPrefix(t testing.TB, s string) netip.Prefix {
	t.Helper()
	p, err := ParseEntryKey(s)
	if err != nil {
		t.Fatalf("ParseEntryKey(%q): %v", s, err)
	}
	return p
}

func mustGrant(t testing.TB, s *Store, key string, exp int64) GrantResult {
	t.Helper()
	r, err := s.Grant(mustPrefix(t, key), exp)
	if err != nil {
		t.Fatalf("Grant(%s, %d): %v", key, exp, err)
	}
	return r
}

// recorder collects events.
type recorder struct {
	events []Event
}

func record(s *Store) *recorder {
	r := &recorder{}
	s.Subscribe(func(ev Event) { r.events = append(r.events, ev) })
	return r
}

// take returns the events so far as "kind key exp [prev] [evicted]" strings. Events
// are delivered before the mutating call returns, so no locking is needed
// when the test only reads after its own calls.
func (r *recorder) take() []string {
	var out []string
	for _, ev := range r.events {
		s := ev.Kind.String() + " " + FormatPrefix(ev.Entry.Prefix) + " " + itoa(ev.Entry.Expires)
		if ev.Previous != 0 {
			s += " " + itoa(ev.Previous)
		}
		if ev.Evicted {
			s += " evicted"
		}
		if ev.Remote {
			s += " remote"
		}
		out = append(out, s)
	}
	r.events = nil
	return out
}

// itoa shows a unix time as seconds after t0.
func itoa(v int64) string { return strconv.FormatInt(v-t0, 10) }

package store

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// crashedStore leaves a journal with three live entries and no snapshot.
func crashedStore(t *testing.T, e *testEnv) {
	t.Helper()
	s := e.open()
	mustGrant(t, s, "1.2.3.4", t0+100)
	mustGrant(t, s, "2001:db8::/64", t0+200)
	mustGrant(t, s, "10.0.0.0/8", t0+300)
	s.crash()
}

func TestTornJournalTailIsCutOff(t *testing.T) {
	tails := map[string]string{
		"incomplete line": "1a2b3c4d + 9.9.9.9 17",
		"bad checksum":    "00000000 + 9.9.9.9 1795319276\n",
		"zero bytes":      strings.Repeat("\x00", 4096),
		"garbage":         "\xff\xfe garbage\n\x00\x00more garbage",
		"short line":      "\n",
	}
	for name, tail := range tails {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			crashedStore(t, e)
			jp := e.path + ".journal"
			good, err := os.ReadFile(jp)
			if err != nil {
				t.Fatal(err)
			}
			appendFile(t, jp, tail)

			s := e.open()
			if got := entryStrings(s.Entries(t0)); len(got) != 3 {
				t.Errorf("entries after torn tail: %q", got)
			}
			if data, _ := os.ReadFile(jp); !bytes.Equal(data, good) {
				t.Errorf("journal not truncated to its good prefix: %d bytes, want %d", len(data), len(good))
			}
			mustGrant(t, s, "5.5.5.5", t0+50)
			s.crash()
			s2 := e.open()
			if s2.Len() != 4 {
				t.Errorf("after another crash Len = %d, want 4", s2.Len())
			}
		})
	}
}

func appendFile(t *testing.T, path, data string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func TestJournalCorruptionInTheMiddle(t *testing.T) {
	e := newEnv(t)
	crashedStore(t, e)
	jp := e.path + ".journal"
	data, _ := os.ReadFile(jp)
	lines := strings.SplitAfter(string(data), "\n")
	lines[1] = strings.Replace(lines[1], "+", "-", 1) // checksum no longer matches
	corrupt := strings.Join(lines, "")
	os.WriteFile(jp, []byte(corrupt), 0o600)

	_, err := Open(e.options())
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open = %v, want ErrCorrupt", err)
	}
	if !strings.Contains(err.Error(), jp) || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("error %q should name %s and line 2", err, jp)
	}
	if after, _ := os.ReadFile(jp); string(after) != corrupt {
		t.Error("Open modified a corrupt journal")
	}
	if _, err := os.Stat(e.path); !errors.Is(err, os.ErrNotExist) {
		t.Error("Open wrote a snapshot despite a corrupt journal")
	}
	// The lock was released: a fixed file can be opened right away.
	os.WriteFile(jp, data, 0o600)
	if s := e.open(); s.Len() != 3 {
		t.Errorf("Len = %d after repair", s.Len())
	}
}

func TestJournalRecordWithValidChecksumButBadContent(t *testing.T) {
	e := newEnv(t)
	crashedStore(t, e)
	bad := "* 1.2.3.4 5" // checksum fine, operation unknown
	appendFile(t, e.path+".journal", fmt.Sprintf("%08x %s\n", crc32c(bad), bad))
	_, err := Open(e.options())
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "line 4") {
		t.Errorf("Open = %v, want ErrCorrupt at line 4", err)
	}
	var ce *CorruptionError
	if !errors.As(err, &ce) || ce.File != e.path+".journal" || ce.Kind != "journal" || ce.Line != 4 || !strings.Contains(ce.Err.Error(), "unknown operation") {
		t.Errorf("Open = %#v, want a CorruptionError naming the journal, line 4 and the cause", err)
	}
}

func TestJournalRecordFormat(t *testing.T) {
	rec := string(appendRecord(nil, '+', netip.MustParsePrefix("203.0.113.7/32"), 1795319276, nil, "", grantInfo{}))
	body := "+ 203.0.113.7 1795319276"
	if want := fmt.Sprintf("%08x %s\n", crc32c(body), body); rec != want {
		t.Errorf("record %q, want %q", rec, want)
	}
	rec = string(appendRecord(nil, '-', netip.MustParsePrefix("2001:db8::/64"), 0, nil, "", grantInfo{}))
	if !strings.HasSuffix(rec, " - 2001:db8::/64\n") {
		t.Errorf("delete record %q", rec)
	}
	r, err := parseRecord([]byte(strings.TrimSuffix(rec, "\n")))
	if err != nil || r.op != '-' || r.prefix != netip.MustParsePrefix("2001:db8::/64") {
		t.Errorf("parseRecord(%q) = %+v, %v", rec, r, err)
	}
}

func TestCorruptSnapshotIsNotTouched(t *testing.T) {
	cases := map[string]struct{ data, want string }{
		"invalid json":     {`{"1.2.3.4": 1795319276`, "invalid JSON"},
		"empty file":       {``, "empty"},
		"array":            {`["1.2.3.4"]`, "expected a JSON object"},
		"number top level": {`42`, "expected a JSON object"},
		"float value":      {`{"1.2.3.4": 1795319276.5}`, `"1.2.3.4"`},
		"exponent value":   {`{"1.2.3.4": 1.7e9}`, `"1.2.3.4"`},
		"string value":     {`{"1.2.3.4": "1795319276"}`, `"1.2.3.4"`},
		"null value":       {`{"1.2.3.4": null}`, `"1.2.3.4"`},
		"object value":     {`{"1.2.3.4": {}}`, `"1.2.3.4"`},
		"huge value":       {`{"1.2.3.4": 99999999999999999999}`, `"1.2.3.4"`},
		"bad key":          {`{"not-an-ip": 1795319276}`, `"not-an-ip"`},
		"trailing data":    {`{} {}`, "after the JSON object"},
		"trailing garbage": {`{}x`, "invalid JSON"},
		"nan":              {`{"1.2.3.4": NaN}`, "invalid JSON"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			os.MkdirAll(strings.TrimSuffix(e.path, "/whitelist.json"), 0o700)
			os.WriteFile(e.path, []byte(tc.data), 0o600)
			s, err := Open(e.options())
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), e.path) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q: want ErrCorrupt naming the file and containing %s", err, tc.want)
			}
			if data, _ := os.ReadFile(e.path); string(data) != tc.data {
				t.Error("corrupt snapshot was modified")
			}
		})
	}
}

func TestReadOriginalServiceFile(t *testing.T) {
	e := newEnv(t)
	// As the Python service may have written it (plus some hand edits).
	orig := fmt.Sprintf(`{
  "192.168.1.77/24": %d,
  "192.168.1.0/24": %d,
  "2001:0DB8::1": %d,
  "::ffff:198.51.100.9": %d,
  "::ffff:198.51.100.0/120": %d,
  "::ffff:0:0/96": %d,
  "fe80::1%%eth0": %d,
  "203.0.113.7/32": %d,
  "203.0.113.8": %d,
  "2001:db8:aaaa::/48": %d
}`, t0+500, t0+100, t0+200, t0+300, t0+400, t0+450, t0+600, t0+700, t0-10, t0+800)
	os.MkdirAll(strings.TrimSuffix(e.path, "/whitelist.json"), 0o700)
	os.WriteFile(e.path, []byte(orig), 0o600)
	s := e.open()
	want := []string{
		"192.168.1.0/24 500", // duplicate after masking: later expiry wins
		"198.51.100.9 300",   // mapped host: the IPv4 host; mapped ranges skipped
		"2001:db8::1 200",
		"2001:db8:aaaa::/48 800",
		"203.0.113.7 700",
	}
	if got := entryStrings(s.Entries(t0)); !slices.Equal(got, want) {
		t.Errorf("entries:\n got %q\nwant %q", got, want)
	}
	if s.Allowed(netip.MustParseAddr("8.8.8.8"), t0) {
		t.Error("the mapped ::ffff:0:0/96 became a grant for all of IPv4")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Rewritten canonically on close; the dropped keys are gone.
	data, _ := os.ReadFile(e.path)
	for _, gone := range []string{"fe80", "::ffff", "/32", "203.0.113.8", "DB8"} {
		if strings.Contains(string(data), gone) {
			t.Errorf("rewritten snapshot still contains %q:\n%s", gone, data)
		}
	}
}

func TestOpenTrimsToMaxEntries(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	for i := range 5 {
		mustGrant(t, s, fmt.Sprintf("10.0.0.%d", i), t0+100+int64(i))
	}
	s.Close()
	e.max = 3
	s = e.open()
	if got := entryStrings(s.Entries(t0)); !slices.Equal(got, []string{"10.0.0.2 102", "10.0.0.3 103", "10.0.0.4 104"}) {
		t.Errorf("after trim: %q", got)
	}
	s.crash()
	// The trim was journaled: the dropped entries do not come back.
	e.max = 100
	s = e.open()
	if s.Len() != 3 {
		t.Errorf("after crash and a higher limit Len = %d, want 3", s.Len())
	}
}

func TestWriteFailureLeavesMemoryUnchanged(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	rec := record(s)
	mustGrant(t, s, "1.1.1.1", t0+100)
	jp := e.path + ".journal"
	before, _ := os.ReadFile(jp)

	// Disk full: half of the batch reaches the file, then ENOSPC.
	s.hooks.Store(&faultHooks{write: func(f *os.File, b []byte) (int, error) {
		n, _ := f.Write(b[:len(b)/2])
		return n, syscall.ENOSPC
	}})
	_, err := s.Grant(mustPrefix(t, "2.2.2.2"), t0+100)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Grant on a full disk = %v, want ENOSPC", err)
	}
	if n, err := s.Revoke(mustPrefix(t, "1.1.1.1")); n != 0 || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Revoke on a full disk = %v, %v", n, err)
	}
	if s.Len() != 1 || s.Allowed(netip.MustParseAddr("2.2.2.2"), t0) || !s.Allowed(netip.MustParseAddr("1.1.1.1"), t0) {
		t.Error("memory changed by a failed batch")
	}
	if after, _ := os.ReadFile(jp); !bytes.Equal(after, before) {
		t.Errorf("journal not rolled back: %q", after)
	}
	if err := s.Check(); err != nil {
		t.Errorf("Check after a rolled-back failure: %v", err)
	}

	s.hooks.Store(nil) // space is back
	mustGrant(t, s, "3.3.3.3", t0+100)
	if want := []string{"added 1.1.1.1 100", "added 3.3.3.3 100"}; !slices.Equal(rec.take(), want) {
		t.Errorf("events should only show committed changes")
	}
	s.crash()
	s2 := e.open()
	if got := entryStrings(s2.Entries(t0)); !slices.Equal(got, []string{"1.1.1.1 100", "3.3.3.3 100"}) {
		t.Errorf("after crash: %q", got)
	}
}

func TestBrokenJournalIsReplaced(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	mustGrant(t, s, "1.1.1.1", t0+100)

	// The records reach the file, fsync fails, and the rollback fails too:
	// the failed grant's record sits in the journal.
	s.hooks.Store(&faultHooks{
		write:    func(f *os.File, b []byte) (int, error) { f.Write(b); return len(b), syscall.EIO },
		truncate: func(*os.File, int64) error { return syscall.EIO },
		snapshot: func() error { return syscall.ENOSPC },
	})
	if _, err := s.Grant(mustPrefix(t, "6.6.6.6"), t0+100); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Grant = %v, want EIO", err)
	}
	if err := s.Check(); err == nil {
		t.Error("Check passed with a broken journal")
	}
	if data, _ := os.ReadFile(e.path + ".journal"); !strings.Contains(string(data), "6.6.6.6") {
		t.Fatal("test setup: the failed record should be in the journal")
	}
	// The snapshot cannot be written either: writes keep failing safely.
	if _, err := s.Grant(mustPrefix(t, "7.7.7.7"), t0+100); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Grant while the snapshot cannot be written = %v", err)
	}

	s.hooks.Store(nil)
	mustGrant(t, s, "8.8.8.8", t0+100)
	if err := s.Check(); err != nil {
		t.Errorf("Check after recovery: %v", err)
	}
	if data, _ := os.ReadFile(e.path + ".journal"); strings.Contains(string(data), "6.6.6.6") {
		t.Error("the failed record survived the journal replacement")
	}
	s.crash()
	s2 := e.open()
	if got := entryStrings(s2.Entries(t0)); !slices.Equal(got, []string{"1.1.1.1 100", "8.8.8.8 100"}) {
		t.Errorf("after crash: %q (a failed grant resurfaced?)", got)
	}
}

// A double fault (fsync and rollback both fail) is repaired before the
// failed grant is answered, so a crash right after the answer cannot replay
// the failed record.
func TestDoubleFaultRecoversBeforeAnswering(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	mustGrant(t, s, "1.1.1.1", t0+100)
	s.hooks.Store(&faultHooks{
		write:    func(f *os.File, b []byte) (int, error) { f.Write(b); return len(b), syscall.EIO },
		truncate: func(*os.File, int64) error { return syscall.EIO },
	})
	if _, err := s.Grant(mustPrefix(t, "6.6.6.6"), t0+100); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Grant = %v, want EIO", err)
	}
	if data, _ := os.ReadFile(e.path + ".journal"); strings.Contains(string(data), "6.6.6.6") {
		t.Fatal("the failed record is still in the journal after Grant returned")
	}
	s.hooks.Store(nil)
	if err := s.Check(); err != nil {
		t.Errorf("Check after the repair: %v", err)
	}
	s.crash()
	s2 := e.open()
	if got := entryStrings(s2.Entries(t0)); !slices.Equal(got, []string{"1.1.1.1 100"}) {
		t.Errorf("after crash: %q, want only the acknowledged grant", got)
	}
}

func TestCompaction(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	s.exec(func() { s.w.minCompact = 2000 })
	var want []string
	for i := range 120 {
		key := fmt.Sprintf("10.0.%d.0/24", i)
		mustGrant(t, s, key, t0+1000+int64(i))
		if i%3 == 0 {
			s.Revoke(mustPrefix(t, key))
		} else {
			want = append(want, fmt.Sprintf("%s %d", key, 1000+i))
		}
	}
	slices.Sort(want)
	var compactedSize int64
	s.exec(func() { s.waitCompaction(); compactedSize = s.w.snapshotSize })
	if compactedSize == 0 {
		t.Fatal("no compaction happened")
	}
	if _, err := os.Stat(e.path + ".journal.old"); !errors.Is(err, os.ErrNotExist) {
		t.Error(".journal.old not removed after compaction")
	}
	if fi, _ := os.Stat(e.path + ".journal"); fi.Size() > 2000 {
		t.Errorf("journal is %d bytes after compaction", fi.Size())
	}
	s.crash()

	s2 := e.open()
	if got := entryStrings(s2.Entries(t0)); !slices.Equal(got, want) {
		t.Errorf("after compaction and crash:\n got %q\nwant %q", got, want)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	assertNoJournals(t, e.path)
	s3 := e.open()
	if got := entryStrings(s3.Entries(t0)); !slices.Equal(got, want) {
		t.Errorf("after clean close: %q", got)
	}
}

func TestOldJournalReplayIsIdempotent(t *testing.T) {
	// A crash after the snapshot was renamed into place but before
	// .journal.old was deleted leaves both; replaying is harmless.
	e := newEnv(t)
	s := e.open()
	mustGrant(t, s, "1.1.1.1", t0+100)
	mustGrant(t, s, "2.2.2.2", t0+100)
	s.Revoke(mustPrefix(t, "1.1.1.1"))
	mustGrant(t, s, "3.3.3.3", t0+100)
	old, _ := os.ReadFile(e.path + ".journal")
	s.Close() // snapshot = {2.2.2.2, 3.3.3.3}
	os.WriteFile(e.path+".journal.old", old, 0o600)
	// A later change in .journal touches a key that .journal.old also sets.
	s = e.open()
	s.Revoke(mustPrefix(t, "2.2.2.2"))
	s.crash()
	os.WriteFile(e.path+".journal.old", old, 0o600)

	s2 := e.open()
	if got := entryStrings(s2.Entries(t0)); !slices.Equal(got, []string{"3.3.3.3 100"}) {
		t.Errorf("entries %q", got)
	}
	// The pending compaction runs at startup and removes .journal.old.
	s2.exec(func() { s2.waitCompaction() })
	if _, err := os.Stat(e.path + ".journal.old"); !errors.Is(err, os.ErrNotExist) {
		t.Error(".journal.old still there after startup compaction")
	}
}

func TestHeapCompactsUnderRegrants(t *testing.T) {
	e := newEnv(t)
	e.max = 8
	s := e.open()
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte((g + i) % 8)}), 32)
				if _, err := s.Grant(p, t0+100+int64(g*100+i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var heapLen int
	s.exec(func() { heapLen = s.w.own.heapItems() })
	if heapLen > 2*s.Len()+heapSlack {
		t.Errorf("heap holds %d items for %d entries", heapLen, s.Len())
	}
	if s.Len() != 8 {
		t.Errorf("Len = %d, want 8 (re-grants never evict)", s.Len())
	}
	// The heap still orders correctly: a new entry evicts the soonest.
	soonest := slices.MinFunc(s.Entries(t0), func(a, b Entry) int { return int(a.Expires - b.Expires) })
	r := mustGrant(t, s, "10.9.9.9", t0+99999)
	if len(r.Evicted) != 1 || r.Evicted[0].Prefix != soonest.Prefix || r.Evicted[0].Expires != soonest.Expires {
		t.Errorf("evicted %v, want %v", r.Evicted, soonest)
	}
}

func TestStaleTempFilesRemoved(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	s.Close()
	tmp := e.path + tempSuffix + "123"
	os.WriteFile(tmp, []byte("partial"), 0o600)
	e.open()
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Error("stale temp file not removed by Open")
	}
}

func crc32c(s string) uint32 { return crc32.Checksum([]byte(s), castagnoli) }

func TestJournalEntriesExpiredWhileDown(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	mustGrant(t, s, "1.1.1.1", t0+10)
	mustGrant(t, s, "2.2.2.2", t0+100)
	s.crash()
	e.clock.Advance(50)
	s2 := e.open()
	if got := entryStrings(s2.Entries(0)); !slices.Equal(got, []string{"2.2.2.2 100"}) {
		t.Errorf("entries %q: the expired journal entry should be dropped", got)
	}
}

// Keys the Python Knocker could write but that have no meaning here are skipped,
// each logged with its own reason.
func TestUnsupportedKeysLogTheirReason(t *testing.T) {
	e := newEnv(t)
	core, logs := observer.New(zap.WarnLevel)
	e.log = zap.New(core)
	if err := os.MkdirAll(filepath.Dir(e.path), 0o700); err != nil {
		t.Fatal(err)
	}
	snap := fmt.Sprintf(`{"fe80::1%%eth0": %d, "::ffff:0:0/96": %d, "10.0.0.1": %d}`, t0+100, t0+100, t0+100)
	if err := os.WriteFile(e.path, []byte(snap), 0o600); err != nil {
		t.Fatal(err)
	}
	s := e.open()
	if s.Len() != 1 {
		t.Fatalf("Len %d, want only 10.0.0.1", s.Len())
	}
	reasons := map[string]string{}
	for _, l := range logs.FilterMessage("skipping an unsupported whitelist entry").All() {
		reasons[l.ContextMap()["key"].(string)] = l.ContextMap()["reason"].(string)
	}
	if !strings.Contains(reasons["fe80::1%eth0"], "zone-scoped") || !strings.Contains(reasons["::ffff:0:0/96"], "IPv4-mapped") {
		t.Fatalf("reasons %q", reasons)
	}
}

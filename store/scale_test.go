package store

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// Scale tests build a million entries; they are skipped with -short and
// under the race detector, which makes them slow without adding coverage.
func skipScale(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("million-entry test skipped in -short and -race runs")
	}
}

// TestMemoryPerGrant measures the whole store's heap growth for 1M mixed
// grants (index maps and expiry heap), inserted the way grants apply them.
func TestMemoryPerGrant(t *testing.T) {
	skipScale(t)
	const n = 1_000_000
	e := newEnv(t)
	e.max = 2 * n
	s := e.open()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s.bulkLoad(n, mixedEntry)
	runtime.GC()
	runtime.ReadMemStats(&after)
	if s.Len() != n {
		t.Fatalf("Len = %d", s.Len())
	}
	perGrant := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%d entries: %.1f bytes per grant (heap %.1f MiB)", n, perGrant, float64(after.HeapAlloc-before.HeapAlloc)/(1<<20))
	if perGrant > 200 {
		t.Errorf("%.1f bytes per grant, want well under 200", perGrant)
	}
	runtime.KeepAlive(s)
	s.crash()
}

// TestLoadMillionEntries writes a 1M-entry snapshot and reports how long
// Open takes to load it (no timing assertion: machines are noisy).
func TestLoadMillionEntries(t *testing.T) {
	skipScale(t)
	const n = 1_000_000
	e := newEnv(t)
	e.max = n
	os.MkdirAll(filepath.Dir(e.path), 0o700)
	recs := make([]keyExp, n)
	for i := range recs {
		p, exp := mixedEntry(i)
		recs[i] = keyExp{keyOf(p), exp}
	}
	size, err := writeSnapshot(e.path, recs)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s := e.open()
	elapsed := time.Since(start)
	if s.Len() != n {
		t.Fatalf("loaded %d entries, want %d", s.Len(), n)
	}
	t.Logf("Open loaded %d entries (%.1f MiB snapshot) in %v", n, float64(size)/(1<<20), elapsed)
	s.crash()
}

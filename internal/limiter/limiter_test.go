package limiter

import (
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

func limitsOf(window int64, successLimit, failureLimit int) Limits {
	return Limits{Window: window, PerKind: [2]int{Success: successLimit, Failure: failureLimit}}
}

func TestLimiterSlidingWindow(t *testing.T) {
	l, lim := New(), limitsOf(60, 2, 3)
	a := netip.MustParseAddr("198.51.100.1")
	b := netip.MustParseAddr("198.51.100.2")

	for i := range 3 {
		if ok, _ := l.record(a, Failure, 1000+int64(i), lim); !ok {
			t.Fatalf("failure %d refused below the limit", i+1)
		}
	}
	if ok, retry := l.record(a, Failure, 1010, lim); ok || retry != 50 {
		t.Fatalf("4th failure: ok=%v retry=%d; want refused, 50 s (the first event frees at 1060)", ok, retry)
	}
	if ok, _ := l.record(b, Failure, 1010, lim); !ok {
		t.Fatal("another actor is limited")
	}
	if ok, _ := l.record(a, Success, 1010, lim); !ok {
		t.Fatal("the success bucket is shared with failures")
	}
	// An event frees its slot exactly one window later.
	if ok, _ := l.record(a, Failure, 1059, lim); ok {
		t.Fatal("slot freed early")
	}
	if ok, _ := l.record(a, Failure, 1060, lim); !ok {
		t.Fatal("slot not freed after one window")
	}
}

func TestLimiterReleaseAndUnlimited(t *testing.T) {
	l, lim := New(), limitsOf(60, 1, 0)
	a := netip.MustParseAddr("2001:db8::1")
	if ok, _ := l.record(a, Success, 5, lim); !ok {
		t.Fatal("first success refused")
	}
	if ok, _ := l.record(a, Success, 5, lim); ok {
		t.Fatal("success limit 1 not enforced")
	}
	l.release(a, Success, 5)
	if ok, _ := l.record(a, Success, 6, lim); !ok {
		t.Fatal("released reservation still counted")
	}
	for i := range 1000 {
		if ok, _ := l.record(a, Failure, 6+int64(i%2), lim); !ok {
			t.Fatal("failure limit 0 must mean unlimited")
		}
	}
	if l.size() != 1 {
		t.Fatalf("unlimited failures are tracked: %d buckets", l.size())
	}
}

// Limits belong to the caller's config: the same buckets checked with
// another config's limits give that config's answer.
func TestLimiterLimitsPerCall(t *testing.T) {
	l := New()
	a := netip.MustParseAddr("198.51.100.9")
	for range 2 {
		l.record(a, Failure, 10, limitsOf(60, 20, 5))
	}
	if ok, _ := l.record(a, Failure, 10, limitsOf(60, 20, 2)); ok {
		t.Fatal("a stricter config's limit was not applied to existing buckets")
	}
	if ok, _ := l.record(a, Failure, 10, limitsOf(60, 20, 5)); !ok {
		t.Fatal("the looser config's limit was not applied")
	}
}

func TestLimiterIPv6CountsPerSlash64(t *testing.T) {
	l, lim := New(), limitsOf(60, 20, 3)
	for i := range 3 {
		ip := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i + 1)})
		if ok, _ := l.record(ip, Failure, 1, lim); !ok {
			t.Fatalf("failure %d refused", i+1)
		}
	}
	if ok, _ := l.record(netip.MustParseAddr("2001:db8::ffff:1"), Failure, 1, lim); ok {
		t.Fatal("a new address in the same /64 got a fresh bucket")
	}
	if ok, _ := l.record(netip.MustParseAddr("2001:db8:0:1::1"), Failure, 1, lim); !ok {
		t.Fatal("another /64 is limited")
	}
}

// Concurrent attempts cannot overshoot: the slot is taken atomically.
func TestLimiterConcurrentReservations(t *testing.T) {
	l, lim := New(), limitsOf(60, 20, 3)
	a := netip.MustParseAddr("198.51.100.77")
	var granted atomic.Int32
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			if ok, _ := l.record(a, Failure, 100, lim); ok {
				granted.Add(1)
			}
		})
	}
	wg.Wait()
	if n := granted.Load(); n != 3 {
		t.Fatalf("%d of 64 concurrent attempts got a failure slot, want exactly 3", n)
	}
}

func TestLimiterPrunesIdleActors(t *testing.T) {
	l, lim := New(), limitsOf(60, 20, 30)
	for i := range 100000 {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.record(ip, Failure, 100, lim)
	}
	t.Logf("tracked %d attacking IPs within one window", l.size())
	l.record(netip.MustParseAddr("192.0.2.1"), Failure, 161, lim)
	if n := l.size(); n != 1 {
		t.Fatalf("after a window of silence %d buckets remain, want 1", n)
	}
}

// TestBruteForceMemoryBounded: 100,000 attacking addresses cost a bounded,
// measured amount, and are forgotten one window later.
func TestBruteForceMemoryBounded(t *testing.T) {
	l, lim := New(), Default
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const attackers = 100000
	for i := range attackers {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		for range 3 {
			l.record(ip, Failure, 1000, lim)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perActor := float64(after.HeapAlloc-before.HeapAlloc) / attackers
	if perActor > 512 {
		t.Fatalf("%.0f bytes per attacking address", perActor)
	}
	l.record(netip.MustParseAddr("192.0.2.1"), Failure, 1061, lim)
	if n := l.size(); n != 1 {
		t.Fatalf("%d buckets left a window later, want 1", n)
	}
	// ...and their memory is given back, not kept by the map's buckets.
	var later runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&later)
	runtime.KeepAlive(l) // in Caddy it lives on in its pool
	grown := float64(after.HeapAlloc - before.HeapAlloc)
	kept := float64(int64(later.HeapAlloc) - int64(before.HeapAlloc))
	if kept > grown/10 {
		t.Fatalf("a window later the limiter still holds %.1f MiB of the %.1f MiB the attack took", kept/(1<<20), grown/(1<<20))
	}
	t.Logf("figure: %d attacking addresses, 3 failures each: %.0f bytes each (%.1f MiB), all dropped one window later, %.2f MiB of it still in use after GC",
		attackers, perActor, grown/(1<<20), max(kept, 0)/(1<<20))
}

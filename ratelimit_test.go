package knocker

import (
	"net/netip"
	"testing"
)

func TestLimiterSlidingWindow(t *testing.T) {
	l := newLimiter()
	l.configure(60, 2, 3)
	a := netip.MustParseAddr("198.51.100.1")
	b := netip.MustParseAddr("198.51.100.2")

	for i := range 3 {
		if !l.record(a, failure, 1000+int64(i)) {
			t.Fatalf("failure %d refused below the limit", i+1)
		}
	}
	if full, retry := l.full(a, failure, 1010); !full || retry != 50 {
		t.Fatalf("full = %v, retry %d; want true, 50 (the first event frees at 1060)", full, retry)
	}
	if l.record(a, failure, 1010) {
		t.Fatal("a fourth failure was recorded")
	}
	if full, _ := l.full(b, failure, 1010); full {
		t.Fatal("another actor is limited")
	}
	if full, _ := l.full(a, success, 1010); full {
		t.Fatal("the success bucket is shared with failures")
	}
	// An event frees its slot exactly one window later.
	if full, _ := l.full(a, failure, 1059); !full {
		t.Fatal("slot freed early")
	}
	if full, _ := l.full(a, failure, 1060); full {
		t.Fatal("slot not freed after one window")
	}
}

func TestLimiterReleaseAndUnlimited(t *testing.T) {
	l := newLimiter()
	l.configure(60, 1, 0)
	a := netip.MustParseAddr("2001:db8::1")
	if !l.record(a, success, 5) || l.record(a, success, 5) {
		t.Fatal("success limit 1 not enforced")
	}
	l.release(a, success, 5)
	if !l.record(a, success, 6) {
		t.Fatal("released reservation still counted")
	}
	for i := range 1000 {
		if !l.record(a, failure, 6+int64(i%2)) {
			t.Fatal("failure limit 0 must mean unlimited")
		}
	}
	if l.size() != 1 {
		t.Fatalf("unlimited failures are tracked: %d buckets", l.size())
	}
}

func TestLimiterPrunesIdleActors(t *testing.T) {
	l := newLimiter()
	l.configure(60, 20, 30)
	for i := range 100000 {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.record(ip, failure, 100)
	}
	t.Logf("tracked %d attacking IPs within one window", l.size())
	l.record(netip.MustParseAddr("192.0.2.1"), failure, 161)
	if n := l.size(); n != 1 {
		t.Fatalf("after a window of silence %d buckets remain, want 1", n)
	}
}

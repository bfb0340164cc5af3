package limiter

import (
	"net/netip"
	"testing"
)

func TestBanRefusesUntilItEnds(t *testing.T) {
	l := New()
	lim := Limits{Window: 60, PerKind: [2]int{Success: 5, Failure: 3}}
	ip := netip.MustParseAddr("2001:db8::5")
	l.Ban(netip.MustParseAddr("2001:db8::1"), 1000) // the same /64
	if _, retry, ok := l.Reserve(ip, 990, lim); ok || retry != 10 {
		t.Fatalf("banned client reserved (ok %v, retry %d), want refused for 10s", ok, retry)
	}
	if _, _, ok := l.Reserve(netip.MustParseAddr("2001:db8:1::1"), 990, lim); !ok {
		t.Fatal("another /64 was refused")
	}
	if _, _, ok := l.Reserve(ip, 1000, lim); !ok {
		t.Fatal("still refused once the ban ended")
	}
}

func TestFailuresFull(t *testing.T) {
	l := New()
	lim := Limits{Window: 60, PerKind: [2]int{Success: 5, Failure: 2}}
	ip := netip.MustParseAddr("192.0.2.1")
	for i, at := range []int64{100, 110} {
		res, _, ok := l.Reserve(ip, at, lim)
		if !ok {
			t.Fatal("refused early")
		}
		res.Settle(false)
		until, full := l.FailuresFull(ip, at, lim)
		if full != (i == 1) || full && until != 160 {
			t.Errorf("after failure %d: full %v until %d, want full only after the second, until 160", i+1, full, until)
		}
	}
	if _, full := l.FailuresFull(ip, 161, lim); full {
		t.Error("still full after the first failure left the window")
	}
}

package limiter

import (
	"net/netip"
	"testing"
)

// held is the number of events actor has in o's window.
func held(l *Limiter, actor netip.Addr, o Outcome) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets[bucketKey{rateLimitKey(actor), o}])
}

// TestReservationSettles: each way an attempt can end leaves exactly the
// slots its outcome uses, however often Settle is called.
func TestReservationSettles(t *testing.T) {
	a := netip.MustParseAddr("203.0.113.9")
	for _, tc := range []struct {
		name                   string
		takeSuccess, granted   bool
		wantSuccess, wantFails int
	}{
		{"granted", true, true, 1, 0},
		{"refused before the success slot (bad key, bad body)", false, false, 0, 1},
		{"failed after the success slot (firewall, store)", true, false, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := New()
			res, _, ok := l.Reserve(a, 100, limitsOf(60, 5, 5))
			if !ok {
				t.Fatal("Reserve refused on an empty limiter")
			}
			if held(l, a, Failure) != 1 {
				t.Fatal("Reserve took no failure slot")
			}
			if tc.takeSuccess {
				if _, ok := res.TakeSuccess(); !ok {
					t.Fatal("TakeSuccess refused")
				}
			}
			res.Settle(tc.granted)
			res.Settle(tc.granted)
			res.Settle(!tc.granted)
			if s, f := held(l, a, Success), held(l, a, Failure); s != tc.wantSuccess || f != tc.wantFails {
				t.Fatalf("after Settle: %d success, %d failure slots held; want %d, %d", s, f, tc.wantSuccess, tc.wantFails)
			}
		})
	}
}

// TestReservationSuccessWindowFull: a knock refused by a full success
// window is no failure, and says when to retry.
func TestReservationSuccessWindowFull(t *testing.T) {
	l, lim := New(), limitsOf(60, 1, 5)
	a := netip.MustParseAddr("2001:db8::7")
	first, _, _ := l.Reserve(a, 100, lim)
	first.TakeSuccess()
	first.Settle(true)
	second, _, ok := l.Reserve(a, 110, lim)
	if !ok {
		t.Fatal("Reserve refused")
	}
	if retry, ok := second.TakeSuccess(); ok || retry != 50 {
		t.Fatalf("TakeSuccess = %v, retry %d; want refused, retry 50", ok, retry)
	}
	second.Settle(false)
	if s, f := held(l, a, Success), held(l, a, Failure); s != 1 || f != 0 {
		t.Fatalf("%d success, %d failure slots held; want 1, 0", s, f)
	}
}

// TestReservationFailureWindowFull: with the failure window full, Reserve
// refuses before anything else, and the refusal takes nothing.
func TestReservationFailureWindowFull(t *testing.T) {
	l, lim := New(), limitsOf(60, 5, 2)
	a := netip.MustParseAddr("198.51.100.3")
	for range 2 {
		res, _, _ := l.Reserve(a, 100, lim)
		res.Settle(false)
	}
	res, retry, ok := l.Reserve(a, 130, lim)
	if ok || retry != 30 {
		t.Fatalf("Reserve = %v, retry %d; want refused, retry 30", ok, retry)
	}
	res.Settle(false) // the zero Reservation: nothing to give back
	if f := held(l, a, Failure); f != 2 {
		t.Fatalf("%d failure slots held, want 2", f)
	}
}

// TestReservationUnlimitedReleasesNothing: with a window unlimited nothing
// is recorded, so settling must not take back another attempt's event.
func TestReservationUnlimitedReleasesNothing(t *testing.T) {
	l := New()
	a := netip.MustParseAddr("192.0.2.44")
	counted, _, _ := l.Reserve(a, 100, limitsOf(60, 5, 5)) // another config's limits
	unlimited, _, _ := l.Reserve(a, 100, limitsOf(60, 0, 0))
	unlimited.TakeSuccess()
	unlimited.Settle(true)
	if f := held(l, a, Failure); f != 1 {
		t.Fatalf("settling an unlimited attempt released another's slot: %d failure slots held, want 1", f)
	}
	counted.Settle(false)
}

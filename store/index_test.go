package store

import (
	"net/netip"
	"slices"
	"testing"
	"unsafe"
)

func TestShardIsOneCacheLine(t *testing.T) {
	if n := unsafe.Sizeof(shard{}); n != 64 {
		t.Errorf("shard is %d bytes, want 64", n)
	}
}

// The scope set id sits in entryKey's padding: heaps and overlays of a
// million entries do not grow for it (on 64-bit platforms).
func TestEntryKeySize(t *testing.T) {
	if n, want := unsafe.Sizeof(entryKey{}), 2*unsafe.Sizeof(uint64(0))+8; n != want {
		t.Errorf("entryKey is %d bytes, want %d", n, want)
	}
}

func TestAllowed(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	exp := int64(t0 + 100)
	for _, k := range []string{"203.0.113.7", "192.168.1.0/24", "10.0.0.0/8", "2001:db8::1", "2001:db8:1::/48", "2001:db8:2::/64"} {
		mustGrant(t, s, k, exp)
	}
	tests := []struct {
		ip   string
		want bool
	}{
		{"203.0.113.7", true},
		{"203.0.113.8", false},
		{"192.168.1.0", true},
		{"192.168.1.255", true},
		{"192.168.2.1", false},
		{"10.255.0.1", true},
		{"11.0.0.1", false},
		{"2001:db8::1", true},
		{"2001:db8::2", false},
		{"2001:db8:1:ffff::1", true},
		{"2001:db8:2::abcd", true},
		{"2001:db8:2:1::abcd", false},
		{"::ffff:203.0.113.7", true}, // mapped form of an allowed IPv4 client
		{"::ffff:203.0.113.8", false},
		{"fe80::1%eth0", false},
		{"2001:db8::1%eth0", false}, // zoned: never
	}
	for _, tc := range tests {
		ip := netip.MustParseAddr(tc.ip)
		if got := s.Allowed(ip, t0); got != tc.want {
			t.Errorf("Allowed(%s) = %v, want %v", tc.ip, got, tc.want)
		}
	}
	if s.Allowed(netip.Addr{}, t0) {
		t.Error("Allowed(invalid address) = true")
	}
	// Boundary: authorizes while now < Expires.
	ip := netip.MustParseAddr("203.0.113.7")
	if !s.Allowed(ip, exp-1) {
		t.Error("denied one second before expiry")
	}
	if s.Allowed(ip, exp) {
		t.Error("allowed at now == Expires")
	}
	if s.Allowed(netip.MustParseAddr("192.168.1.9"), exp+1) {
		t.Error("allowed after expiry")
	}
}

func TestFamiliesNeverCrossMatch(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	mustGrant(t, s, "0.0.0.0/0", t0+100)
	if s.Allowed(netip.MustParseAddr("2001:db8::1"), t0) || s.Allowed(netip.MustParseAddr("::"), t0) {
		t.Error("IPv4 0.0.0.0/0 matched an IPv6 address")
	}
	if _, err := s.Revoke(mustPrefix(t, "0.0.0.0/0")); err != nil {
		t.Fatal(err)
	}
	mustGrant(t, s, "::/0", t0+100)
	for _, ip := range []string{"1.2.3.4", "0.0.0.0", "::ffff:1.2.3.4"} {
		if s.Allowed(netip.MustParseAddr(ip), t0) {
			t.Errorf("IPv6 ::/0 matched %s", ip)
		}
	}
	if !s.Allowed(netip.MustParseAddr("2001:db8::1"), t0) {
		t.Error("::/0 did not match 2001:db8::1")
	}
}

func TestMatchPicksLatestExpiry(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	mustGrant(t, s, "10.1.2.3", t0+50)
	mustGrant(t, s, "10.1.2.0/24", t0+300)
	mustGrant(t, s, "10.0.0.0/8", t0+200)
	mustGrant(t, s, "2001:db8::/32", t0+400)
	mustGrant(t, s, "2001:db8::1", t0+100)

	check := func(ip string, now int64, want string, wantExp int64) {
		t.Helper()
		got, ok := s.Match(netip.MustParseAddr(ip), now)
		if want == "" {
			if ok {
				t.Errorf("Match(%s) = %v, want none", ip, got)
			}
			return
		}
		if !ok || FormatPrefix(got.Prefix) != want || got.Expires != wantExp {
			t.Errorf("Match(%s, %d) = %v %v, want %s %d", ip, now-t0, got, ok, want, wantExp-t0)
		}
	}
	check("10.1.2.3", t0, "10.1.2.0/24", t0+300)
	check("10.9.9.9", t0, "10.0.0.0/8", t0+200)
	check("10.1.2.3", t0+250, "10.1.2.0/24", t0+300)
	check("10.9.9.9", t0+250, "", 0)
	check("2001:db8::1", t0, "2001:db8::/32", t0+400)
	check("::ffff:10.1.2.3", t0, "10.1.2.0/24", t0+300)
	check("2001:db9::1", t0, "", 0)

	// Equal expiries: the most specific entry is reported.
	mustGrant(t, s, "192.168.0.0/16", t0+700)
	mustGrant(t, s, "192.168.7.0/24", t0+700)
	mustGrant(t, s, "192.168.7.8", t0+700)
	check("192.168.7.8", t0, "192.168.7.8", t0+700)
	check("192.168.7.9", t0, "192.168.7.0/24", t0+700)
}

func TestEntriesAndLen(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	mustGrant(t, s, "1.2.3.4", t0+10)
	mustGrant(t, s, "2001:db8::/64", t0+20)
	mustGrant(t, s, "5.6.0.0/16", t0+30)
	e.clock.Advance(15)
	if s.Len() != 3 {
		t.Errorf("Len = %d, want 3 (expired-not-swept included)", s.Len())
	}
	var got []string
	for _, en := range s.Entries(e.clock.Unix()) {
		got = append(got, FormatPrefix(en.Prefix))
	}
	slices.Sort(got)
	if want := []string{"2001:db8::/64", "5.6.0.0/16"}; !slices.Equal(got, want) {
		t.Errorf("Entries = %v, want %v", got, want)
	}
}

func TestProbeListsTrackTables(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	probes := func() (v4, v6 []uint8) {
		if p := s.idx.probe4.Load(); p != nil {
			v4 = *p
		}
		if p := s.idx.probe6.Load(); p != nil {
			v6 = *p
		}
		return
	}
	mustGrant(t, s, "10.1.0.0/16", t0+10)
	mustGrant(t, s, "10.1.2.3", t0+10)
	mustGrant(t, s, "10.1.2.4", t0+10)
	mustGrant(t, s, "2001:db8::/64", t0+10)
	if v4, v6 := probes(); !slices.Equal(v4, []uint8{16, 32}) || !slices.Equal(v6, []uint8{64}) {
		t.Errorf("probe lists %v %v, want [16 32] (smallest table first) and [64]", v4, v6)
	}
	s.Revoke(mustPrefix(t, "10.1.0.0/16"))
	s.Revoke(mustPrefix(t, "2001:db8::/64"))
	if v4, v6 := probes(); !slices.Equal(v4, []uint8{32}) || len(v6) != 0 {
		t.Errorf("probe lists %v %v after revokes, want [32] and []", v4, v6)
	}
}

func TestAllowedDoesNotAllocate(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	mustGrant(t, s, "10.1.0.0/16", t0+10)
	mustGrant(t, s, "2001:db8::/64", t0+10)
	mustGrant(t, s, "2001:db8::1", t0+10)
	ips := []netip.Addr{netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("2001:db8::5"), netip.MustParseAddr("9.9.9.9"), netip.MustParseAddr("2001:db9::1")}
	allocs := testing.AllocsPerRun(100, func() {
		for _, ip := range ips {
			s.Allowed(ip, t0)
		}
	})
	if allocs != 0 {
		t.Errorf("Allowed allocates %.1f times per call", allocs)
	}
}

package store

import (
	"errors"
	"net/netip"
	"testing"
)

func TestParseEntryKey(t *testing.T) {
	tests := []struct {
		in, want string // want "" means an error is expected
	}{
		{"203.0.113.7", "203.0.113.7"},
		{"203.0.113.7/32", "203.0.113.7"},
		{"192.168.1.0/24", "192.168.1.0/24"},
		{"192.168.1.77/24", "192.168.1.0/24"}, // host bits masked
		{"10.1.2.3/8", "10.0.0.0/8"},
		{"0.0.0.0/0", "0.0.0.0/0"},
		{"2001:db8::1", "2001:db8::1"},
		{"2001:DB8:0:0:0:0:0:1", "2001:db8::1"}, // compressed, lower-case
		{"2001:db8::1/128", "2001:db8::1"},
		{"2001:db8::1/64", "2001:db8::/64"},
		{"2001:db8:0:0:1::/96", "2001:db8:0:0:1::/96"},
		{"::/0", "::/0"},
		{"::1", "::1"},
		{"::ffff:1.2.3.4", "1.2.3.4"}, // IPv4-mapped becomes IPv4
		{"::ffff:1.2.3.4/128", "1.2.3.4"},
		{"::ffff:1.2.3.0/120", ""}, // mapped ranges never matched IPv4 clients: skipped
		{"::ffff:0.0.0.0/96", ""},  // would otherwise become 0.0.0.0/0
		{"::ffff:1.2.3.0/95", ""},
		{"fe80::1%eth0", ""}, // zone: unsupported
		{"fe80::1%eth0/64", ""},
		{"", ""},
		{"example.com", ""},
		{"1.2.3", ""},
		{"1.2.3.4/33", ""},
		{"1.2.3.4/", ""},
		{"1.2.3.4/-1", ""},
		{"2001:db8::/129", ""},
		{" 1.2.3.4", ""},
		{"1.2.3.4 ", ""},
		{"01.2.3.4", ""},
		{"1.2.3.4/24/1", ""},
	}
	for _, tc := range tests {
		p, err := ParseEntryKey(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("ParseEntryKey(%q) = %v, want error", tc.in, p)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseEntryKey(%q): %v", tc.in, err)
			continue
		}
		if got := FormatPrefix(p); got != tc.want {
			t.Errorf("ParseEntryKey(%q) = %s, want %s", tc.in, got, tc.want)
		}
		if err := CanonicalPrefix(p); err != nil {
			t.Errorf("ParseEntryKey(%q) result not canonical: %v", tc.in, err)
		}
	}
	for _, k := range []string{"fe80::1%eth0", "::ffff:0:0/96", "::ffff:10.0.0.0/112"} {
		if _, err := ParseEntryKey(k); !errors.Is(err, errUnsupportedKey) {
			t.Errorf("ParseEntryKey(%q) error = %v, want errUnsupportedKey (skipped on load)", k, err)
		}
	}
}

func TestFormatPrefix(t *testing.T) {
	tests := []struct {
		p    netip.Prefix
		want string
	}{
		{netip.MustParsePrefix("203.0.113.7/32"), "203.0.113.7"},
		{netip.MustParsePrefix("192.168.1.0/24"), "192.168.1.0/24"},
		{netip.MustParsePrefix("2001:db8::1/128"), "2001:db8::1"},
		{netip.MustParsePrefix("2001:db8::/64"), "2001:db8::/64"},
		{netip.MustParsePrefix("0.0.0.0/0"), "0.0.0.0/0"},
	}
	for _, tc := range tests {
		if got := FormatPrefix(tc.p); got != tc.want {
			t.Errorf("FormatPrefix(%v) = %q, want %q", tc.p, got, tc.want)
		}
	}
}

func TestCanonicalPrefix(t *testing.T) {
	bad := []netip.Prefix{
		{},
		netip.MustParsePrefix("192.168.1.77/24"),
		netip.MustParsePrefix("::ffff:1.2.3.4/128"),
		netip.PrefixFrom(netip.MustParseAddr("1.2.3.4"), 33),
	}
	for _, p := range bad {
		if err := CanonicalPrefix(p); !errors.Is(err, ErrInvalid) {
			t.Errorf("CanonicalPrefix(%v) = %v, want ErrInvalid", p, err)
		}
	}
	// netip drops zones from prefixes, so a zoned address cannot sneak in.
	p := netip.PrefixFrom(netip.MustParseAddr("fe80::1%eth0"), 128)
	if p.Addr().Zone() != "" {
		t.Fatalf("netip kept the zone in %v", p)
	}
}

func TestEntryKeyRoundTrip(t *testing.T) {
	for _, s := range []string{"0.0.0.0/0", "1.2.3.4", "10.0.0.0/8", "255.255.255.255", "::/0", "2001:db8::/64", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8::8000:0:0:0/65"} {
		p := mustPrefix(t, s)
		if got := keyOf(p).prefix(); got != p {
			t.Errorf("keyOf(%v).prefix() = %v", p, got)
		}
	}
}

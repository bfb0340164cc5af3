package knockapi

import (
	"net/netip"
	"testing"
)

func TestOwnPrefix(t *testing.T) {
	for _, tc := range []struct {
		ip   string
		bits int
		want string
	}{
		{"2001:db8:1:2::a", 64, "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", 64, "2001:db8:1:2::/64"},
		{"2001:db8:1:2::a", 56, "2001:db8:1::/56"},
		{"2001:db8:1:2::a", 48, "2001:db8:1::/48"},
		{"2001:db8:1:2::a", 128, "2001:db8:1:2::a/128"},
		{"fd12:3456:789a:1::5", 64, "fd12:3456:789a:1::/64"}, // a ULA is the caller's own network
		{"203.0.113.7", 64, "203.0.113.7/32"},                // IPv4 is unaffected
		{"::1", 64, "::1/128"},                               // ::/64 holds the IPv4-mapped range
		{"fe80::1", 64, "fe80::1/128"},                       // every neighbour on the link
		{"64:ff9b::cb00:7107", 64, "64:ff9b::cb00:7107/128"}, // NAT64: all of IPv4
		{"64:ff9b:1:2::cb00:7107", 48, "64:ff9b:1:2::cb00:7107/128"},
		{"64:ff9b:0:1::5", 48, "64:ff9b:0:1::5/128"},                                             // its /48 holds the NAT64 /96
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", 64, "2001:0:4136:e378:8000:63bf:3fff:fdd2/128"}, // Teredo
		{"2002:cb00:7107::1", 48, "2002:cb00:7107::/48"},                                         // 6to4: one IPv4 host's site
		{"ff02::1", 64, "ff02::1/128"},
	} {
		got := OwnPrefix(netip.MustParseAddr(tc.ip), netip.Addr{}, tc.bits)
		if got != netip.MustParsePrefix(tc.want) {
			t.Errorf("OwnPrefix(%s, %d) = %v, want %s", tc.ip, tc.bits, got, tc.want)
		}
		if TooBroad(got) && got.Bits() >= minIPv6Bits {
			t.Errorf("OwnPrefix(%s, %d) = %v covers more IPv4 than a grant may", tc.ip, tc.bits, got)
		}
	}
}

func TestCheckIPv6Prefix(t *testing.T) {
	for bits, ok := range map[int]bool{-1: false, 0: false, 1: false, 32: false, 47: false, 48: true, 64: true, 128: true, 129: false} {
		if err := CheckIPv6Prefix(bits); (err == nil) != ok {
			t.Errorf("CheckIPv6Prefix(%d) = %v, want ok %v", bits, err, ok)
		}
	}
}

// A network holding the proxy the knock came through is not granted: the
// address alone is.
func TestOwnPrefixBesideItsProxy(t *testing.T) {
	client := netip.MustParseAddr("2001:db8:1:2::50")
	for proxy, want := range map[string]string{
		"2001:db8:1:2::10": "2001:db8:1:2::50/128",
		"2001:db8:1:3::10": "2001:db8:1:2::/64",
		"127.0.0.1":        "2001:db8:1:2::/64",
	} {
		if got := OwnPrefix(client, netip.MustParseAddr(proxy), 64); got.String() != want {
			t.Errorf("OwnPrefix(%s, proxy %s, 64) = %s, want %s", client, proxy, got, want)
		}
	}
}

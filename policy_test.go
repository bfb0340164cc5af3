package knocker

import (
	"net/netip"
	"testing"
)

func TestParseIPRanges(t *testing.T) {
	rs, err := parseIPRanges("always_allow", []string{"private_ranges", "203.0.113.7", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]bool{
		"10.1.2.3": true, "127.0.0.1": true, "192.168.0.1": true, "::1": true, "fd00::1": true,
		"203.0.113.7": true, "203.0.113.8": false, "2001:db8:1::1": true, "2001:db9::1": false,
		"8.8.8.8": false,
	} {
		if got := rs.contains(netip.MustParseAddr(ip)); got != want {
			t.Errorf("contains(%s) = %v, want %v", ip, got, want)
		}
	}
	for _, bad := range []string{"nope", "1.2.3.4/33", "::ffff:10.0.0.0/104", "fe80::1%eth0", ""} {
		if _, err := parseIPRanges("always_allow", []string{bad}); err == nil {
			t.Errorf("parseIPRanges(%q) accepted", bad)
		}
	}
}

package knockapi

import (
	"net/netip"
	"testing"
)

func TestParseGrantTarget(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "" = error
		broad    bool
	}{
		{"1.2.3.4", "1.2.3.4/32", false},
		{"1.2.3.4/32", "1.2.3.4/32", false},
		{"192.168.1.77/24", "192.168.1.0/24", false},
		{"10.1.2.3/16", "10.1.0.0/16", false},
		{"10.0.0.0/15", "10.0.0.0/15", true},
		{"0.0.0.0/0", "0.0.0.0/0", true},
		{"2001:0DB8::1", "2001:db8::1/128", false},
		{"2001:db8:85a3:0000:0000:8a2e:0370:7334/128", "2001:db8:85a3::8a2e:370:7334/128", false},
		{"2001:db8::5/64", "2001:db8::/64", false},
		{"2001:db8::/63", "2001:db8::/63", true},
		{"::/0", "::/0", true},
		{"::1.2.3.4", "::102:304/128", false}, // IPv4-compatible is plain IPv6
		{"::ffff:1.2.3.4", "", false},
		{"::ffff:0:0/96", "", false},
		{"fe80::1%eth0", "", false},
		{"10.0.0.0/255.255.0.0", "", false},
		{"10.0.0.0/0.0.255.255", "", false},
		{"64:ff9b::/96", "64:ff9b::/96", true}, // NAT64: all of IPv4
		{"64:ff9b::/111", "64:ff9b::/111", true},
		{"64:ff9b::c000:200/112", "64:ff9b::c000:0/112", false}, // 192.0.0.0/16 behind NAT64
		{"64:ff9b::/64", "64:ff9b::/64", true},                  // contains the NAT64 range
		{"64:ff9b:1::/64", "64:ff9b:1::/64", true},
		{"64:ff9b:1::c000:200/120", "64:ff9b:1::c000:200/120", false},
		{"::/64", "::/64", true}, // contains the IPv4-mapped range
		{"2001:db8::/64", "2001:db8::/64", false},
		{"1.2.3.4/", "", false},
		{"1.2.3.4/+8", "", false},
		{"1.2.3.4/-1", "", false},
		{"1.2.3.4/33", "", false},
		{"[::1]", "", false},
		{"1.2.3.4:80", "", false},
		{"", "", false},
	} {
		p, err := ParseTarget(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("parseGrantTarget(%q) = %v, want error", tc.in, p)
			}
			continue
		}
		if err != nil || p != netip.MustParsePrefix(tc.want) {
			t.Errorf("parseGrantTarget(%q) = %v, %v; want %s", tc.in, p, err, tc.want)
			continue
		}
		if TooBroad(p) != tc.broad {
			t.Errorf("tooBroad(%v) = %v, want %v", p, !tc.broad, tc.broad)
		}
	}
}

package knocker

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// ipRanges is a parsed always_allow list.
type ipRanges []netip.Prefix

// parseIPRanges parses IPs, CIDRs and the private_ranges shorthand, the same
// spellings Caddy's client_ip matcher accepts, minus the ones that could never
// match an unmapped client address.
func parseIPRanges(field string, in []string) (ipRanges, error) {
	var out ipRanges
	var expanded []string
	for _, s := range in {
		if s == "private_ranges" {
			expanded = append(expanded, caddyhttp.PrivateRangesCIDR()...)
		} else {
			expanded = append(expanded, s)
		}
	}
	for _, s := range expanded {
		if strings.Contains(s, "%") {
			return nil, fmt.Errorf("%s: %q: zone-scoped addresses are not supported", field, s)
		}
		p, err := caddyhttp.CIDRExpressionToPrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not an IP address or CIDR: %v", field, s, err)
		}
		if p.Addr().Is4In6() {
			return nil, fmt.Errorf("%s: %q is IPv4-mapped IPv6; write the IPv4 form, clients are matched by their IPv4 address", field, s)
		}
		out = append(out, p.Masked())
	}
	return slices.Clip(out), nil
}

func (rs ipRanges) contains(ip netip.Addr) bool {
	for _, p := range rs {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

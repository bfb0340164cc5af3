package knocker

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-knocker/knocker/internal/pathmatch"
)

// AccessPolicy is who passes without a grant. The knocker gate applies it
// to the requests it guards, and the knock handler's /verify to the
// requests a proxy outside this Caddy forwards.
type AccessPolicy struct {
	// AlwaysAllow lists IPs and CIDRs admitted without a knock; the
	// shorthand private_ranges expands to the private address ranges.
	AlwaysAllow []string `json:"always_allow,omitempty"`
	// Exclude lists path prefixes admitted for anyone (matched at segment
	// boundaries, case-sensitively, after normalisation). For /verify the
	// path is X-Forwarded-Uri, believed only from a trusted proxy.
	Exclude []string `json:"exclude,omitempty"`

	allow   ipRanges
	exclude pathmatch.Prefixes
}

// provision parses the policy. Errors name the field.
func (p *AccessPolicy) provision() error {
	var err error
	if p.allow, err = parseIPRanges("always_allow", p.AlwaysAllow); err != nil {
		return err
	}
	p.exclude, err = pathmatch.ParsePrefixes("exclude", p.Exclude)
	return err
}

// allows reports whether ip is always allowed.
func (p *AccessPolicy) allows(ip netip.Addr) bool { return p.allow.contains(ip) }

// excludes reports whether path (raw, as sent) falls under an exclusion.
func (p *AccessPolicy) excludes(path string) bool {
	return len(p.exclude) > 0 && p.exclude.Match(path)
}

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

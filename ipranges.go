package knocker

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Width limits for remote grants, as in the original service: at most 65,536
// IPv4 addresses, and at least a /64 for IPv6.
const (
	minIPv4Bits = 16
	minIPv6Bits = 64
	maxIPLength = 100
)

// unsupportedFormError is a well-formed address in a form we refuse on
// purpose; its text tells the client what to send instead.
type unsupportedFormError string

func (e unsupportedFormError) Error() string { return string(e) }

// parseGrantTarget parses the ip_address of a knock body: an address or a
// CIDR, canonicalised (host bits masked). IPv4-mapped and zone-scoped
// addresses and netmask notation are refused because each has a second
// meaning (mapped /96 prefixes would cover all of IPv4; zones do not
// exist on the wire).
func parseGrantTarget(s string) (netip.Prefix, error) {
	addrPart, bitsPart, hasBits := strings.Cut(s, "/")
	if strings.Contains(addrPart, "%") {
		return netip.Prefix{}, unsupportedFormError("zone-scoped addresses are not accepted")
	}
	addr, err := netip.ParseAddr(addrPart)
	if err != nil {
		return netip.Prefix{}, errors.New("not an IP address")
	}
	if addr.Is4In6() {
		return netip.Prefix{}, unsupportedFormError("IPv4-mapped IPv6 addresses are not accepted; send the IPv4 address")
	}
	bits := addr.BitLen()
	if hasBits {
		if strings.Contains(bitsPart, ".") || strings.Contains(bitsPart, ":") {
			return netip.Prefix{}, unsupportedFormError("netmask notation is not accepted; use a prefix length such as /24")
		}
		bits, err = strconv.Atoi(bitsPart)
		if err != nil || bitsPart == "" || bitsPart[0] == '+' || bitsPart[0] == '-' || bits > addr.BitLen() {
			return netip.Prefix{}, errors.New("invalid prefix length")
		}
	}
	return netip.PrefixFrom(addr, bits).Masked(), nil
}

// tooBroad reports whether a grant covers more than the original allowed:
// more than 65,536 IPv4 addresses, or more than an IPv6 /64.
// An IPv6 prefix that overlaps one of these ranges also stands for IPv4
// addresses, which it must not cover more of than an IPv4 grant may.
func tooBroad(p netip.Prefix) bool {
	if p.Addr().Is4() {
		return p.Bits() < minIPv4Bits
	}
	if p.Bits() < minIPv6Bits {
		return true
	}
	for _, r := range ipv4InIPv6 {
		if p.Overlaps(r) && p.Bits() < 96+minIPv4Bits {
			return true
		}
	}
	return false
}

// ipv4InIPv6 are the IPv6 ranges whose last 32 bits are an IPv4 address:
// behind a NAT64 or SIIT translator (RFC 6052's well-known prefix, RFC
// 8215's local-use prefix in its /96 form) every IPv4 client appears as
// one of them, so 64:ff9b::/96 would be all of IPv4; and IPv4-mapped
// addresses, as a dual-stack socket reports IPv4 peers.
var ipv4InIPv6 = []netip.Prefix{
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("::ffff:0:0/96"),
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

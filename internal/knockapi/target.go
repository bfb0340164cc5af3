package knockapi

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
)

// Width limits for remote grants, as in the Python Knocker: at most 65,536
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

// ParseTarget parses the ip_address of a knock body: an address or a
// CIDR, canonicalised (host bits masked). IPv4-mapped and zone-scoped
// addresses and netmask notation are refused because each has a second
// meaning (mapped /96 prefixes would cover all of IPv4; zones do not
// exist on the wire).
func ParseTarget(s string) (netip.Prefix, error) {
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

// TooBroad reports whether a grant covers more than the Python Knocker allowed:
// more than 65,536 IPv4 addresses, or more than an IPv6 /64.
// An IPv6 prefix that overlaps one of these ranges also stands for IPv4
// addresses, which it must not cover more of than an IPv4 grant may.
func TooBroad(p netip.Prefix) bool {
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

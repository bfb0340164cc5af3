package knockapi

import (
	"fmt"
	"net/netip"
)

// MinIPv6Prefix is the shortest ipv6_prefix a config may set. A /48 is the
// largest block registries assign to one end site; a shorter prefix would
// let one knock admit other customers of the caller's provider.
const MinIPv6Prefix = 48

// CheckIPv6Prefix validates an ipv6_prefix setting.
func CheckIPv6Prefix(bits int) error {
	if bits < MinIPv6Prefix || bits > 128 {
		return fmt.Errorf("want a prefix length from %d to 128 (128: the address itself; 64: its network), got %d", MinIPv6Prefix, bits)
	}
	return nil
}

// teredo is RFC 4380's prefix: its /64s are relays shared by unrelated
// hosts, whose IPv4 addresses sit in the last bits.
var teredo = netip.MustParsePrefix("2001::/32")

// OwnPrefix is what a knock for the caller's own address ip grants: the
// address itself, or for an IPv6 address its network of ipv6Bits
// (ipv6_prefix), so that the grant survives the rotation of temporary
// addresses. Where the network is not the caller's own the address alone
// is granted: IPv4, loopback, link-local (every neighbour on the link),
// and the ranges that embed IPv4 addresses or serve many hosts through one
// relay (NAT64, IPv4-mapped, Teredo), whose /64 would stand for strangers.
//
// proxy is the peer the knock came through (invalid: none): a network
// holding it is not granted either, since the proxy would then be admitted
// wherever it is the client itself (another server, caddy-l4, firewalld),
// and everyone behind it with it.
func OwnPrefix(ip, proxy netip.Addr, ipv6Bits int) netip.Prefix {
	single := netip.PrefixFrom(ip, ip.BitLen())
	if !ip.Is6() || ipv6Bits >= 128 || !ip.IsGlobalUnicast() {
		return single
	}
	p := netip.PrefixFrom(ip, ipv6Bits).Masked()
	if !p.IsValid() || p.Overlaps(teredo) || proxy.IsValid() && p.Contains(proxy.Unmap()) {
		return single
	}
	for _, r := range ipv4InIPv6 {
		if p.Overlaps(r) {
			return single
		}
	}
	return p
}

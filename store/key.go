package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// errUnsupportedKey marks keys the Python Knocker could write but that
// have no safe meaning here; the snapshot loader skips them with a warning
// instead of failing:
//   - zone-scoped addresses ("fe80::1%eth0"): zones only make sense on one
//     host's links;
//   - IPv4-mapped IPv6 ranges ("::ffff:0:0/96"): the Python Knocker never unmapped
//     addresses, so such a range only matched clients seen as mapped IPv6,
//     which never happens for IPv4 clients here; converting it to IPv4 would
//     change its meaning and could widen it to all of IPv4.
var errUnsupportedKey = errors.New("not supported")

// FormatPrefix returns the canonical text of an entry key, as the Python
// Knocker wrote it: a bare address for single hosts (/32, /128), otherwise
// "network/bits". IPv6 is compressed and lower-case (RFC 5952).
func FormatPrefix(p netip.Prefix) string {
	return string(appendPrefix(nil, p))
}

func appendPrefix(dst []byte, p netip.Prefix) []byte {
	if p.IsValid() && p.IsSingleIP() {
		return p.Addr().AppendTo(dst)
	}
	return p.AppendTo(dst)
}

// ParseEntryKey parses a whitelist key as written by the Python Knocker
// and returns it in canonical form ([CanonicalPrefix] holds for the result).
// It accepts an address ("203.0.113.7", "2001:db8::1") or "address/bits";
// host bits are masked off ("192.168.1.77/24" is 192.168.1.0/24), and an
// IPv4-mapped single address is the IPv4 address ("::ffff:1.2.3.4" is
// 1.2.3.4). Zone-scoped addresses and IPv4-mapped ranges are refused with an
// error wrapping errUnsupportedKey.
func ParseEntryKey(s string) (netip.Prefix, error) {
	addrText, _, hasBits := strings.Cut(s, "/")
	if strings.Contains(addrText, "%") {
		return netip.Prefix{}, fmt.Errorf("%q: zone-scoped addresses are %w", s, errUnsupportedKey)
	}
	var p netip.Prefix
	if hasBits {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or prefix", s)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or prefix", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() {
		if !p.IsSingleIP() {
			return netip.Prefix{}, fmt.Errorf("%q: IPv4-mapped IPv6 ranges are %w (they never matched IPv4 clients)", s, errUnsupportedKey)
		}
		p = netip.PrefixFrom(a.Unmap(), 32)
	}
	return p.Masked(), nil
}

// CanonicalPrefix reports whether p is a valid entry key in canonical form:
// host bits cleared, not IPv4-mapped IPv6 and without zone. Grant and Revoke
// accept only such prefixes; ParseEntryKey always returns one.
func CanonicalPrefix(p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return fmt.Errorf("%w: invalid prefix %v", ErrInvalid, p)
	case p.Addr().Is4In6():
		return fmt.Errorf("%w: %v is IPv4-mapped IPv6; use the IPv4 form", ErrInvalid, p)
	case p.Addr().Zone() != "":
		return fmt.Errorf("%w: %v has an IPv6 zone", ErrInvalid, p)
	case p != p.Masked():
		return fmt.Errorf("%w: %v has host bits set; use %v", ErrInvalid, p, p.Masked())
	}
	return nil
}

// entryKey is the compact, comparable identity of an entry used by the
// writer side (heap, batch overlay). It holds no pointers, unlike
// netip.Prefix, so a million of them cost the garbage collector nothing.
type entryKey struct {
	hi, lo uint64 // address bits; IPv4 uses the low 32 bits of lo
	bits   uint8
	v6     bool
	set    scopeSetID // in the padding: the key stays 24 bytes
}

func keyOf(p netip.Prefix) entryKey {
	a := p.Addr()
	if a.Is4() {
		b := a.As4()
		return entryKey{lo: uint64(binary.BigEndian.Uint32(b[:])), bits: uint8(p.Bits())}
	}
	b := a.As16()
	return entryKey{
		hi:   binary.BigEndian.Uint64(b[:8]),
		lo:   binary.BigEndian.Uint64(b[8:]),
		bits: uint8(p.Bits()),
		v6:   true,
	}
}

func (k entryKey) prefix() netip.Prefix {
	if !k.v6 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(k.lo))
		return netip.PrefixFrom(netip.AddrFrom4(b), int(k.bits))
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], k.hi)
	binary.BigEndian.PutUint64(b[8:], k.lo)
	return netip.PrefixFrom(netip.AddrFrom16(b), int(k.bits))
}

//go:build linux

package main

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strconv"
)

// The client addresses of the request-path cases. Generated grants never
// cover them (nor 10.0.0.0/8, which the knock runs use).
const (
	clientAllowed = "203.0.113.7"   // whitelisted: its own exact grant
	clientDenied  = "198.51.100.77" // not whitelisted
)

// grantMix describes the generated grants, for BENCHMARKS.md.
const grantMix = "per 10 grants: 4 exact IPv4 (11.0.0.0/8), 1 IPv4 /24 (from 12.0.0.0), 4 exact IPv6 (2001:db8:1::/64), 1 IPv6 /64 (2001:db8:100::/40); expiries spread over 7-8 days from now"

// grantPrefix returns the i-th generated grant: a mix of exact and CIDR
// grants, IPv4 and IPv6 (four prefix lengths, as a real whitelist has).
func grantPrefix(i int) netip.Prefix {
	switch i % 10 {
	case 0, 1, 2, 3: // exact IPv4 in 11.0.0.0/8
		n := uint32(11<<24) + uint32(i)
		return netip.PrefixFrom(v4(n), 32)
	case 4: // IPv4 /24 from 12.0.0.0
		n := uint32(12<<24) + uint32(i/10)*256
		return netip.PrefixFrom(v4(n), 24)
	case 5, 6, 7, 8: // exact IPv6 in 2001:db8:1::/64
		var a [16]byte
		copy(a[:], []byte{0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01})
		a[12], a[13], a[14], a[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		return netip.PrefixFrom(netip.AddrFrom16(a), 128)
	default: // IPv6 /64 in 2001:db8:100::/40
		var a [16]byte
		copy(a[:], []byte{0x20, 0x01, 0x0d, 0xb8, 0x01})
		n := i / 10
		a[5], a[6], a[7] = byte(n>>16), byte(n>>8), byte(n)
		return netip.PrefixFrom(netip.AddrFrom16(a), 64)
	}
}

func v4(n uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

// grantAddr returns an address that grant i admits (inside a CIDR grant, not
// its first address), for functional checks.
func grantAddr(i int) netip.Addr {
	p := grantPrefix(i)
	if p.Bits() == p.Addr().BitLen() {
		return p.Addr()
	}
	b := p.Addr().AsSlice()
	b[len(b)-1] = 42
	a, _ := netip.AddrFromSlice(b)
	return a
}

// canonical formats a grant as the whitelist file stores it: an exact
// address without a length, a range as its masked prefix.
func canonical(p netip.Prefix) string {
	if p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	return p.Masked().String()
}

// writeWhitelist writes a whitelist file in the Python Knocker's format (a JSON
// object of canonical entry to unix expiry) with n generated grants, plus an
// exact grant for each of extra.
func writeWhitelist(path string, n int, now int64, extra ...string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("{")
	first := true
	entry := func(k string, exp int64) {
		if !first {
			w.WriteString(",")
		}
		first = false
		w.WriteString("\n")
		w.WriteString(strconv.Quote(k))
		w.WriteString(": ")
		w.WriteString(strconv.FormatInt(exp, 10))
	}
	for _, e := range extra {
		entry(e, now+8*86400)
	}
	for i := range n {
		entry(canonical(grantPrefix(i)), now+7*86400+int64(i%86400))
	}
	w.WriteString("\n}\n")
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// checkGrantGenerator makes sure the generator yields distinct grants that
// cover neither the test clients nor the knock range.
func checkGrantGenerator(n int) error {
	if n > 4_000_000 {
		return fmt.Errorf("at most 4,000,000 generated grants (IPv4 exact grants must stay in 11.0.0.0/8)")
	}
	avoid := []netip.Addr{netip.MustParseAddr(clientAllowed), netip.MustParseAddr(clientDenied), netip.MustParseAddr("10.0.0.1")}
	for _, i := range []int{0, 4, 5, 9, n - 1, n - 6} {
		if i < 0 {
			continue
		}
		for _, a := range avoid {
			if grantPrefix(i).Contains(a) {
				return fmt.Errorf("generated grant %s covers %s", grantPrefix(i), a)
			}
		}
	}
	return nil
}

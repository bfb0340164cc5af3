package knockapi

import (
	"strings"
	"testing"

	"github.com/caddy-knocker/knocker/store"
)

// FuzzParseKnockBody: any body gets an answer, never a panic; an accepted
// body is one the rest of the knock can act on.
func FuzzParseKnockBody(f *testing.F) {
	for _, seed := range []string{
		``, `{}`, `{"ttl":60}`, `{"ip_address":"192.168.1.77/24","ttl":120}`, `{"ip_address":null,"ttl":null}`,
		`{"ttl":1e3}`, `{"ttl":-1}`, `{"ttl":99999999999999999999999}`, `{"TTL":5}`, `{"ttl":5}{}`, `[]`,
		`{"ip_address":"::ffff:0:0/96"}`, `{"ip_address":"fe80::1%eth0"}`, "\xef\xbb\xbf{}", `{"ip_address":"\ud800"}`,
	} {
		f.Add("application/json", []byte(seed))
	}
	f.Add("text/plain", []byte(`{}`))
	f.Fuzz(func(t *testing.T, ctype string, body []byte) {
		req, err := ParseBody(ctype, body)
		if err != nil {
			if err.Status < 400 || err.Status > 499 || err.Message == "" || !strings.HasSuffix(err.Message, ".") {
				t.Fatalf("error %d %q is not a client error with a sentence", err.Status, err.Message)
			}
			return
		}
		if req.TTL < 0 || req.TTLTooLarge != (req.TTL > MaxTTL) {
			t.Fatalf("accepted ttl %d (too large: %v)", req.TTL, req.TTLTooLarge)
		}
		if req.HasTarget {
			if _, perr := ParseTarget(req.Target); perr != nil {
				t.Fatalf("accepted ip_address %q that does not parse: %v", req.Target, perr)
			}
		}
	})
}

// FuzzParseGrantTarget: an accepted target is canonical, unmapped, unzoned,
// and survives a round trip through its stored form.
func FuzzParseGrantTarget(f *testing.F) {
	for _, seed := range []string{"1.2.3.4", "192.168.1.77/24", "2001:DB8::1/64", "::ffff:1.2.3.4", "fe80::1%eth0",
		"10.0.0.0/255.255.0.0", "0.0.0.0/0", "::/0", "1.2.3.4/", "1.2.3.4/+8", "::1.2.3.4"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseTarget(s)
		if err != nil {
			return
		}
		if p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" || !p.IsValid() {
			t.Fatalf("%q parsed to a non-canonical %v", s, p)
		}
		back, err := store.ParseEntryKey(store.FormatPrefix(p))
		if err != nil || back != p {
			t.Fatalf("%q: stored form %q reads back as %v, %v", s, store.FormatPrefix(p), back, err)
		}
		// IPv4 addresses covered, directly or through a range embedding
		// IPv4 (overlapping prefixes nest: the longer one is the overlap).
		v4bits := 0
		if p.Addr().Is4() {
			v4bits = 32 - p.Bits()
		}
		for _, r := range ipv4InIPv6 {
			if p.Overlaps(r) {
				v4bits = max(v4bits, 128-max(p.Bits(), 96))
			}
		}
		if TooBroad(p) != (v4bits > 16 || p.Addr().Is6() && p.Bits() < minIPv6Bits) {
			t.Fatalf("width check wrong for %v", p)
		}
	})
}

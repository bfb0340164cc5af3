package knocker

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

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
		req, err := parseKnockBody(ctype, body)
		if err != nil {
			if err.status < 400 || err.status > 499 || err.msg == "" || !strings.HasSuffix(err.msg, ".") {
				t.Fatalf("error %d %q is not a client error with a sentence", err.status, err.msg)
			}
			return
		}
		if req.ttl < 0 || req.ttlTooLarge != (req.ttl > maxTTL) {
			t.Fatalf("accepted ttl %d (too large: %v)", req.ttl, req.ttlTooLarge)
		}
		if req.hasTarget {
			if _, perr := parseGrantTarget(req.target); perr != nil {
				t.Fatalf("accepted ip_address %q that does not parse: %v", req.target, perr)
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
		p, err := parseGrantTarget(s)
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
		if tooBroad(p) != (v4bits > 16 || p.Addr().Is6() && p.Bits() < minIPv6Bits) {
			t.Fatalf("width check wrong for %v", p)
		}
	})
}

// FuzzPathExclusion: normalisation yields a clean absolute path, and an
// ambiguous path never matches an exclusion.
func FuzzPathExclusion(f *testing.F) {
	for _, seed := range []string{"/public", "/public/../admin", "/public/..;/admin", "/api%2Fstatus", "/api%252Fstatus",
		"http://evil/public", "//public///x//", "/public\\..\\admin", "/public/%2e%2e/admin", "/p?x=/public", ""} {
		f.Add(seed)
	}
	prefixes, err := parsePathPrefixes("exclude", []string{"/public", "/api/status"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		n := normalizePath(raw)
		if !strings.HasPrefix(n, "/") || n != "/" && strings.HasSuffix(n, "/") {
			t.Fatalf("normalizePath(%q) = %q", raw, n)
		}
		for _, seg := range strings.Split(n, "/")[1:] {
			if n != "/" && (seg == "" || seg == "." || seg == "..") {
				t.Fatalf("normalizePath(%q) = %q keeps an empty or dot segment", raw, n)
			}
		}
		if prefixes.match(raw) && isAmbiguousPath(raw) {
			t.Fatalf("ambiguous path %q matched an exclusion", raw)
		}
	})
}

// FuzzCaddyfile: the global option and both directives reject bad input
// with an error, never a panic, and what they accept provisions the same
// way (ranges and paths that the Caddyfile admitted also parse at load).
func FuzzCaddyfile(f *testing.F) {
	for _, seed := range []string{
		"knocker {\n\tkey a {env.A} {\n\t\tmax_ttl 1h\n\t}\n}",
		"knocker {\n\trate_limit {\n\t\twindow 1m\n\t\tfailure 0\n\t}\n\tmax_entries 5\n}",
		"knocker {\n\talways_allow private_ranges 10.0.0.0/8\n\texclude /public\n\tdeny_status 403\n}",
		"knock {\n\tcors_origin *\n\texclude_host a.example /x\n\tweb off\n}",
		"knocker {\n\texclude /\n}", "knocker {\n\tkey\n}", "knock {\n\texclude_host\n}", "knocker {", "}",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input string) {
		var app App
		_ = app.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		var gate Gate
		if gate.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)) == nil {
			if _, err := parseIPRanges("always_allow", gate.AlwaysAllow); err != nil {
				t.Fatalf("adapt accepted always_allow %q that provisioning refuses: %v", gate.AlwaysAllow, err)
			}
			if _, err := parsePathPrefixes("exclude", gate.Exclude); err != nil {
				t.Fatalf("adapt accepted exclude %q that provisioning refuses: %v", gate.Exclude, err)
			}
		}
		var knock Knock
		if knock.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)) == nil {
			for host := range knock.ExcludeHosts {
				if normalizeHost(host) == "" {
					t.Fatalf("adapt accepted exclude_host %q that provisioning refuses", host)
				}
			}
		}
	})
}

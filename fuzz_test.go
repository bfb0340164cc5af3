package knocker

import (
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-knocker/knocker/internal/pathmatch"
)

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
			if _, err := pathmatch.ParsePrefixes("exclude", gate.Exclude); err != nil {
				t.Fatalf("adapt accepted exclude %q that provisioning refuses: %v", gate.Exclude, err)
			}
		}
		var knock Knock
		if knock.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)) == nil {
			for host := range knock.ExcludeHosts {
				if pathmatch.NormalizeHost(host) == "" {
					t.Fatalf("adapt accepted exclude_host %q that provisioning refuses", host)
				}
			}
		}
	})
}

package knocker

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/caddy-knocker/knocker/internal/testcaddy"
)

const exactSecret = "exact-secret-4c2a8e6f0b1d3f5a7c9e"

// exactKey is a key that sets ipv6_prefix 128 under a global default.
const exactKey = "key exact {env.KNOCKER_TEST_EXACT} {\n\t\t\tmax_ttl 1h\n\t\t\tipv6_prefix 128\n\t\t}"

// ipv6PrefixSite shows the grant the gate admitted by.
const ipv6PrefixSite = `
	knock
	knocker
	header >X-Knocker-Entry {http.knocker.entry}
	respond "` + privateBody + `" 200
`

// expectEntry knocks and checks the whitelisted_entry of the answer.
func expectEntry(t *testing.T, h *harness, client, key, body, want string) {
	t.Helper()
	r := h.knock(client, key, body)
	expectStatus(t, r, 200, "knock from "+client)
	if got := r.json(t)["whitelisted_entry"]; got != want {
		t.Fatalf("knock from %s (body %q): whitelisted_entry %v, want %s", client, body, got, want)
	}
}

// expectAdmitted checks the gate and /verify for each client.
func expectAdmitted(t *testing.T, h *harness, want int, clients ...string) {
	t.Helper()
	for _, c := range clients {
		if got := h.gate(c); got != want {
			t.Errorf("gate for %s: %d, want %d", c, got, want)
		}
		if got := h.do(request{path: "/verify", client: c}).status; got != want {
			t.Errorf("/verify for %s: %d, want %d", c, got, want)
		}
	}
}

// With a global ipv6_prefix 64, an IPv6 knock grants the caller's /64:
// every address of it is admitted (the gate, /verify, /knock/status, the
// placeholder), its neighbours are not, and the listing shows the network
// with the address that knocked. IPv4, a key that sets 128, and an admin
// key's remote whitelist are granted exactly.
func TestIPv6PrefixGrantsTheNetwork(t *testing.T) {
	t.Setenv("KNOCKER_TEST_EXACT", exactSecret)
	h := startCaddy(t, "ipv6_prefix 64\n\t\t"+exactKey, ipv6PrefixSite)

	expectEntry(t, h, "2001:db8:1:2::a", phoneSecret, "", "2001:db8:1:2::/64")
	expectAdmitted(t, h, 200, "2001:db8:1:2::a", "2001:db8:1:2::b", "2001:db8:1:2:ffff::1")
	expectAdmitted(t, h, 401, "2001:db8:1:3::1", "2001:db8:1:1:ffff:ffff:ffff:ffff")

	r := h.do(request{path: "/private", client: "2001:db8:1:2::b"})
	if r.status != 200 || r.header.Get("X-Knocker-Entry") != "2001:db8:1:2::/64" {
		t.Errorf("gate for a rotated address: %d, entry %q; want 200, 2001:db8:1:2::/64", r.status, r.header.Get("X-Knocker-Entry"))
	}
	st := h.do(request{path: "/knock/status", client: "2001:db8:1:2::b"}).json(t)
	if st["ip"] != "2001:db8:1:2::b" || st["whitelisted"] != true || st["entry"] != "2001:db8:1:2::/64" {
		t.Errorf("status for a rotated address: %v", st)
	}

	// The same network knocking again from another address renews the one
	// entry, recorded with the address that knocked last.
	expectEntry(t, h, "2001:db8:1:2::b", phoneSecret, `{"ttl":60}`, "2001:db8:1:2::/64")
	gs := grantsOf(t, admin(t, "GET", "/knocker/grants?contains=2001:db8:1:2::77", ""))
	if len(gs) != 1 || gs[0].Entry != "2001:db8:1:2::/64" || gs[0].Key == nil || *gs[0].Key != "phone" ||
		gs[0].ClientIP == nil || *gs[0].ClientIP != "2001:db8:1:2::b" || gs[0].ExpiresInSeconds > 60 {
		t.Fatalf("grants covering the network: %+v, want the /64 of phone, client 2001:db8:1:2::b, 60s", gs)
	}

	expectEntry(t, h, "203.0.113.60", phoneSecret, "", "203.0.113.60")
	expectAdmitted(t, h, 401, "203.0.113.61")

	expectEntry(t, h, "2001:db8:5:6::a", exactSecret, "", "2001:db8:5:6::a")
	expectAdmitted(t, h, 401, "2001:db8:5:6::b")

	// An admin key's own knock gets the network too; its remote whitelist
	// is granted as asked, however the key's ipv6_prefix is set.
	expectEntry(t, h, "2001:db8:8:8::1", adminSecret, "", "2001:db8:8:8::/64")
	expectEntry(t, h, "2001:db8:8:8::1", adminSecret, `{"ip_address":"2001:db8:7:7::5"}`, "2001:db8:7:7::5")
	expectAdmitted(t, h, 401, "2001:db8:7:7::6")
	expectEntry(t, h, "2001:db8:8:8::1", adminSecret, `{"ip_address":"2001:db8:8:8::1"}`, "2001:db8:8:8::1")
}

// ipv6PrefixJSON is the test config adapted to JSON, with ipv6_prefix set
// on the app (app != nil) and on the keys named in keys.
func ipv6PrefixJSON(t *testing.T, dir string, app any, keys map[string]any) string {
	t.Helper()
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(config(t, dir, "", ipv6PrefixSite)), nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		t.Fatal(err)
	}
	kn := cfg["apps"].(map[string]any)["knocker"].(map[string]any)
	if app != nil {
		kn["ipv6_prefix"] = app
	}
	for _, k := range kn["keys"].([]any) {
		k := k.(map[string]any)
		if v, ok := keys[k["name"].(string)]; ok {
			k["ipv6_prefix"] = v
		}
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// In JSON, as in the Caddyfile: a key's ipv6_prefix applies without a
// global one (default 128), and overrides it.
func TestIPv6PrefixPerKeyJSON(t *testing.T) {
	dir := t.TempDir()
	setKeyEnv(t)
	t.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	h := &harness{t: t, dir: dir}

	testcaddy.Load(t, ipv6PrefixJSON(t, dir, nil, map[string]any{"guest": 56}), "json")
	expectEntry(t, h, "2001:db8:2:3::a", phoneSecret, "", "2001:db8:2:3::a") // the default: the address
	expectAdmitted(t, h, 401, "2001:db8:2:3::b")
	expectEntry(t, h, "2001:db8:2:3::a", guestSecret, "", "2001:db8:2::/56")
	expectAdmitted(t, h, 200, "2001:db8:2:ff::1")
	expectAdmitted(t, h, 401, "2001:db8:2:100::1")

	testcaddy.Load(t, ipv6PrefixJSON(t, dir, 64, map[string]any{"guest": 128}), "json")
	expectEntry(t, h, "2001:db8:4:5::a", phoneSecret, "", "2001:db8:4:5::/64")
	expectEntry(t, h, "2001:db8:4:6::a", guestSecret, "", "2001:db8:4:6::a")
	expectAdmitted(t, h, 401, "2001:db8:4:6::b")
}

// Bad values are refused with an error naming the field, in JSON (the
// Caddyfile's are the adapt fixtures' error_ipv6_prefix_*).
func TestIPv6PrefixConfigErrors(t *testing.T) {
	dir := t.TempDir()
	setKeyEnv(t)
	const want = "want a prefix length from 48 to 128"
	for _, tc := range []struct {
		app  any
		keys map[string]any
		want string
	}{
		{0, nil, "ipv6_prefix: " + want},
		{129, nil, "ipv6_prefix: " + want},
		{32, nil, "ipv6_prefix: " + want},
		{-64, nil, "ipv6_prefix: " + want},
		{"64", nil, "ipv6_prefix"},
		{64.5, nil, "ipv6_prefix"},
		{nil, map[string]any{"guest": 0}, `key "guest": ipv6_prefix: ` + want + " (128: the address itself; 64: its network), got 0"},
		{nil, map[string]any{"guest": 47}, `key "guest": ipv6_prefix: ` + want},
		{64, map[string]any{"guest": 129}, `key "guest": ipv6_prefix: ` + want},
		{nil, map[string]any{"guest": "/64"}, "ipv6_prefix"},
	} {
		testcaddy.AssertLoadError(t, ipv6PrefixJSON(t, dir, tc.app, tc.keys), "json", tc.want)
	}
}

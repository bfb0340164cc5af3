package knocker

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/caddy-knocker/knocker/internal/testcaddy"
)

// Secrets of the scoped test keys (see scopedKeys).
const (
	friendSecret = "friend-secret-4c6e8a0b2d4f6a8c0e1a"
	gamerSecret  = "gamer-secret-7d9f1b3d5f7a9c1e3b5d"
	relaySecret  = "relay-secret-2a4c6e8a0c2e4a6c8e0b"
)

// scopedKeys are keys limited to scopes: friend to media, gamer to games
// and media, relay (which may whitelist other addresses) to games.
const scopedKeys = `
		key friend {env.KNOCKER_TEST_FRIEND} {
			max_ttl 1h
			scopes media
		}
		key gamer {env.KNOCKER_TEST_GAMER} {
			max_ttl 1h
			scopes games media games
		}
		key relay {env.KNOCKER_TEST_RELAY} {
			max_ttl 1h
			allow_remote_whitelist
			scopes games
		}`

// scopedSite has an unscoped gate on /private and gates of scope media
// and games on /media and /games.
const scopedSite = `
	knock
	handle /media* {
		knocker {
			scope media
		}
		respond "media {http.knocker.entry}" 200
	}
	handle /games* {
		knocker {
			scope games
		}
		respond "games" 200
	}
	handle {
		knocker
		respond "` + privateBody + `" 200
	}
`

func startScoped(t *testing.T, dir string) *harness {
	t.Helper()
	t.Setenv("KNOCKER_TEST_FRIEND", friendSecret)
	t.Setenv("KNOCKER_TEST_GAMER", gamerSecret)
	t.Setenv("KNOCKER_TEST_RELAY", relaySecret)
	return startCaddyIn(t, dir, scopedKeys, scopedSite)
}

// access is what client reaches: the status of /private, /media, /games and
// of /verify without a scope and with scope media and games.
func (h *harness) access(client string) string {
	h.t.Helper()
	var out []string
	for _, path := range []string{"/private", "/media", "/games", "/verify", "/verify?scope=media", "/verify?scope=games"} {
		out = append(out, fmt.Sprintf("%s=%d", path, h.do(request{path: path, client: client}).status))
	}
	return strings.Join(out, " ")
}

func accessWant(private, media, games int) string {
	return fmt.Sprintf("/private=%d /media=%d /games=%d /verify=%d /verify?scope=media=%d /verify?scope=games=%d",
		private, media, games, private, media, games)
}

// TestScopeMatrix: a key without scopes opens every gate; a scoped key opens
// only the gates of its scopes and never an unscoped one; /verify?scope= is
// the same decision; grants of several keys for one address combine.
func TestScopeMatrix(t *testing.T) {
	h := startScoped(t, t.TempDir())
	const (
		full   = "203.0.113.1"
		friend = "203.0.113.2"
		gamer  = "203.0.113.3"
		shared = "203.0.113.4" // one household behind one address
		nobody = "203.0.113.5"
	)
	expectStatus(t, h.knock(full, phoneSecret, ""), 200, "full-access knock")
	expectStatus(t, h.knock(friend, friendSecret, ""), 200, "friend knock")
	expectStatus(t, h.knock(gamer, gamerSecret, ""), 200, "gamer knock")
	for _, tc := range []struct {
		client string
		want   string
	}{
		{full, accessWant(200, 200, 200)},
		{friend, accessWant(401, 200, 401)},
		{gamer, accessWant(401, 200, 200)},
		{nobody, accessWant(401, 401, 401)},
	} {
		if got := h.access(tc.client); got != tc.want {
			t.Errorf("%s reaches %s\nwant %s", tc.client, got, tc.want)
		}
	}

	// One address, grants of several keys: each adds where it admits, and
	// none replaces another.
	expectStatus(t, h.knock(shared, friendSecret, ""), 200, "friend knock from the shared address")
	if got, want := h.access(shared), accessWant(401, 200, 401); got != want {
		t.Errorf("shared address after the friend's knock reaches %s\nwant %s", got, want)
	}
	expectStatus(t, h.knock(shared, relaySecret, ""), 200, "relay knock from the shared address")
	if got, want := h.access(shared), accessWant(401, 200, 200); got != want {
		t.Errorf("shared address after the relay's knock reaches %s\nwant %s", got, want)
	}
	expectStatus(t, h.knock(shared, phoneSecret, ""), 200, "phone knock from the shared address")
	if got, want := h.access(shared), accessWant(200, 200, 200); got != want {
		t.Errorf("shared address after the phone's knock reaches %s\nwant %s", got, want)
	}
	grants := grantsOf(t, admin(t, http.MethodGet, "/knocker/grants?contains="+shared, ""))
	var seen []string
	for _, g := range grants {
		seen = append(seen, fmt.Sprintf("%s:%v", *g.Key, g.Scopes))
	}
	slices.Sort(seen)
	if want := []string{"friend:[media]", "phone:[]", "relay:[games]"}; !slices.Equal(seen, want) {
		t.Errorf("grants for the shared address: %v, want %v", seen, want)
	}
	// The placeholder names the grant that admitted the request.
	if r := h.do(request{path: "/media", client: friend}); r.body != "media "+friend {
		t.Errorf("/media for the friend answered %q, want %q", r.body, "media "+friend)
	}
	// Revoking the address revokes every grant for it.
	if r := admin(t, http.MethodDelete, "/knocker/grants/"+shared, ""); r.Status != 200 || !strings.Contains(r.Body, `"revoked":3`) {
		t.Errorf("revoke %s: %d %s, want 200 {\"revoked\":3}", shared, r.Status, r.Body)
	}
	if got, want := h.access(shared), accessWant(401, 401, 401); got != want {
		t.Errorf("shared address after the revocation reaches %s\nwant %s", got, want)
	}

	// /knock/status shows a client what it holds, scoped or not; with
	// ?scope= what admits it there. A full-access grant's body is the
	// original's, without scopes.
	for _, tc := range []struct {
		client, query string
		whitelisted   bool
		scopes        any
	}{
		{friend, "", true, []any{"media"}},
		{friend, "?scope=media", true, []any{"media"}},
		{friend, "?scope=games", false, nil},
		{gamer, "", true, []any{"games", "media"}},
		{full, "", true, nil},
		{full, "?scope=games", true, nil},
		{nobody, "", false, nil},
	} {
		r := h.do(request{path: "/knock/status" + tc.query, client: tc.client})
		m := r.json(t)
		scopes, has := m["scopes"]
		if r.status != 200 || m["whitelisted"] != tc.whitelisted || fmt.Sprint(scopes) != fmt.Sprint(tc.scopes) || tc.scopes == nil && has {
			t.Errorf("/knock/status%s for %s: %d %s, want whitelisted %v, scopes %v", tc.query, tc.client, r.status, r.body, tc.whitelisted, tc.scopes)
		}
	}
	if r := h.do(request{path: "/knock/status?scope=Media", client: friend}); r.status != http.StatusBadRequest {
		t.Errorf("/knock/status?scope=Media: %d %s, want 400", r.status, r.body)
	}

	// A malformed scope asked of /verify is the proxy's misconfiguration.
	for _, q := range []string{"scope=Media", "scope=", "scope=a%20b", "scope=media&scope=games", "scope=media;x=1", "scope=med%ia"} {
		if r := h.do(request{path: "/verify?" + q, client: full}); r.status != http.StatusBadRequest {
			t.Errorf("/verify?%s answered %d %q, want 400", q, r.status, r.body)
		}
	}
}

// TestScopedRemoteAndOperatorGrants: a remote whitelist takes the knocking
// key's scopes, the admin API's grants take the scopes they are given, and
// both survive a restart.
func TestScopedRemoteAndOperatorGrants(t *testing.T) {
	dir := t.TempDir()
	h := startScoped(t, dir)
	expectStatus(t, h.knock("198.51.100.1", relaySecret, `{"ip_address":"192.0.2.0/24","ttl":600}`), 200, "relay remote knock")
	if r := admin(t, http.MethodPost, "/knocker/grants", `{"entry":"192.0.2.128/25","ttl":600,"scopes":["media"]}`); r.Status != 200 || !strings.Contains(r.Body, `"scopes":["media"]`) {
		t.Fatalf("operator grant with scopes: %d %s", r.Status, r.Body)
	}
	check := func(when string) {
		t.Helper()
		for _, tc := range []struct {
			client string
			want   string
		}{
			{"192.0.2.1", accessWant(401, 401, 200)},
			{"192.0.2.200", accessWant(401, 200, 200)},
		} {
			if got := h.access(tc.client); got != tc.want {
				t.Errorf("%s: %s reaches %s\nwant %s", when, tc.client, got, tc.want)
			}
		}
	}
	check("before the restart")
	// A config without knocker closes the store. The snapshot, which the
	// Python Knocker could read, holds no scoped grant: migrating back must
	// not turn one into a full-access grant.
	stopKnocker(t)
	var snapshot map[string]int64
	if err := json.Unmarshal([]byte(h.readFile("state/whitelist.json")), &snapshot); err != nil || len(snapshot) != 0 {
		t.Fatalf("snapshot after close: %v (%v), want no entries", snapshot, err)
	}
	if meta := h.readFile("state/whitelist.json.meta"); !strings.Contains(meta, "scopes=games") || !strings.Contains(meta, "scopes=media") {
		t.Fatalf("metadata after close lacks the scoped grants:\n%s", meta)
	}
	h = startScoped(t, dir)
	check("after the restart")

	for body, msg := range map[string]string{
		`{"entry":"192.0.2.9","ttl":60,"scopes":[]}`:          "scopes: list at least one scope",
		`{"entry":"192.0.2.9","ttl":60,"scopes":["Media"]}`:   "scopes:",
		`{"entry":"192.0.2.9","ttl":60,"scopes":["a b"]}`:     "scopes:",
		`{"entry":"192.0.2.9","ttl":60,"scopes":"media"}`:     "want {",
		`{"entry":"192.0.2.9","ttl":60,"scopes":[""]}`:        "scopes:",
		`{"entry":"192.0.2.9","ttl":60,"scopes":["x","x!"]}`:  "scopes:",
		`{"entry":"192.0.2.9","ttl":60,"scopes":[1]}`:         "want {",
		`{"entry":"192.0.2.9","ttl":60,"scopes":["media",7]}`: "want {",
	} {
		expectAdminError(t, admin(t, http.MethodPost, "/knocker/grants", body), http.StatusBadRequest, msg)
	}
}

// TestScopeConfigErrors: a key's scopes must be words, at least one; a
// gate takes one scope word. In the Caddyfile and in JSON, which skips
// the Caddyfile's checks.
func TestScopeConfigErrors(t *testing.T) {
	dir := t.TempDir()
	setKeyEnv(t)
	t.Setenv("KNOCKER_TEST_FRIEND", friendSecret)
	key := func(lines string) string {
		return "key k {env.KNOCKER_TEST_FRIEND} {\n\t\t\tmax_ttl 1h\n\t\t\t" + lines + "\n\t\t}"
	}
	for _, tc := range []struct{ extra, site, want string }{
		{key("scopes"), "knocker", `key "k": scopes: want scopes <scope>...`},
		{key("scopes Media"), "knocker", `key "k": scopes:`},
		{key("scopes a\n\t\t\tscopes b"), "knocker", `key "k": scopes: specified more than once`},
		{"", "knocker {\n\t\tscope\n\t}", "scope: want scope <name>"},
		{"", "knocker {\n\t\tscope media games\n\t}", "scope: want scope <name>"},
		{"", "knocker {\n\t\tscope Media\n\t}", "scope:"},
	} {
		testcaddy.AssertLoadError(t, config(t, dir, tc.extra, tc.site), "caddyfile", tc.want)
	}
	jsonConfig := func(keyScopes, gateScope string) string {
		return fmt.Sprintf(`{"admin": {"listen": %q}, "apps": {
			"knocker": {"whitelist_file": %q, "keys": [{"name": "k", "secret": %q, "max_ttl": 3600000000000, "scopes": %s}]},
			"http": {"servers": {"s": {"listen": ["127.0.0.1:%d"], "routes": [{"handle": [{"handler": "knocker", "scope": %q}]}]}}}}}`,
			testcaddy.AdminAddress(t), dir+"/whitelist.json", friendSecret, keyScopes, httpPort, gateScope)
	}
	testcaddy.AssertLoadError(t, jsonConfig(`[]`, ""), "json", `key "k": scopes: list at least one scope`)
	testcaddy.AssertLoadError(t, jsonConfig(`["media", "Media"]`, ""), "json", `key "k": scopes:`)
	testcaddy.AssertLoadError(t, jsonConfig(`["media"]`, "media games"), "json", "scope:")
}

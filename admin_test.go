package knocker

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-knocker/knocker/internal/testcaddy"
	"github.com/caddy-knocker/knocker/internal/testutil"
)

// admin calls the knocker admin API of the test Caddy.
func admin(t *testing.T, method, path, body string) testutil.Response {
	t.Helper()
	var r *http.Request
	var err error
	if body != "" {
		r, err = http.NewRequest(method, "http://"+testcaddy.AdminAddress(t)+path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
	} else {
		r, err = http.NewRequest(method, "http://"+testcaddy.AdminAddress(t)+path, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return testutil.MustDo(t, &http.Client{Timeout: 10 * time.Second}, r)
}

// grantsOf decodes a grant list.
func grantsOf(t *testing.T, r testutil.Response) []grantJSON {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("grants: %d %s", r.Status, r.Body)
	}
	var out []grantJSON
	if err := json.Unmarshal([]byte(r.Body), &out); err != nil {
		t.Fatalf("grants body %q: %v", r.Body, err)
	}
	slices.SortFunc(out, func(a, b grantJSON) int { return strings.Compare(a.Entry, b.Entry) })
	return out
}

func entriesOf(gs []grantJSON) []string {
	var out []string
	for _, g := range gs {
		out = append(out, g.Entry)
	}
	return out
}

func expectAdminError(t *testing.T, r testutil.Response, status int, msg string) {
	t.Helper()
	var body struct {
		Error string `json:"error"`
	}
	if r.Status != status || json.Unmarshal([]byte(r.Body), &body) != nil || !strings.Contains(body.Error, msg) {
		t.Fatalf("got %d %s, want %d with an error containing %q", r.Status, r.Body, status, msg)
	}
}

// TestAdminAPIGrants: an operator lists who is let in (with the key, the
// time and the client of each grant), adds a grant, revokes one entry and
// every grant of a lost phone's key, each taking effect at once; bad input
// gets a clear error.
func TestAdminAPIGrants(t *testing.T) {
	h := startCaddy(t, "", defaultSite)
	at := time.Unix(1795305600, 0)
	freezeClock(t, at)
	expectStatus(t, h.knock("203.0.113.10", phoneSecret, ""), 200, "phone knock")
	expectStatus(t, h.knock("203.0.113.11", phoneSecret, `{"ttl":60}`), 200, "phone knock from elsewhere")
	expectStatus(t, h.knock("198.51.100.20", adminSecret, `{"ip_address":"192.0.2.0/24","ttl":600}`), 200, "admin remote knock")

	all := grantsOf(t, admin(t, "GET", "/knocker/grants", ""))
	if got := entriesOf(all); !slices.Equal(got, []string{"192.0.2.0/24", "203.0.113.10", "203.0.113.11"}) {
		t.Fatalf("grants %v", got)
	}
	g := all[2]
	if g.Key == nil || *g.Key != "phone" || g.CreatedAt == nil || *g.CreatedAt != at.Unix() || g.ClientIP == nil || *g.ClientIP != "203.0.113.11" ||
		g.ExpiresAt != at.Unix()+60 || g.ExpiresInSeconds != 60 {
		t.Fatalf("grant %+v: want key phone, created now, client 203.0.113.11, 60 s left", g)
	}
	if c := all[0].ClientIP; c == nil || *c != "198.51.100.20" {
		t.Fatalf("remote grant's client %v, want the admin's address", c)
	}
	// A config reload keeps the grants and their details.
	startCaddyIn(t, h.dir, "max_entries 500", defaultSite)
	if again := grantsOf(t, admin(t, "GET", "/knocker/grants", "")); !slices.EqualFunc(again, all, func(a, b grantJSON) bool {
		return a.Entry == b.Entry && *a.Key == *b.Key && *a.CreatedAt == *b.CreatedAt && *a.ClientIP == *b.ClientIP
	}) {
		t.Fatalf("after a reload: %+v, want %+v", again, all)
	}
	if got := entriesOf(grantsOf(t, admin(t, "GET", "/knocker/grants?key=phone", ""))); !slices.Equal(got, []string{"203.0.113.10", "203.0.113.11"}) {
		t.Fatalf("?key=phone: %v", got)
	}
	if got := entriesOf(grantsOf(t, admin(t, "GET", "/knocker/grants?contains=192.0.2.77", ""))); !slices.Equal(got, []string{"192.0.2.0/24"}) {
		t.Fatalf("?contains=192.0.2.77: %v", got)
	}
	if got := grantsOf(t, admin(t, "GET", "/knocker/grants?key=nobody", "")); len(got) != 0 {
		t.Fatalf("?key=nobody: %v", got)
	}

	// An operator's grant: admitted at once, recorded as the admin API's.
	r := admin(t, "POST", "/knocker/grants", `{"entry":"2001:db8:7::/64","ttl":120}`)
	var added grantJSON
	if r.Status != 200 || json.Unmarshal([]byte(r.Body), &added) != nil || added.Entry != "2001:db8:7::/64" || added.Key == nil || *added.Key != "admin-api" || added.ExpiresInSeconds != 120 {
		t.Fatalf("POST: %d %s", r.Status, r.Body)
	}
	if got := h.gate("2001:db8:7::5"); got != 200 {
		t.Fatalf("gate for the operator's grant: %d", got)
	}

	// Revoking one entry denies it at once, at the gate and at /verify.
	if got := h.gate("192.0.2.77"); got != 200 {
		t.Fatalf("gate before revocation: %d", got)
	}
	r = admin(t, "DELETE", "/knocker/grants/192.0.2.0%2F24", "")
	if r.Status != 200 || strings.TrimSpace(r.Body) != `{"revoked":1}` {
		t.Fatalf("DELETE one: %d %s", r.Status, r.Body)
	}
	if got := h.gate("192.0.2.77"); got != 401 {
		t.Fatalf("gate after revocation: %d, want 401", got)
	}
	if v := h.do(request{path: "/verify", client: "192.0.2.77"}); v.status != 401 {
		t.Fatalf("/verify after revocation: %d, want 401", v.status)
	}
	expectAdminError(t, admin(t, "DELETE", "/knocker/grants/192.0.2.0%2F24", ""), 404, "no grant for 192.0.2.0/24")

	// A lost phone: every grant of its key goes, and nothing else.
	r = admin(t, "DELETE", "/knocker/grants?key=phone", "")
	if r.Status != 200 || strings.TrimSpace(r.Body) != `{"revoked":2}` {
		t.Fatalf("DELETE ?key=phone: %d %s", r.Status, r.Body)
	}
	if got := h.gate("203.0.113.10"); got != 401 {
		t.Fatalf("gate for the revoked phone: %d, want 401", got)
	}
	if got := entriesOf(grantsOf(t, admin(t, "GET", "/knocker/grants", ""))); !slices.Equal(got, []string{"2001:db8:7::/64"}) {
		t.Fatalf("grants after revocations: %v", got)
	}

	for _, tc := range []struct{ method, path, body, msg string }{
		{"POST", "/knocker/grants", `{"entry":"10.0.0.0/8","ttl":60}`, "too broad"},
		{"POST", "/knocker/grants", `{"entry":"nope","ttl":60}`, `entry: "nope"`},
		{"POST", "/knocker/grants", `{"entry":"10.0.0.1","ttl":0}`, "ttl: want a positive number"},
		{"POST", "/knocker/grants", `{"entry":"10.0.0.1","ttl":315360001}`, "TTL too large"},
		{"POST", "/knocker/grants", `{"entry":"10.0.0.1","ttl":60,"key":"phone"}`, `unknown field "key"`},
		{"POST", "/knocker/grants", `[]`, "want {"},
		{"GET", "/knocker/grants?contains=banana", "", `contains: "banana" is not an IP address`},
		{"DELETE", "/knocker/grants/not-an-ip", "", `entry "not-an-ip"`},
		{"DELETE", "/knocker/grants", "", "?key=NAME"},
	} {
		expectAdminError(t, admin(t, tc.method, tc.path, tc.body), 400, tc.msg)
	}
	expectAdminError(t, admin(t, "PUT", "/knocker/grants", "{}"), 405, "method not allowed")
	expectAdminError(t, admin(t, "GET", "/knocker/grants/10.0.0.1", ""), 405, "method not allowed")
	expectAdminError(t, admin(t, "DELETE", "/knocker/grants/", ""), 400, `entry ""`)
}

// The admin API's key name cannot be a configured key's.
func TestReservedKeyName(t *testing.T) {
	keys := []APIKey{{Name: "admin-api", Secret: "secret-0123456789abcdef", MaxTTL: caddy.Duration(time.Hour)}}
	if _, _, err := newKeyring(keys, nil, caddy.NewReplacer()); err == nil || !strings.Contains(err.Error(), `key "admin-api": the name is reserved`) {
		t.Fatalf("newKeyring = %v, want the reserved-name error", err)
	}
}

// Grants imported from the Python Knocker's whitelist.json have no key,
// no times and no client: null in the listing.
func TestAdminAPIImportedGrant(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Unix()
	if err := os.WriteFile(filepath.Join(dir, "state", "whitelist.json"), fmt.Appendf(nil, `{"198.51.100.0/24": %d}`, exp), 0o600); err != nil {
		t.Fatal(err)
	}
	startCaddyIn(t, dir, "", defaultSite)
	r := admin(t, "GET", "/knocker/grants", "")
	want := fmt.Sprintf(`[{"entry":"198.51.100.0/24","expires_at":%d,"expires_in_seconds":`, exp)
	if r.Status != 200 || !strings.HasPrefix(r.Body, want) || !strings.HasSuffix(strings.TrimSpace(r.Body), `"key":null,"created_at":null,"renewed_at":null,"client_ip":null,"scopes":null}]`) {
		t.Fatalf("imported grant: %d %s", r.Status, r.Body)
	}
}

package knocker

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-knocker/knocker/internal/testcaddy"
)

// matcherSite answers "app" to knocked clients, "media" to those whose
// grant admits the scope media (every grant, until keys carry scopes),
// and "landing" to everyone else.
const matcherSite = `
	knock {
		web off
	}
	@media {
		path /media
		knocked media
	}
	@in knocked
	handle @media {
		respond "media"
	}
	handle @in {
		respond "app"
	}
	handle {
		respond "landing"
	}
`

// expectBody fails the test unless a GET of path for client answers 200
// with body.
func expectBody(t *testing.T, h *harness, req request, body string) {
	t.Helper()
	r := h.do(req)
	if r.status != http.StatusOK || r.body != body {
		t.Fatalf("GET %s as %q from %q: %d %q, want 200 %q", req.path, req.client, req.peer, r.status, r.body, body)
	}
}

func TestKnockedMatcherRoutes(t *testing.T) {
	h := startCaddy(t, "", matcherSite)
	const client, neighbour = "203.0.113.30", "203.0.113.31"

	expectBody(t, h, request{path: "/", client: client}, "landing")
	expectBody(t, h, request{path: "/media", client: client}, "landing")
	expectStatus(t, h.knock(client, phoneSecret, ""), http.StatusOK, "knock")
	expectBody(t, h, request{path: "/", client: client}, "app")
	expectBody(t, h, request{path: "/media", client: client}, "media")
	expectBody(t, h, request{path: "/", client: "::ffff:" + client}, "app")
	expectBody(t, h, request{path: "/", client: neighbour}, "landing")
	expectBody(t, h, request{path: "/media", client: neighbour}, "landing")

	// A CIDR grant covers its range.
	expectStatus(t, h.knock(client, adminSecret, `{"ip_address":"2001:db8:5::/64"}`), http.StatusOK, "CIDR knock")
	expectBody(t, h, request{path: "/", client: "2001:db8:5::99"}, "app")
	expectBody(t, h, request{path: "/", client: "2001:db8:6::1"}, "landing")

	// An expired grant matches no more.
	advanceClock(t, 5*3600e9)
	expectBody(t, h, request{path: "/", client: client}, "landing")
}

// The matcher judges the client as the gate does: forwarded headers count
// only from a trusted proxy, and a trusted proxy without a usable header
// is nobody, even when the proxy itself holds a grant.
func TestKnockedMatcherClientIPFailsClosed(t *testing.T) {
	h := startCaddy(t, "", matcherSite)
	const knocked = "203.0.113.40"
	expectStatus(t, h.knock(knocked, phoneSecret, ""), http.StatusOK, "knock")
	expectStatus(t, h.knock(knocked, adminSecret, `{"ip_address":"`+trustedPeer+`"}`), http.StatusOK, "knock for the proxy")

	expectBody(t, h, request{path: "/", client: knocked}, "app")
	for _, xff := range []string{"", "garbage", trustedPeer, "::ffff:" + trustedPeer} {
		expectBody(t, h, request{path: "/", client: xff}, "landing")
	}
	// An untrusted peer is judged by its own address, whatever it forwards.
	expectBody(t, h, request{path: "/", peer: untrustedIP4, client: knocked}, "landing")
	expectStatus(t, h.do(request{method: http.MethodPost, path: "/knock", peer: untrustedIP4, key: phoneSecret}), http.StatusOK, "direct knock")
	expectBody(t, h, request{path: "/", peer: untrustedIP4, client: "198.51.100.1"}, "app")
}

// matcherJSON is the test config in JSON with routes as its server's
// routes.
func matcherJSON(t *testing.T, dir, routes string) string {
	t.Helper()
	setKeyEnv(t)
	t.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(config(t, dir, "", `respond "unused"`)), nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		t.Fatal(err)
	}
	servers := cfg["apps"].(map[string]any)["http"].(map[string]any)["servers"].(map[string]any)
	if len(servers) != 1 {
		t.Fatalf("want one server in the adapted config, got %d", len(servers))
	}
	for _, srv := range servers {
		srv.(map[string]any)["routes"] = json.RawMessage(routes)
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// The JSON form: a matcher set maps "knocked" to {} or {"scope": ...}.
func TestKnockedMatcherJSON(t *testing.T) {
	dir := t.TempDir()
	testcaddy.Load(t, matcherJSON(t, dir, `[
		{"handle": [{"handler": "knock", "disable_web": true}]},
		{"match": [{"path": ["/media"], "knocked": {"scope": "media"}}], "handle": [{"handler": "static_response", "body": "media"}], "terminal": true},
		{"match": [{"knocked": {}}], "handle": [{"handler": "static_response", "body": "app"}], "terminal": true},
		{"handle": [{"handler": "static_response", "body": "landing"}]}
	]`), "json")
	h := &harness{t: t, dir: dir}

	const client = "203.0.113.50"
	expectBody(t, h, request{path: "/", client: client}, "landing")
	expectStatus(t, h.knock(client, phoneSecret, ""), http.StatusOK, "knock")
	expectBody(t, h, request{path: "/", client: client}, "app")
	expectBody(t, h, request{path: "/media", client: client}, "media")
	expectBody(t, h, request{path: "/media", client: "203.0.113.51"}, "landing")

	testcaddy.AssertLoadError(t, matcherJSON(t, t.TempDir(), `[{"match": [{"knocked": {"scope": "Media"}}], "handle": [{"handler": "static_response"}]}]`), "json",
		`scope: "Media" is not a scope name`)
	testcaddy.AssertLoadError(t, matcherJSON(t, t.TempDir(), `[{"match": [{"knocked": {"scopes": "media"}}], "handle": [{"handler": "static_response"}]}]`), "json",
		`unknown field "scopes"`)
}

func TestKnockedMatcherConfigErrors(t *testing.T) {
	for _, tc := range []struct{ matcher, want string }{
		{`knocked media extra`, `knocked: too many arguments`},
		{`knocked Media`, `knocked: "Media" is not a scope name`},
		{`knocked -media`, `knocked: "-media" is not a scope name`},
		{`knocked media.tv`, `"media.tv" is not a scope name`},
		{`knocked abcdefghijklmnopqrstuvwxyz0123456`, `longer than 32 characters`},
		{"knocked {\n\t\tmedia\n\t}", `knocked: blocks are not supported`},
	} {
		cfg := "http://:8080 {\n\t@in " + tc.matcher + "\n\trespond @in \"in\"\n}\n"
		_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: adapt error %v, want %q", tc.matcher, err, tc.want)
		}
	}
	cfg := "http://:8080 {\n\t@in {\n\t\tknocked\n\t\tknocked media\n\t}\n\trespond @in \"in\"\n}\n"
	if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil); err == nil || !strings.Contains(err.Error(), "knocked: given more than once in one matcher set") {
		t.Errorf("knocked twice in one set: adapt error %v", err)
	}
}

// A TLS 0-RTT request's address is not verified yet: no match, and the
// error Caddy's own IP matchers return, so that the client retries after
// the handshake (a real client cannot be made to send early data here).
func TestKnockedMatcherEarlyData(t *testing.T) {
	m := &MatchKnocked{app: newBenchGate(t).app}
	if !m.Match(gateRequest("203.0.113.7")) {
		t.Fatal("knocked client not matched")
	}
	if m.Match(gateRequest("203.0.113.8")) {
		t.Fatal("client without grant matched")
	}
	r := gateRequest("203.0.113.7")
	r.TLS = &tls.ConnectionState{HandshakeComplete: false}
	ok, err := m.MatchWithError(r)
	if he, isHE := err.(caddyhttp.HandlerError); ok || !isHE || he.StatusCode != http.StatusTooEarly {
		t.Fatalf("0-RTT request: matched %v, error %v; want no match and a 425 error", ok, err)
	}
	if m.Match(r) || caddyhttp.GetVar(r.Context(), caddyhttp.MatcherErrorVarKey) == nil {
		t.Fatal("Match of a 0-RTT request: matched, or its error not left in the matcher error var")
	}
}

// BenchmarkKnockedMatcher is the matcher's cost for a knocked client, as
// BenchmarkGateServeHTTP is the gate's.
func BenchmarkKnockedMatcher(b *testing.B) {
	m := &MatchKnocked{app: newBenchGate(b).app}
	r := gateRequest("203.0.113.7")
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := m.MatchWithError(r); !ok || err != nil {
			b.Fatalf("knocked client: %v, %v", ok, err)
		}
	}
}

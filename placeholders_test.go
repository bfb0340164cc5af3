package knocker

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

const allPlaceholders = "{http.knocker.client_ip}|{http.knocker.entry}|{http.knocker.expires_in}|{http.knocker.denied_reason}"

// gatePlaceholders runs g on r and renders the placeholders afterwards, as
// handle_errors or a deferred header would.
func gatePlaceholders(t *testing.T, g *Gate, r *http.Request) string {
	t.Helper()
	_ = g.ServeHTTP(httptest.NewRecorder(), r, okHandler)
	return r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer).ReplaceAll(allPlaceholders, "")
}

func TestGatePlaceholdersWithoutCaddy(t *testing.T) {
	g := newBenchGate(t) // 203.0.113.7 granted for an hour
	t0 := time.Now().Truncate(time.Second)
	freezeClock(t, t0)
	e, _, err := g.app.matchIn(netip.MustParseAddr("203.0.113.7"), "", t0.Unix())
	if err != nil {
		t.Fatal(err)
	}
	expiresIn := e.Expires - t0.Unix()

	for _, c := range []struct {
		name, client string
		tls          bool
		want         string
	}{
		{"admitted", "203.0.113.7", false, "203.0.113.7|203.0.113.7|" + itoa64(expiresIn) + "|"},
		{"admitted, IPv4-mapped", "::ffff:203.0.113.7", false, "203.0.113.7|203.0.113.7|" + itoa64(expiresIn) + "|"},
		{"no grant", "203.0.113.8", false, "203.0.113.8|||not_whitelisted"},
		{"no client IP", "garbage", false, "|||no_client_ip"},
		{"0-RTT", "203.0.113.7", true, "|||early_data"},
	} {
		r := gateRequest(c.client)
		if c.tls {
			r.TLS = &tls.ConnectionState{HandshakeComplete: false}
		}
		if got := gatePlaceholders(t, g, r); got != c.want {
			t.Errorf("%s: placeholders %q, want %q", c.name, got, c.want)
		}
	}

	// always_allow without a grant: admitted, no entry.
	g.AlwaysAllow = []string{"198.51.100.0/24"}
	if err := g.AccessPolicy.provision(); err != nil {
		t.Fatal(err)
	}
	if got, want := gatePlaceholders(t, g, gateRequest("198.51.100.1")), "198.51.100.1|||"; got != want {
		t.Errorf("always_allow: placeholders %q, want %q", got, want)
	}

	// A second gate on the same request (a stricter one inside) has the
	// last word, and the provider is added once.
	r := gateRequest("198.51.100.1")
	strict := newBenchGate(t)
	_ = g.ServeHTTP(httptest.NewRecorder(), r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return strict.ServeHTTP(w, r, okHandler)
	}))
	if got, want := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer).ReplaceAll(allPlaceholders, ""), "198.51.100.1|||not_whitelisted"; got != want {
		t.Errorf("after a second gate: placeholders %q, want %q", got, want)
	}
}

// The README's deny page and a deferred header, in a real Caddy: the
// denied client sees its address and the reason, the admitted one its
// grant.
func TestGatePlaceholders(t *testing.T) {
	h := startCaddy(t, "", `
	knock
	knocker
	header >X-Knocker-Entry {http.knocker.entry}
	header >X-Knocker-Expires-In {http.knocker.expires_in}
	respond "ok"
	handle_errors 401 {
		respond "{http.knocker.client_ip} is not let in ({http.knocker.denied_reason}). Knock first." 401
	}`)
	t0 := time.Now().Truncate(time.Second)
	freezeClock(t, t0)
	expectStatus(t, h.knock("203.0.113.150", phoneSecret, `{"ttl": 600}`), 200, "knock")
	freezeClock(t, t0.Add(10*time.Second))
	r := h.do(request{path: "/app", client: "203.0.113.150"})
	if r.status != 200 || r.header.Get("X-Knocker-Entry") != "203.0.113.150" || r.header.Get("X-Knocker-Expires-In") != "590" {
		t.Errorf("admitted: %d, entry %q, expires_in %q; want 200, 203.0.113.150, 590", r.status, r.header.Get("X-Knocker-Entry"), r.header.Get("X-Knocker-Expires-In"))
	}
	for client, want := range map[string]string{
		"203.0.113.151":        "203.0.113.151 is not let in (not_whitelisted). Knock first.",
		"::ffff:203.0.113.152": "203.0.113.152 is not let in (not_whitelisted). Knock first.",
		"garbage":              " is not let in (no_client_ip). Knock first.",
	} {
		if r := h.do(request{path: "/app", client: client}); r.status != 401 || r.body != want {
			t.Errorf("denied %s: %d %q, want 401 %q", client, r.status, r.body, want)
		}
	}
}

func itoa64(v int64) string { return caddy.ToString(v) }

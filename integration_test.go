package knocker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/caddy-knocker/knocker/internal/testcaddy"
	"github.com/caddy-knocker/knocker/store"
)

func TestKnockThenGate(t *testing.T) {
	h := startCaddy(t, "", defaultSite)
	const client = "203.0.113.10"

	if got := h.gate(client); got != http.StatusUnauthorized {
		t.Fatalf("before knocking: %d, want 401", got)
	}
	r := h.knock(client, adminSecret, "")
	expectStatus(t, r, http.StatusOK, "knock")
	m := r.json(t)
	if len(m) != 3 || m["whitelisted_entry"] != client || m["expires_in_seconds"] != 3600.0 {
		t.Fatalf("knock response %s, want exactly whitelisted_entry, expires_at, expires_in_seconds", r.body)
	}
	if at := int64(m["expires_at"].(float64)); at-now().Unix() < 3590 || at-now().Unix() > 3600 {
		t.Fatalf("expires_at %d is not about an hour from now", at)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	if r.header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatal("200 without Access-Control-Allow-Origin: *")
	}

	page := h.do(request{path: "/private", client: client})
	if page.status != http.StatusOK || page.body != privateBody {
		t.Fatalf("after knocking: %d %q", page.status, page.body)
	}
	if got := h.gate("203.0.113.11"); got != http.StatusUnauthorized {
		t.Fatalf("a neighbour that did not knock: %d, want 401", got)
	}
	// The knock endpoints stay reachable in a gated site; excluded paths pass.
	expectStatus(t, h.do(request{path: "/health", client: "198.51.100.99"}), 200, "health in a gated site")
	expectStatus(t, h.do(request{path: "/public/docs", client: "198.51.100.99"}), 200, "excluded path")
	expectStatus(t, h.do(request{path: "/publicity", client: "198.51.100.99"}), 401, "prefix without segment boundary")
	expectStatus(t, h.do(request{path: "/public/../private", client: "198.51.100.99"}), 401, "dot segments out of an exclusion")
}

func TestKnockDirectPeersBothFamilies(t *testing.T) {
	h := startCaddy(t, "", defaultSite)
	// Untrusted peers are identified by their own address, X-Forwarded-For ignored.
	for _, peer := range []string{untrustedIP4, "::1"} {
		r := h.do(request{method: http.MethodPost, path: "/knock", peer: peer, client: "203.0.113.99", key: phoneSecret})
		expectStatus(t, r, http.StatusOK, "knock from "+peer)
		if got := r.json(t)["whitelisted_entry"]; got != peer {
			t.Fatalf("knock from %s whitelisted %v", peer, got)
		}
		expectStatus(t, h.do(request{path: "/x", peer: peer}), 200, "gate for "+peer)
	}
	expectStatus(t, h.do(request{path: "/x", peer: untrustedIP4, client: "203.0.113.99"}), 200, "spoofed XFF from a whitelisted untrusted peer still is that peer")
	if got := h.gate("203.0.113.99"); got != 401 {
		t.Fatalf("the spoofed address was whitelisted: %d", got)
	}
}

func TestKnockClientIPFailsClosed(t *testing.T) {
	h := startCaddy(t, "", defaultSite)
	// A trusted proxy that sends no usable X-Forwarded-For: Caddy falls back
	// to the proxy's address, which must never be whitelisted or admitted.
	for _, xff := range []string{"", "garbage", "127.0.0.1", "::ffff:127.0.0.1"} {
		r := h.knock(xff, adminSecret, "")
		expectError(t, r, http.StatusBadRequest, "Could not determine client IP.")
		if got := h.gate(xff); got != http.StatusUnauthorized {
			t.Fatalf("gate with XFF %q: %d, want 401", xff, got)
		}
	}
	// IPv4-mapped IPv6 is the IPv4 client.
	r := h.knock("::ffff:203.0.113.77", adminSecret, "")
	expectStatus(t, r, 200, "mapped client")
	if got := r.json(t)["whitelisted_entry"]; got != "203.0.113.77" {
		t.Fatalf("mapped client stored as %v", got)
	}
	expectStatus(t, h.do(request{path: "/", client: "203.0.113.77"}), 200, "unmapped client")
	expectStatus(t, h.do(request{path: "/", client: "::ffff:203.0.113.77"}), 200, "mapped client")
}

func TestKnockRemoteWhitelistAndTTL(t *testing.T) {
	h := startCaddy(t, "", defaultSite)
	const caller = "203.0.113.20"

	r := h.knock(caller, adminSecret, `{"ip_address":"198.51.100.77/24","ttl":120}`)
	expectStatus(t, r, 200, "admin remote CIDR")
	m := r.json(t)
	if m["whitelisted_entry"] != "198.51.100.0/24" || m["expires_in_seconds"] != 120.0 {
		t.Fatalf("remote knock: %s", r.body)
	}
	if h.gate("198.51.100.200") != 200 || h.gate("198.51.101.1") != 401 || h.gate(caller) != 401 {
		t.Fatal("CIDR grant does not cover exactly its range")
	}
	r = h.knock(caller, adminSecret, `{"ip_address":"2001:DB8:0:0:1::5/64"}`)
	expectStatus(t, r, 200, "admin remote IPv6")
	if m := r.json(t); m["whitelisted_entry"] != "2001:db8::/64" || m["expires_in_seconds"] != 3600.0 {
		t.Fatalf("IPv6 CIDR knock: %s", r.body)
	}
	if h.gate("2001:db8::abcd") != 200 || h.gate("2001:db8:0:1::1") != 401 {
		t.Fatal("IPv6 CIDR grant does not cover exactly its range")
	}

	expectError(t, h.knock(caller, phoneSecret, `{"ip_address":"198.51.100.5"}`), 403, "API key lacks remote whitelist permission.")
	expectError(t, h.knock(caller, phoneSecret, `{"ip_address":"`+caller+`"}`), 403, "API key lacks remote whitelist permission.")
	expectStatus(t, h.knock(caller, phoneSecret, `{"ip_address":null}`), 200, "null ip_address is an own-IP knock")
	expectError(t, h.knock(caller, adminSecret, `{"ip_address":"10.0.0.0/15"}`), 400, "CIDR range too broad.")
	expectError(t, h.knock(caller, adminSecret, `{"ip_address":"2001:db8::/63"}`), 400, "CIDR range too broad.")
	expectError(t, h.knock(caller, adminSecret, `{"ip_address":"64:ff9b::/96"}`), 400, "CIDR range too broad.") // all of IPv4 behind NAT64
	expectError(t, h.knock(caller, adminSecret, `{"ip_address":"::ffff:0:0/96"}`), 400, "IPv4-mapped")

	if m := h.knock(caller, guestSecret, `{"ttl":9999}`).json(t); m["expires_in_seconds"] != 600.0 {
		t.Fatalf("guest ttl 9999 not capped at 600: %v", m)
	}
	if m := h.knock(caller, adminSecret, `{"ttl":120}`).json(t); m["expires_in_seconds"] != 120.0 {
		t.Fatalf("admin ttl 120: %v", m)
	}
	expectError(t, h.knock(caller, adminSecret, `{"ttl":-50}`), 400, "Invalid TTL specified. Must be a positive integer.")
	expectError(t, h.knock(caller, adminSecret, `{"ttl":315360001}`), 400, "TTL too large. Maximum allowed is 315360000 seconds (10 years).")
}

func TestKnockErrorsAreJSON(t *testing.T) {
	h := startCaddy(t, "", defaultSite)
	const c = "203.0.113.30"
	expectError(t, h.knock(c, "", ""), 401, "Invalid or missing API key.")
	expectError(t, h.knock(c, "not-a-key", ""), 401, "Invalid or missing API key.")
	expectError(t, h.do(request{method: "POST", path: "/knock", client: c, headers: map[string]string{"X-Api-Key": "ключ"}}), 401, "Invalid or missing API key.")
	expectError(t, h.do(request{method: "POST", path: "/knock", client: c, key: adminSecret, ctype: "text/plain", body: "{}"}), 415, "Request body must be JSON.")
	expectError(t, h.knock(c, adminSecret, `{"ttl": 5} trailing`), 400, "Malformed JSON request body.")
	expectError(t, h.knock(c, adminSecret, "{\"ip_address\": \"\xff\"}"), 400, "Malformed JSON request body.")
	expectError(t, h.knock(c, adminSecret, `{"TTL": 5}`), 400, "unknown field")
	expectError(t, h.knock(c, adminSecret, `[]`), 400, "Request body must be a JSON object.")

	// The body limit is 4096 bytes, declared or streamed.
	pad := func(n int) string { return `{"ttl":60` + strings.Repeat(" ", n-len(`{"ttl":60}`)) + `}` }
	expectStatus(t, h.knock(c, adminSecret, pad(4096)), 200, "4096-byte body")
	expectError(t, h.knock(c, adminSecret, pad(4097)), 413, "Request body too large.")
	r, err := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/knock", httpPort), strings.NewReader(pad(6000)))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("X-Api-Key", adminSecret)
	r.Header.Set("X-Forwarded-For", c)
	r.Header.Set("Content-Type", "application/json")
	r.ContentLength = -1 // unknown length: the body is sent chunked
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("streamed 6000-byte body: %d, want 413", resp.StatusCode)
	}

	for _, m := range []string{"GET", "PUT", "DELETE"} {
		r := h.do(request{method: m, path: "/knock", client: c})
		expectError(t, r, 405, "Method not allowed.")
		if r.header.Get("Allow") != "POST, OPTIONS" {
			t.Fatalf("%s /knock: Allow %q", m, r.header.Get("Allow"))
		}
	}
}

func TestKnockCORS(t *testing.T) {
	h := startCaddy(t, "", `
	knock {
		cors_origin https://knock.example.com
	}`)
	r := h.do(request{method: "OPTIONS", path: "/knock", headers: map[string]string{"Origin": "https://evil.example"}})
	expectStatus(t, r, 204, "preflight")
	for k, v := range map[string]string{
		"Access-Control-Allow-Origin":  "https://knock.example.com",
		"Access-Control-Allow-Methods": "POST, OPTIONS",
		"Access-Control-Allow-Headers": "X-Api-Key, Content-Type",
	} {
		if got := r.header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	if r.body != "" {
		t.Errorf("preflight body %q", r.body)
	}
	if got := h.knock("203.0.113.40", "bad", "").header.Get("Access-Control-Allow-Origin"); got != "https://knock.example.com" {
		t.Errorf("error ACAO %q", got)
	}
	if got := h.do(request{path: "/verify", client: "203.0.113.40"}).header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("/verify carries CORS: %q", got)
	}
}

func TestKnockRateLimits(t *testing.T) {
	h := startCaddy(t, `rate_limit {
			window 1m
			success 2
			failure 3
		}`, defaultSite)
	const attacker, bystander = "203.0.113.50", "203.0.113.51"

	for i := range 3 {
		expectError(t, h.knock(attacker, fmt.Sprintf("guess-%d", i), ""), 401, "Invalid or missing API key.")
	}
	for _, key := range []string{"guess-4", adminSecret} {
		r := h.knock(attacker, key, "")
		expectError(t, r, 429, "Too many knock attempts.")
		if ra := r.header.Get("Retry-After"); ra == "" || ra == "0" {
			t.Fatalf("429 without a useful Retry-After: %q", ra)
		}
	}
	if h.gate(attacker) != 401 {
		t.Fatal("a rate-limited correct key was granted")
	}
	expectStatus(t, h.knock(bystander, adminSecret, ""), 200, "another client")
	expectStatus(t, h.knock(bystander, adminSecret, ""), 200, "second success")
	expectError(t, h.knock(bystander, adminSecret, ""), 429, "Too many knock attempts.")

	advanceClock(t, 61*time.Second)
	expectStatus(t, h.knock(attacker, adminSecret, ""), 200, "after the window")

	// Keyless POSTs (a cross-site text/plain form needs no preflight) prove
	// nothing about guessing and use up nothing: the owner's key still works.
	const owner = "203.0.113.52"
	for range 30 {
		r := h.do(request{method: http.MethodPost, path: "/knock", client: owner, ctype: "text/plain", body: "x"})
		expectError(t, r, 401, "Invalid or missing API key.")
	}
	expectStatus(t, h.knock(owner, phoneSecret, ""), 200, "the owner's key after 30 keyless POSTs")
	expectError(t, h.do(request{method: http.MethodPost, path: "/knock", client: "garbage"}), 400, "Could not determine client IP.")
}

func TestKnockSuccessLimitIsAtomic(t *testing.T) {
	h := startCaddy(t, `rate_limit {
			success 1
		}`, defaultSite)
	var wg sync.WaitGroup
	statuses := make(chan int, 8)
	for range 8 {
		wg.Go(func() { statuses <- h.knock("203.0.113.60", adminSecret, "").status })
	}
	wg.Wait()
	close(statuses)
	counts := map[int]int{}
	for s := range statuses {
		counts[s]++
	}
	if counts[200] != 1 || counts[429] != 7 {
		t.Fatalf("8 concurrent knocks with success limit 1: %v", counts)
	}
}

func TestVerifyForwardAuth(t *testing.T) {
	h := startCaddy(t, "", defaultSite)
	const client = "203.0.113.70"
	verify := func(peer, xff, host, uri string) int {
		return h.do(request{path: "/verify", peer: peer, client: xff, headers: map[string]string{
			"X-Forwarded-Host": host, "X-Forwarded-Uri": uri,
		}}).status
	}
	for _, tc := range []struct {
		name                 string
		peer, xff, host, uri string
		want                 int
	}{
		{"not whitelisted", trustedPeer, client, "app.example.com", "/", 401},
		{"global exclusion via trusted proxy", trustedPeer, client, "app.example.com", "/public/x", 200},
		{"host exclusion via trusted proxy", trustedPeer, client, "Media.Example.com:443", "/api/status/health", 200},
		{"host exclusion for another host", trustedPeer, client, "app.example.com", "/api/status", 401},
		{"host exclusion with userinfo trick", trustedPeer, client, "evil@media.example.com", "/api/status", 401},
		{"exclusion escaped with dot segments", trustedPeer, client, "", "/public/../admin", 401},
		{"exclusion escaped with overlong dots", trustedPeer, client, "", "/public/%c0%ae%c0%ae/admin", 401},
		{"exclusion escaped with fullwidth dots", trustedPeer, client, "", "/public/%ef%bc%8e%ef%bc%8e/admin", 401},
		{"exclusion with malformed chain still admits", trustedPeer, "garbage", "", "/public", 200},
		{"malformed chain", trustedPeer, "garbage", "", "/", 401},
		{"untrusted peer: forwarded URI ignored", untrustedIP4, client, "media.example.com", "/public", 401},
		{"untrusted peer: forwarded host ignored", untrustedIP4, client, "media.example.com", "/api/status", 401},
	} {
		if got := verify(tc.peer, tc.xff, tc.host, tc.uri); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	expectStatus(t, h.knock(client, phoneSecret, ""), 200, "knock")
	if got := verify(trustedPeer, client, "app.example.com", "/"); got != 200 {
		t.Fatalf("whitelisted client: %d", got)
	}
	if got := verify(trustedPeer, "203.0.113.71", "", "/"); got != 401 {
		t.Fatalf("other client: %d", got)
	}
	r := h.do(request{path: "/verify", client: client})
	if r.body != "" {
		t.Fatalf("/verify body %q, want empty", r.body)
	}
	expectStatus(t, h.do(request{method: "POST", path: "/verify"}), 405, "POST /verify")
}

func TestVerifyAlwaysAllow(t *testing.T) {
	h := startCaddy(t, "", `
	knock {
		always_allow 192.0.2.0/24 2001:db8:ffff::/48
	}
	knocker {
		always_allow 192.0.2.0/24
	}
	respond "ok"`)
	for xff, want := range map[string]int{"192.0.2.9": 200, "2001:db8:ffff::1": 200, "192.0.3.1": 401} {
		if got := h.do(request{path: "/verify", client: xff}).status; got != want {
			t.Errorf("/verify for %s: %d, want %d", xff, got, want)
		}
	}
	if h.gate("192.0.2.9") != 200 || h.gate("192.0.3.1") != 401 {
		t.Error("gate always_allow")
	}
}

func TestGateDenyStatusAndHandleErrors(t *testing.T) {
	h := startCaddy(t, "", `
	knocker {
		deny_status 403
	}
	respond "ok"
	handle_errors {
		respond "Knock first ({err.status_code})"
	}`)
	r := h.do(request{path: "/", client: "203.0.113.80"})
	if r.status != 403 || r.body != "Knock first (403)" {
		t.Fatalf("denied request: %d %q, want 403 rendered by handle_errors", r.status, r.body)
	}
}

// A subroute's own errors routes render the gate's denial too (JSON config:
// the Caddyfile has no such block), and without error routes the gate
// answers the status alone, as Caddy would.
func TestGateDenyReachesSubrouteErrors(t *testing.T) {
	dir := t.TempDir()
	setKeyEnv(t)
	t.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	cfg := config(t, dir, "", "route /sub* {\n\t\tknocker\n\t\trespond \"ok\"\n\t}\n\troute /other* {\n\t\tknocker\n\t\trespond \"other\"\n\t}")
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	if err != nil {
		t.Fatal(err)
	}
	const sub = `{"match":[{"path":["/sub*"]}],"handle":[{"handler":"subroute","routes":[{"handle":[{"handler":"knocker"`
	if !strings.Contains(string(adapted), sub) {
		t.Fatalf("the adapted config has no subroute starting with the gate:\n%s", adapted)
	}
	withErrors := strings.Replace(string(adapted), sub, `{"match":[{"path":["/sub*"]}],"handle":[{"handler":"subroute","errors":{"routes":[{"handle":[{"handler":"static_response","status_code":"{http.error.status_code}","body":"subroute error page {http.error.status_code}"}]}]},"routes":[{"handle":[{"handler":"knocker"`, 1)
	testcaddy.Load(t, withErrors, "json")
	if r := doRequest(t, request{path: "/sub", client: "203.0.113.92"}); r.status != 401 || r.body != "subroute error page 401" {
		t.Errorf("gate in a subroute with errors routes: %d %q, want the subroute's error page", r.status, r.body)
	}
	r := doRequest(t, request{path: "/other", client: "203.0.113.92"})
	if r.status != 401 || r.body != "" || r.header.Get("Content-Length") != "0" {
		t.Errorf("gate without error routes: %d %q (Content-Length %q), want Caddy's bare 401", r.status, r.body, r.header.Get("Content-Length"))
	}
}

func TestExpiry(t *testing.T) {
	h := startCaddy(t, "", defaultSite)
	const client = "203.0.113.90"
	t0 := time.Now().Truncate(time.Second)
	freezeClock(t, t0)
	r := h.knock(client, adminSecret, `{"ttl": 60}`)
	expectStatus(t, r, 200, "knock")
	if got := r.json(t)["expires_at"]; got != float64(t0.Unix()+60) {
		t.Fatalf("expires_at %v, want %d", got, t0.Unix()+60)
	}
	freezeClock(t, t0.Add(59*time.Second))
	if h.gate(client) != 200 {
		t.Fatal("denied a second before expiry")
	}
	freezeClock(t, t0.Add(60*time.Second))
	if h.gate(client) != 401 {
		t.Fatal("admitted at the expiry second (expiry is strict)")
	}
	if got := h.do(request{path: "/verify", client: client}).status; got != 401 {
		t.Fatalf("/verify after expiry: %d", got)
	}
}

func TestMaxEntriesNeverEvictsTheNewGrant(t *testing.T) {
	h := startCaddy(t, "max_entries 2", defaultSite)
	for i, ttl := range []int{600, 300, 60} { // the soonest-expiring is the newest
		expectStatus(t, h.knock(fmt.Sprintf("203.0.113.%d", 100+i), adminSecret, fmt.Sprintf(`{"ttl":%d}`, ttl)), 200, "knock")
	}
	for ip, want := range map[string]int{"203.0.113.100": 200, "203.0.113.101": 401, "203.0.113.102": 200} {
		if got := h.gate(ip); got != want {
			t.Errorf("%s: %d, want %d", ip, got, want)
		}
	}
}

func TestReadyAndHealth(t *testing.T) {
	h := startCaddy(t, "", `knock`)
	for _, p := range []string{"/health", "/ready"} {
		r := h.do(request{path: p})
		if r.status != 200 || r.body != `{"status":"ok"}` {
			t.Fatalf("%s: %d %q", p, r.status, r.body)
		}
	}
	restore := makeReadOnly(t, filepath.Join(h.dir, "state"))
	r := h.do(request{path: "/ready"})
	if r.status != 503 || r.body != `{"status":"unhealthy","error":"Whitelist storage not accessible"}` {
		t.Fatalf("/ready with read-only storage: %d %q", r.status, r.body)
	}
	expectStatus(t, h.do(request{path: "/health"}), 200, "health needs no storage")
	restore()
	expectStatus(t, h.do(request{path: "/ready"}), 200, "/ready once storage is writable again")
}

// makeReadOnly makes dir unwritable by path, and returns the undo. As root,
// where permissions do not bind, it bind-mounts dir read-only over itself
// (files Caddy already holds open stay writable, as on a real remount).
func makeReadOnly(t *testing.T, dir string) (restore func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		restore = func() { os.Chmod(dir, 0o700) }
		t.Cleanup(restore)
		return restore
	}
	for _, args := range [][]string{{"--bind", dir, dir}, {"-o", "remount,bind,ro", dir}} {
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			t.Fatalf("mount %v: %v: %s", args, err, out)
		}
	}
	mounted := true
	restore = func() {
		if mounted {
			mounted = false
			if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v: %s", dir, err, out)
			}
		}
	}
	t.Cleanup(restore)
	return restore
}

func TestGrantsSurviveRestartAndReload(t *testing.T) {
	dir := t.TempDir()
	h := startCaddyIn(t, dir, "", defaultSite)
	expectStatus(t, h.knock("203.0.113.110", adminSecret, ""), 200, "knock")
	expectStatus(t, h.knock("203.0.113.111", adminSecret, `{"ip_address":"198.51.100.0/24"}`), 200, "knock")

	// A reload with a changed config keeps every grant, without duplicates.
	h = startCaddyIn(t, dir, "max_entries 500", defaultSite+"\n\theader X-Reloaded yes")
	if h.gate("203.0.113.110") != 200 || h.gate("198.51.100.9") != 200 {
		t.Fatal("grants lost across caddy reload")
	}
	expectStatus(t, h.knock("203.0.113.110", adminSecret, ""), 200, "re-knock")

	// A config without knocker closes the store: the snapshot must hold both grants once.
	stopKnocker(t)
	var snapshot map[string]int64
	if err := json.Unmarshal([]byte(h.readFile("state/whitelist.json")), &snapshot); err != nil {
		t.Fatalf("snapshot after close: %v", err)
	}
	if len(snapshot) != 2 || snapshot["203.0.113.110"] == 0 || snapshot["198.51.100.0/24"] == 0 {
		t.Fatalf("snapshot after close: %v", snapshot)
	}

	// A restart reads it back.
	h = startCaddyIn(t, dir, "", defaultSite)
	if h.gate("203.0.113.110") != 200 || h.gate("198.51.100.9") != 200 || h.gate("203.0.113.112") != 401 {
		t.Fatal("grants lost across restart")
	}
}

// A reload that Caddy refuses (here: a site on a port in use) changes
// nothing shared: the running config's max_entries and cleanup_interval
// stay. Apps start in random order, so the failing reload is tried several
// times; before the fix most tries left max_entries 3 on the store.
func TestFailedReloadChangesNothing(t *testing.T) {
	dir := t.TempDir()
	h := startCaddyIn(t, dir, "", defaultSite)
	var knocked []string
	knockOne := func() {
		ip := fmt.Sprintf("198.51.100.%d", len(knocked)+1)
		expectStatus(t, h.knock("203.0.113.120", adminSecret, `{"ip_address":"`+ip+`"}`), 200, "knock "+ip)
		knocked = append(knocked, ip)
	}
	for range 10 {
		knockOne()
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0") // no SO_REUSEPORT: Caddy cannot share it
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	bad := config(t, dir, "max_entries 3\n\t\tcleanup_interval 1s", defaultSite,
		fmt.Sprintf("http://%s {\n\trespond ok\n}", busy.Addr()))
	for range 8 {
		testcaddy.AssertLoadError(t, bad, "caddyfile", "address already in use")
		knockOne()
	}
	for _, ip := range knocked {
		if got := h.gate(ip); got != 200 {
			t.Errorf("%s after failed reloads: %d, want 200 (evicted by the refused config's max_entries 3)", ip, got)
		}
	}
	path := store.ResolvePath(filepath.Join(dir, "state", "whitelist.json"))
	found := false
	stores.Range(func(k, v any) bool {
		if k == path {
			found = true
			if got := v.(pooledStore).CleanupInterval(); got != defaultCleanupInterval {
				t.Errorf("sweep interval after failed reloads: %v, want the running config's %v", got, defaultCleanupInterval)
			}
		}
		return true
	})
	if !found {
		t.Fatalf("no open store for %s, so its sweep interval could not be checked", path)
	}
	stopKnocker(t)
	var snapshot map[string]int64
	if err := json.Unmarshal([]byte(h.readFile("state/whitelist.json")), &snapshot); err != nil {
		t.Fatal(err)
	}
	if len(snapshot) != len(knocked) {
		t.Fatalf("whitelist holds %d entries, want %d", len(snapshot), len(knocked))
	}
}

// A reload that names the same whitelist through a symlink shares the
// open store (the pool is keyed by the resolved path), instead of failing
// on the file's lock.
func TestReloadToASymlinkedWhitelist(t *testing.T) {
	dir := t.TempDir()
	h := startCaddyIn(t, dir, "", defaultSite)
	expectStatus(t, h.knock("203.0.113.150", phoneSecret, ""), 200, "knock")
	link := filepath.Join(t.TempDir(), "state-link")
	if err := os.Symlink(filepath.Join(dir, "state"), link); err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(config(t, dir, "", defaultSite), "whitelist_file "+dir+"/state/", "whitelist_file "+link+"/", 1)
	if !strings.Contains(cfg, link) {
		t.Fatal("the test config names no whitelist_file to replace")
	}
	startWith(t, cfg)
	if got := h.gate("203.0.113.150"); got != 200 {
		t.Fatalf("grant after the reload to the symlinked path: %d, want 200", got)
	}
	expectStatus(t, h.knock("203.0.113.151", phoneSecret, ""), 200, "knock after the reload")
}

// A whitelist under a symlinked directory that does not exist yet (the
// first start creates it) keeps its pool key across reloads.
func TestReloadUnderASymlinkedDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(t.TempDir(), dir); err != nil {
		t.Fatal(err)
	}
	h := startCaddyIn(t, dir, "", defaultSite) // creates dir/state
	expectStatus(t, h.knock("203.0.113.152", phoneSecret, ""), 200, "knock")
	h = startCaddyIn(t, dir, "max_entries 5000", defaultSite)
	if got := h.gate("203.0.113.152"); got != 200 {
		t.Fatalf("grant after the reload: %d, want 200", got)
	}
}

func TestSecretsNeverLogged(t *testing.T) {
	h := startCaddy(t, "", defaultSite+`
	handle_errors {
		respond "{err.status_code}"
	}`)
	h.knock("203.0.113.120", adminSecret, "")
	h.knock("203.0.113.120", guestSecret, `{"ip_address":"1.2.3.4"}`)
	h.knock("203.0.113.120", phoneSecret, `{not json`)
	// Mistyped knock URLs in a gated site: answered by knock, not the gate.
	for _, p := range []string{"/knock/x", "/knock//x/", "/knock/status/x"} {
		r := h.do(request{method: "POST", path: p, client: "203.0.113.120", key: adminSecret})
		expectError(t, r, 404, "Not found.")
	}
	h.do(request{path: "/private", client: "203.0.113.121"})
	h.do(request{path: "/verify", client: "203.0.113.121", key: adminSecret})
	time.Sleep(200 * time.Millisecond) // let the file writers flush

	// caddy.log has no filter: knock errors never reach Caddy's error log.
	// access.log uses the filter docs/configuration.md ("Logging") prescribes for access logs.
	logs := h.readFile("caddy.log") + h.readFile("access.log")
	if !strings.Contains(logs, "knock granted") || !strings.Contains(logs, `"status":403`) || !strings.Contains(logs, `"uri":"/verify"`) {
		t.Fatalf("the logs do not show the knocks; the search below would prove nothing:\n%s", logs)
	}
	for _, secret := range []string{adminSecret, guestSecret, phoneSecret} {
		if strings.Contains(logs, secret) {
			t.Fatalf("a secret appears in the debug logs")
		}
	}
}

func TestLaxTrustedProxiesWarning(t *testing.T) {
	dir := t.TempDir()
	cfg := strings.Replace(config(t, dir, "", defaultSite), "\t\ttrusted_proxies_strict\n", "", 1)
	setKeyEnv(t)
	testcaddy.Load(t, cfg, "caddyfile")
	for range 3 { // several proxied requests, one warning
		doRequest(t, request{path: "/private", client: "203.0.113.130"})
	}
	time.Sleep(100 * time.Millisecond)
	logs, err := os.ReadFile(filepath.Join(dir, "caddy.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(logs, []byte("without trusted_proxies_strict")); n != 1 {
		t.Fatalf("want exactly one lax trusted_proxies warning for the server, got %d", n)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	setKeyEnv(t)
	dir := t.TempDir()
	for _, tc := range []struct{ extra, site, want string }{
		{"", "knocker {\n\t\tbogus 1\n\t}", "unrecognized knocker option"},
		{"", "knocker {\n\t\texclude /\n\t}", "would exclude every path"},
		{"", "knock {\n\t\texclude_host a.example \"\"\n\t}", "would exclude every path"},
		{"", "knocker {\n\t\tdeny_status 200\n\t}", "deny_status"},
		{"", "knocker {\n\t\talways_allow 10.0.0.0/33\n\t}", "always_allow"},
		{"max_entries 0", "knocker", "max_entries"},
		{"cleanup_interval soon", "knocker", "cleanup_interval"},
		{"rate_limit {\n\t\t\tfailure -1\n\t\t}", "knocker", "failure"},
		{"key dup {env.KNOCKER_TEST_ADMIN} {\n\t\t\tmax_ttl 1h\n\t\t}", "knocker", "same secret as key"},
		{"key weak CHANGE_ME_PLEASE_0123456789 {\n\t\t\tmax_ttl 1h\n\t\t}", "knocker", "placeholder"},
		{"key nottl another-secret-0123456789", "knocker", "max_ttl is required"},
		{"key many another-secret-0123456789 {\n\t\t\tmax_ttl 1h\n\t\t\tmax_grants many\n\t\t}", "knocker", "max_grants"},
		{"key unset {env.KNOCKER_TEST_NOT_SET} {\n\t\t\tmax_ttl 1h\n\t\t}", "knocker", "is empty (is the environment variable"},
	} {
		testcaddy.AssertLoadError(t, config(t, dir, tc.extra, tc.site), "caddyfile", tc.want)
	}
}

// A {file.*} secret with stray whitespace could never be presented (HTTP
// trims header values): Caddy refuses the config and names the key. The
// one trailing newline an editor writes is fine: Caddy drops it.
func TestFileSecretWhitespace(t *testing.T) {
	setKeyEnv(t)
	dir := t.TempDir()
	secretFile := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	keyFrom := func(path string) string {
		return "key fromfile {file." + path + "} {\n\t\t\tmax_ttl 1h\n\t\t}"
	}
	for name, content := range map[string]string{
		"leading-space":     " file-secret-0123456789abcdef\n",
		"trailing-space":    "file-secret-0123456789abcdef \n",
		"two-newlines":      "file-secret-0123456789abcdef\n\n",
		"crlf-and-newline":  "file-secret-0123456789abcdef\r\n\n",
		"inner-control-tab": "file-secret-0123\t456789abcdef\n",
	} {
		want := `key "fromfile": secret has leading or trailing whitespace`
		if name == "inner-control-tab" {
			want = `key "fromfile": secret contains a control character`
		}
		testcaddy.AssertLoadError(t, config(t, dir, keyFrom(secretFile(name, content)), defaultSite), "caddyfile", want)
	}
	h := startCaddyIn(t, dir, keyFrom(secretFile("one-newline", "file-secret-0123456789abcdef\n")), defaultSite)
	expectStatus(t, h.knock("203.0.113.140", "file-secret-0123456789abcdef", ""), 200, "knock with the file's secret")
}

func TestKnockStatus(t *testing.T) {
	h := startCaddy(t, "", defaultSite)
	const client = "203.0.113.140"
	status := func(xff string) map[string]any {
		t.Helper()
		r := h.do(request{path: "/knock/status", client: xff})
		expectStatus(t, r, 200, "status")
		if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("status headers: %v", r.header)
		}
		return r.json(t)
	}
	m := status(client)
	if m["ip"] != client || m["whitelisted"] != false || m["entry"] != nil || m["expires_at"] != nil || m["expires_in_seconds"] != nil {
		t.Fatalf("before knocking: %v", m)
	}
	cidr := h.knock("203.0.113.1", adminSecret, `{"ip_address":"203.0.113.0/24","ttl":600}`)
	expectStatus(t, cidr, 200, "CIDR grant")
	expectStatus(t, h.knock(client, adminSecret, `{"ttl":120}`), 200, "own grant")
	m = status(client)
	// The expiry is compared with the grant's own, not with now+600: on a
	// busy machine a second may pass between the knock and the status.
	left, _ := m["expires_in_seconds"].(float64)
	if m["whitelisted"] != true || m["entry"] != "203.0.113.0/24" || m["expires_at"] != cidr.json(t)["expires_at"] || left <= 0 || left > 600 {
		t.Fatalf("covered by a CIDR and an exact grant: %v, want the latest-expiring (the CIDR, %v)", m, cidr.body)
	}
	if got := status("::ffff:" + client)["ip"]; got != client {
		t.Fatalf("mapped caller reported as %v", got)
	}
	bad := h.do(request{path: "/knock/status", client: "garbage"})
	if bad.status != 400 || bad.json(t)["error"] != "Could not determine client IP." || bad.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("status for an unresolvable client: %d %q %v", bad.status, bad.body, bad.header)
	}
	expectStatus(t, h.do(request{method: "POST", path: "/knock/status"}), 405, "POST /knock/status")
}

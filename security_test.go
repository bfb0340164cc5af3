package knocker

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-knocker/knocker/internal/limiter"
	"github.com/caddy-knocker/knocker/internal/testutil"
)

// rawStatus sends a request line exactly as given (Go's client would clean
// the path) and returns the status code.
func rawStatus(t *testing.T, path string, headers ...string) int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", httpPort), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET " + path + " HTTP/1.1\r\nHost: knock.test\r\nConnection: close\r\n"
	for _, h := range headers {
		req += h + "\r\n"
	}
	if _, err := conn.Write([]byte(req + "\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %q: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestSpoofingMatrix: forged client addresses, forwarded hosts and URIs,
// mapped addresses and path tricks, each with the decision it must get.
func TestSpoofingMatrix(t *testing.T) {
	h := startCaddy(t, "", defaultSite)
	const whitelisted, stranger = "203.0.113.50", "198.51.100.1"
	expectStatus(t, h.knock(whitelisted, adminSecret, ""), 200, "knock")

	type tc struct {
		name      string
		peer, xff string
		headers   map[string]string
		path      string
		want      int
	}
	cases := []tc{
		{"untrusted peer forging a whitelisted XFF", untrustedIP4, whitelisted, nil, "/private", 401},
		{"untrusted IPv6 peer forging a whitelisted XFF", "::1", whitelisted, nil, "/private", 401},
		{"untrusted peer forging X-Forwarded-Uri to an exclusion", untrustedIP4, "", map[string]string{"X-Forwarded-Uri": "/public"}, "/verify", 401},
		{"untrusted peer forging X-Forwarded-Host for a host exclusion", untrustedIP4, "", map[string]string{"X-Forwarded-Host": "media.example.com", "X-Forwarded-Uri": "/api/status"}, "/verify", 401},
		{"trusted proxy, whitelisted client", trustedPeer, whitelisted, nil, "/private", 200},
		{"strict: forged left-most entry is ignored", trustedPeer, whitelisted + ", " + stranger, nil, "/private", 401},
		{"strict: the appended real client counts", trustedPeer, stranger + ", " + whitelisted, nil, "/private", 200},
		{"mapped whitelisted client", trustedPeer, "::ffff:" + whitelisted, nil, "/private", 200},
		{"mapped proxy address", trustedPeer, "::ffff:127.0.0.1", nil, "/private", 401},
		{"proxy address only", trustedPeer, "127.0.0.1", nil, "/private", 401},
		{"no XFF from the proxy", trustedPeer, "", nil, "/private", 401},
		{"bracketed IPv6 in XFF is not an address", trustedPeer, "[2001:db8::1]", nil, "/private", 401},
		{"garbage XFF", trustedPeer, "unknown", nil, "/private", 401},
		{"/verify, whitelisted via trusted proxy", trustedPeer, whitelisted, nil, "/verify", 200},
		{"/verify, excluded URI via trusted proxy", trustedPeer, stranger, map[string]string{"X-Forwarded-Uri": "/public/a"}, "/verify", 200},
		{"/verify, excluded URI escaped with ..;", trustedPeer, stranger, map[string]string{"X-Forwarded-Uri": "/public/..;/admin"}, "/verify", 401},
		{"/verify, host exclusion with userinfo", trustedPeer, stranger, map[string]string{"X-Forwarded-Host": "x@media.example.com", "X-Forwarded-Uri": "/api/status"}, "/verify", 401},
	}
	for _, c := range cases {
		if got := h.do(request{path: c.path, peer: c.peer, client: c.xff, headers: c.headers}).status; got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}

	// Path tricks against the gate's exclusion of /public, sent raw.
	paths := map[string]int{
		"/public":                 200,
		"/public/x":               200,
		"//public//x":             200,
		"/publicx":                401,
		"/public/../private":      401,
		"/public/..;/private":     401,
		"/public/..;x=1/private":  401,
		"/public/%2e%2e/private":  401,
		"/public/%2E%2E;/private": 401,
		"/public%2F..%2Fprivate":  401,
		"/public%252F..%252F":     401,
		"/public\\..\\private":    401,
		"/public/%5c..%5cprivate": 401,
		"/public/%00/../private":  401,
		"/PUBLIC":                 401,
		"/public;jsessionid=1":    401,
	}
	for path, want := range paths {
		if got := rawStatus(t, path, "X-Forwarded-For: "+stranger); got != want {
			t.Errorf("gate %q: %d, want %d", path, got, want)
		}
	}

	// Too-broad and mapped grants from an admin key.
	for body, msg := range map[string]string{
		`{"ip_address":"::ffff:0:0/96"}`:      "IPv4-mapped",
		`{"ip_address":"::ffff:1.2.3.4"}`:     "IPv4-mapped",
		`{"ip_address":"0.0.0.0/0"}`:          "too broad",
		`{"ip_address":"10.0.0.0/15"}`:        "too broad",
		`{"ip_address":"::/0"}`:               "too broad",
		`{"ip_address":"2001:db8::/63"}`:      "too broad",
		`{"ip_address":"fe80::1%eth0"}`:       "zone-scoped",
		`{"ip_address":"10.0.0.0/255.0.0.0"}`: "netmask",
	} {
		expectError(t, h.knock(stranger, adminSecret, body), 400, msg)
	}
	if h.gate("8.8.8.8") != 401 {
		t.Fatal("a refused broad grant admitted 8.8.8.8")
	}
	t.Logf("figure: %d header cases, %d raw paths, 8 grant bodies decided as specified", len(cases), len(paths))
}

// TestSpoofingLaxTrustedProxies documents the risk the warning names: without
// trusted_proxies_strict Caddy takes the left-most address, which a client
// behind an appending proxy writes itself.
func TestSpoofingLaxTrustedProxies(t *testing.T) {
	dir := t.TempDir()
	setKeyEnv(t)
	cfg := strings.Replace(config(t, dir, "", defaultSite), "\t\ttrusted_proxies_strict\n", "", 1)
	startWith(t, cfg)
	expectStatus(t, doRequest(t, request{method: "POST", path: "/knock", client: "203.0.113.51", key: adminSecret}), 200, "knock")
	if got := doRequest(t, request{path: "/private", client: "203.0.113.51, 198.51.100.2"}).status; got != 200 {
		t.Fatalf("lax mode: a forged left-most whitelisted address got %d; the documented risk is that it gets 200", got)
	}
}

// TestBruteForce: 10,000 wrong keys from one address, then the right key.
func TestBruteForce(t *testing.T) {
	h := startCaddy(t, "", defaultSite)
	const attacker, bystander, rounds = "203.0.113.66", "203.0.113.67", 10000
	client := &http.Client{Timeout: 10 * time.Second}
	counts := map[int]int{}
	for i := range rounds {
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/knock", httpPort), nil)
		req.Header.Set("X-Api-Key", fmt.Sprintf("guess-%d", i))
		req.Header.Set("X-Forwarded-For", attacker)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		counts[resp.StatusCode]++
	}
	if counts[401] != limiter.Default.PerKind[limiter.Failure] || counts[429] != rounds-limiter.Default.PerKind[limiter.Failure] || len(counts) != 2 {
		t.Fatalf("%d wrong keys: %v, want %d x 401 then 429", rounds, counts, limiter.Default.PerKind[limiter.Failure])
	}
	expectError(t, h.knock(attacker, adminSecret, ""), 429, "Too many knock attempts.")
	if h.gate(attacker) != 401 {
		t.Fatal("the attacker got in")
	}
	expectStatus(t, h.knock(bystander, adminSecret, ""), 200, "another address")
	// Rotating addresses inside one IPv6 /64 does not buy fresh attempts.
	counts = map[int]int{}
	for i := range 2 * limiter.Default.PerKind[limiter.Failure] {
		counts[h.knock(fmt.Sprintf("2001:db8:66::%x", i+1), "nope", "").status]++
	}
	if counts[401] != limiter.Default.PerKind[limiter.Failure] {
		t.Fatalf("rotating within one /64: %v, want %d x 401", counts, limiter.Default.PerKind[limiter.Failure])
	}
	t.Logf("figure: %d wrong-key knocks -> %v; correct key from the attacker 429; %d rotating IPv6 knocks in one /64 -> 401 x %d",
		rounds, map[int]int{401: limiter.Default.PerKind[limiter.Failure], 429: rounds - limiter.Default.PerKind[limiter.Failure]}, 2*limiter.Default.PerKind[limiter.Failure], limiter.Default.PerKind[limiter.Failure])
}

// A hop of the trusted proxy chain in IPv4-mapped form (::ffff:a.b.c.d, as
// an inner proxy on a dual-stack socket writes it) is not matched by
// Caddy's strict walk against the IPv4 ranges, so Caddy resolves it as the
// client. It is a trusted proxy: it must never be whitelisted or admitted,
// for knocks, the gate or /verify.
func TestMappedTrustedProxyHopIsNoClient(t *testing.T) {
	dir := t.TempDir()
	setKeyEnv(t)
	cfg := strings.Replace(config(t, dir, "", defaultSite), "trusted_proxies static 127.0.0.1/32", "trusted_proxies static 127.0.0.1/32 127.0.0.3/32", 1)
	startWith(t, cfg)
	const chain = "1.2.3.4, ::ffff:127.0.0.3"
	expectError(t, doRequest(t, request{method: http.MethodPost, path: "/knock", client: chain, key: phoneSecret}), http.StatusBadRequest, "Could not determine client IP.")

	// Even with a grant for the proxy's address (an admin may make one),
	// a client behind the chain is not admitted as the proxy.
	expectStatus(t, doRequest(t, request{method: http.MethodPost, path: "/knock", client: "203.0.113.90", key: adminSecret,
		ctype: "application/json", body: `{"ip_address":"127.0.0.3"}`}), 200, "admin grant for 127.0.0.3")
	for _, xff := range []string{"6.6.6.6, ::ffff:127.0.0.3", "::ffff:127.0.0.3", "6.6.6.6, 127.0.0.3, ::ffff:127.0.0.3"} {
		if got := doRequest(t, request{path: "/private", client: xff}).status; got != http.StatusUnauthorized {
			t.Errorf("gate, X-Forwarded-For %q: %d, want 401", xff, got)
		}
		if got := doRequest(t, request{path: "/verify", client: xff}).status; got != http.StatusUnauthorized {
			t.Errorf("/verify, X-Forwarded-For %q: %d, want 401", xff, got)
		}
	}

	// The chain in plain IPv4 still resolves to its real client.
	r := doRequest(t, request{method: http.MethodPost, path: "/knock", client: "1.2.3.4, 127.0.0.3", key: phoneSecret})
	expectStatus(t, r, 200, "knock through both proxies")
	if got := r.json(t)["whitelisted_entry"]; got != "1.2.3.4" {
		t.Fatalf("knock through both proxies whitelisted %v, want 1.2.3.4", got)
	}
	if got := doRequest(t, request{path: "/private", client: "1.2.3.4, ::ffff:127.0.0.3"}).status; got != http.StatusUnauthorized {
		t.Fatalf("a mapped proxy hop must not be skipped for the client either: %d", got)
	}
}

// A knocker key sent to a mistyped knock URL goes no further: //knock and
// /knock/ are the knock endpoint; other look-alikes pass on without the key
// (a backend's own X-Api-Key stays), and a denial of such a request logs
// nothing, even at deny_status 503 with DEBUG logging.
func TestMistypedKnockURLsKeepTheKey(t *testing.T) {
	dir := t.TempDir()
	h := startCaddyIn(t, dir, "", `
	knock {
		web off
	}
	knocker {
		deny_status 503
		exclude /public
	}
	handle /broken* {
		error 502
	}
	handle /public/broken* {
		error 502
	}
	respond "key=[{http.request.header.X-Api-Key}]"`)
	for _, path := range []string{"//knock", "/knock/", "///knock//"} {
		r := h.do(request{method: http.MethodPost, path: path, client: "203.0.113.160", key: phoneSecret})
		expectStatus(t, r, 200, "POST "+path)
		if got := r.json(t)["whitelisted_entry"]; got != "203.0.113.160" {
			t.Fatalf("POST %s: %v, want the knock answer", path, r.body)
		}
	}
	lookalikes := []string{"/Knock", "/knock.", "/knock%20", "/knock;x", "/knock.json", "/KNOCK/"}
	for _, path := range lookalikes {
		r := h.do(request{method: http.MethodPost, path: path, client: "203.0.113.160", key: phoneSecret})
		if r.status != 200 || r.body != "key=[]" {
			t.Errorf("whitelisted POST %s: %d %q, want the backend without the key", path, r.status, r.body)
		}
		r = h.do(request{method: http.MethodPost, path: path, client: "203.0.113.161", key: phoneSecret})
		if r.status != 503 {
			t.Errorf("denied POST %s: %d, want 503", path, r.status)
		}
	}
	// A handler after the gate fails (a backend down): Caddy would log that
	// error with the headers as they arrived, so it is answered without it.
	for _, tc := range []struct{ path, client string }{
		{"/broken.json", "203.0.113.160"},   // whitelisted, mistyped URL
		{"/public/broken", "203.0.113.161"}, // excluded path, not whitelisted
		{"/public/broken", "garbage, x"},    // excluded path, no client IP
	} {
		r := h.do(request{method: http.MethodPost, path: tc.path, client: tc.client, key: phoneSecret})
		if r.status != 502 {
			t.Errorf("POST %s as %s with the key, failing backend: %d, want 502", tc.path, tc.client, r.status)
		}
	}
	sonarr := map[string]string{"X-Api-Key": "sonarr-own-key-0123456789"}
	r := h.do(request{path: "/api/v3/series", client: "203.0.113.160", headers: sonarr})
	if r.body != "key=[sonarr-own-key-0123456789]" {
		t.Errorf("a backend's own X-Api-Key: %q, want it passed on", r.body)
	}
	expectStatus(t, h.do(request{path: "/api/v3/series", client: "203.0.113.161", headers: sonarr}), 503, "denied, backend key")
	// A later handler's error without a knocker key is Caddy's to log, with
	// the request headers: the proof that the log would show a key.
	expectStatus(t, h.do(request{path: "/broken", client: "203.0.113.160", headers: sonarr}), 502, "failing backend, backend key")
	stopKnocker(t)
	logs := h.readFile("caddy.log")
	if strings.Contains(logs, phoneSecret) {
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, phoneSecret) {
				t.Fatalf("the knocker key reached Caddy's log:\n%.600s", line)
			}
		}
	}
	if !strings.Contains(logs, "sonarr-own-key") {
		t.Fatal("Caddy's log shows no request headers even for a handler error, so this test proves nothing")
	}
}

// Behind a proxy on a unix socket (trusted_proxies_unix), the client is the
// one its X-Forwarded-For names; with no usable header there is none.
func TestTrustedProxiesUnix(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "caddy.sock")
	site := fmt.Sprintf("http://unix.test {\n\tbind unix/%s\n%s\n}", sock, defaultSite)
	cfg := strings.Replace(config(t, dir, "", defaultSite, site), "\t\ttrusted_proxies_strict\n", "\t\ttrusted_proxies_strict\n\t\ttrusted_proxies_unix\n", 1)
	setKeyEnv(t)
	startWith(t, cfg)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	do := func(method, path, xff, key string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://unix.test"+path, nil)
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		if key != "" {
			req.Header.Set("X-Api-Key", key)
		}
		resp := testutil.MustDo(t, client, req)
		return resp.Status, resp.Body
	}
	if code, body := do(http.MethodPost, "/knock", "203.0.113.170", phoneSecret); code != 200 || !strings.Contains(body, `"whitelisted_entry":"203.0.113.170"`) {
		t.Fatalf("knock over the unix socket: %d %s", code, body)
	}
	if code, body := do(http.MethodPost, "/knock", "", phoneSecret); code != 400 || !strings.Contains(body, "Could not determine client IP.") {
		t.Fatalf("knock over the unix socket without X-Forwarded-For: %d %s", code, body)
	}
	if code, _ := do(http.MethodGet, "/private", "203.0.113.170", ""); code != 200 {
		t.Fatalf("knocked client over the unix socket: %d", code)
	}
	for _, xff := range []string{"203.0.113.171", "", "garbage", "203.0.113.171, 127.0.0.1"} {
		if code, _ := do(http.MethodGet, "/private", xff, ""); code != 401 {
			t.Errorf("gate over the unix socket, X-Forwarded-For %q: %d, want 401", xff, code)
		}
	}
	if code, _ := do(http.MethodGet, "/private", "203.0.113.170, 127.0.0.1", ""); code != 200 {
		t.Errorf("strict walk over the unix socket skips the trusted 127.0.0.1: %d", code)
	}
}

// Look-alike dot segments never match an exclusion at the gate: a backend
// (IIS, an overlong-UTF-8 decoder) may read them as "..".
func TestGateExclusionLookalikeDots(t *testing.T) {
	h := startCaddy(t, "", defaultSite)
	expectStatus(t, h.do(request{path: "/public/page", client: "203.0.113.180"}), 200, "a plain excluded path")
	for _, p := range []string{"/public/%c0%ae%c0%ae/admin", "/public/%ef%bc%8e%ef%bc%8e/admin", "/public/..%20/admin", "/public/.../admin"} {
		if got := h.do(request{path: p, client: "203.0.113.180"}).status; got != 401 {
			t.Errorf("%s: %d, want 401", p, got)
		}
	}
}

// A low-privilege key cannot evict everyone else: with the whitelist full,
// a knock evicts only its own key's grants (an admin key's, also those of
// keys without allow_remote_whitelist); with nothing it may evict, the knock
// gets 503 and the whitelist is unchanged. max_grants bounds one key.
func TestLowPrivilegeKeyCannotEvictOthers(t *testing.T) {
	const limitedSecret = "limited-secret-4c6e8a0b2d4f6a8c0e1f"
	t.Setenv("KNOCKER_TEST_LIMITED", limitedSecret)
	h := startCaddy(t, "max_entries 10\n\t\tkey limited {env.KNOCKER_TEST_LIMITED} {\n\t\t\tmax_ttl 10m\n\t\t\tmax_grants 3\n\t\t}", defaultSite)
	expectStatus(t, h.knock("203.0.113.170", adminSecret, `{"ttl":60}`), 200, "admin knock") // the soonest-expiring grant
	expectStatus(t, h.knock("203.0.113.171", phoneSecret, `{"ttl":120}`), 200, "phone knock")
	// The guest key knocks from 12 IPv6 networks (the attack, scaled).
	guestIP := func(i int) string { return fmt.Sprintf("2001:db8:77:%x::1", i) }
	for i := range 12 { // expiring in the order of the knocks
		expectStatus(t, h.knock(guestIP(i), guestSecret, fmt.Sprintf(`{"ttl":%d}`, 100+i)), 200, "guest knock "+guestIP(i))
	}
	for ip, want := range map[string]int{"203.0.113.170": 200, "203.0.113.171": 200, guestIP(0): 401, guestIP(3): 401, guestIP(4): 200, guestIP(11): 200} {
		if got := h.gate(ip); got != want {
			t.Errorf("%s after the guest flood: %d, want %d", ip, got, want)
		}
	}
	// Nothing the limited key may evict: 503, nothing changes.
	expectError(t, h.knock("203.0.113.172", limitedSecret, ""), 503, "Whitelist is full.")
	if got := h.gate("203.0.113.172"); got != 401 {
		t.Errorf("refused knock's client: %d, want 401", got)
	}
	// The admin key may evict its own and guest's grants, the soonest
	// first: its own 60 s grant, then guest's oldest.
	expectStatus(t, h.knock("203.0.113.173", adminSecret, `{"ttl":600}`), 200, "admin knock into a full whitelist")
	expectStatus(t, h.knock("203.0.113.174", adminSecret, `{"ttl":600}`), 200, "second admin knock into a full whitelist")
	for ip, want := range map[string]int{"203.0.113.170": 401, guestIP(4): 401, guestIP(5): 200, "203.0.113.171": 200, "203.0.113.173": 200, "203.0.113.174": 200} {
		if got := h.gate(ip); got != want {
			t.Errorf("%s after the admin's knocks: %d, want %d", ip, got, want)
		}
	}
	stopKnocker(t)
	logs := h.readFile("caddy.log")
	for _, want := range []string{
		`"msg":"grant evicted to make room","evicted_entry":"2001:db8:77::1","evicted_expires_at":`, // the first guest grant, by the guest key
		`"evicted_key":"guest","entry":"2001:db8:77:a::1","key":"guest"`,
		`"evicted_entry":"203.0.113.170","evicted_expires_at":`,    // the admin key's own
		`"evicted_entry":"2001:db8:77:4::1","evicted_expires_at":`, // guest's, by the admin key:
		`"evicted_key":"guest","entry":"203.0.113.174","key":"admin"`,
		`"msg":"knock refused: the whitelist is full`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("caddy.log lacks %s", want)
		}
	}

	// max_grants: the limited key's fourth grant evicts its own first one.
	h = startCaddy(t, "key limited {env.KNOCKER_TEST_LIMITED} {\n\t\t\tmax_ttl 10m\n\t\t\tmax_grants 3\n\t\t}", defaultSite)
	expectStatus(t, h.knock("203.0.113.180", phoneSecret, ""), 200, "phone knock")
	for i := range 4 {
		expectStatus(t, h.knock(fmt.Sprintf("203.0.113.%d", 181+i), limitedSecret, ""), 200, "limited knock")
	}
	for ip, want := range map[string]int{"203.0.113.180": 200, "203.0.113.181": 401, "203.0.113.182": 200, "203.0.113.184": 200} {
		if got := h.gate(ip); got != want {
			t.Errorf("max_grants 3, %s: %d, want %d", ip, got, want)
		}
	}
}

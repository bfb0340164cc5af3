package knocker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-knocker/knocker/internal/testcaddy"
	"github.com/caddy-knocker/knocker/internal/testports"
	"github.com/caddy-knocker/knocker/internal/testutil"
)

// Secrets of the test keys. They reach Caddy through {env.*} placeholders,
// as a user's would, and the log test searches for them.
const (
	adminSecret = "admin-secret-7f3a9c1e5b2d4f6a8c0e"
	phoneSecret = "phone-secret-1b3d5f7a9c2e4f6b8d0a"
	guestSecret = "guest-secret-9e8d7c6b5a4f3e2d1c0b"
)

// Ports of this test process's Caddy, chosen free in TestMain so that test
// runs in parallel on one machine never share one (see internal/testcaddy).
var httpPort, httpsPort, secondSitePort int

func TestMain(m *testing.M) {
	ports, err := testports.Ports(3)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	httpPort, httpsPort, secondSitePort = ports[0], ports[1], ports[2]
	testcaddy.Watch(httpPort, httpsPort, secondSitePort)
	os.Exit(m.Run())
}

const (
	privateBody  = "You have accessed the private area!"
	trustedPeer  = "127.0.0.1" // in trusted_proxies: its X-Forwarded-For counts
	untrustedIP4 = "127.0.0.2" // another loopback address, not trusted
)

// testKeys are the knocker keys of every test config, with the secrets
// above (setKeyEnv).
var testKeys = []testutil.Key{
	{Name: "admin", Secret: "{env.KNOCKER_TEST_ADMIN}", MaxTTL: "1h", AllowRemoteWhitelist: true},
	{Name: "phone", Secret: "{env.KNOCKER_TEST_PHONE}", MaxTTL: "4h"},
	{Name: "guest", Secret: "{env.KNOCKER_TEST_GUEST}", MaxTTL: "10m"},
}

// testSites follows the global options of the test Caddyfile (config).
// %[1]s is the state directory, %[2]d the HTTP port, %[3]s the site body,
// %[4]s further site blocks.
const testSites = `http://:%[2]d {
	log {
		output file %[1]s/access.log
		level DEBUG
		format filter {
			request>headers>X-Api-Key delete
		}
	}
	%[3]s
}
%[4]s
`

const defaultSite = `
	knock {
		exclude /public
		exclude_host media.example.com /api/status
	}
	knocker {
		exclude /public
	}
	respond "` + privateBody + `" 200
`

type harness struct {
	t   *testing.T
	dir string
}

// startCaddy loads a config into the in-process Caddy of caddytest. Tests
// using it must not run in parallel: there is one Caddy per test binary.
func startCaddy(t *testing.T, knockerExtra, site string) *harness {
	t.Helper()
	dir := t.TempDir()
	return startCaddyIn(t, dir, knockerExtra, site)
}

func startCaddyIn(t *testing.T, dir, knockerExtra, site string) *harness {
	t.Helper()
	return startCaddyWithSites(t, dir, knockerExtra, site, "")
}

// startCaddyWithSites is startCaddyIn with further site blocks.
func startCaddyWithSites(t *testing.T, dir, knockerExtra, site, sites string) *harness {
	t.Helper()
	setKeyEnv(t)
	t.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	testcaddy.Load(t, config(t, dir, knockerExtra, site, sites), "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	return &harness{t: t, dir: dir}
}

// setKeyEnv provides the test keys' secrets to the {env.*} placeholders.
func setKeyEnv(t *testing.T) {
	t.Setenv("KNOCKER_TEST_ADMIN", adminSecret)
	t.Setenv("KNOCKER_TEST_PHONE", phoneSecret)
	t.Setenv("KNOCKER_TEST_GUEST", guestSecret)
}

// startWith loads a complete Caddyfile.
func startWith(t *testing.T, cfg string) {
	t.Helper()
	testcaddy.Load(t, cfg, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
}

// config is the test Caddyfile: the state in dir, knockerExtra as further
// lines of the knocker global option, site as the body of the site on
// httpPort, then further site blocks.
func config(t *testing.T, dir, knockerExtra, site string, sites ...string) string {
	global := testutil.Preamble{
		Admin:            testcaddy.AdminAddress(t),
		HTTPPort:         httpPort,
		HTTPSPort:        httpsPort,
		SkipInstallTrust: true,
		DefaultBind:      "127.0.0.1 [::1]",
		GracePeriod:      "1s",
		LogFile:          dir + "/caddy.log",
		LogLevel:         "DEBUG",
		TrustedProxies:   "127.0.0.1/32",
		Knocker: &testutil.Knocker{
			WhitelistFile: dir + "/state/whitelist.json",
			Keys:          testKeys,
			Extra:         knockerExtra,
		},
	}
	return global.String() + fmt.Sprintf(testSites, dir, httpPort, site, strings.Join(sites, "\n"))
}

// freezeClock stops knocker's clock at at for the rest of the test (or
// until called again), so that a test can stand exactly a second before
// an expiry however busy the machine is.
func freezeClock(t *testing.T, at time.Time) {
	if clockFrozen.Swap(at.UnixNano()) == 0 {
		t.Cleanup(func() { clockFrozen.Store(0) })
	}
}

// advanceClock moves knocker's clock forward for the rest of the test.
func advanceClock(t *testing.T, d time.Duration) {
	clockOffset.Add(int64(d))
	t.Cleanup(func() { clockOffset.Add(-int64(d)) })
}

// request describes one HTTP request to the test server.
type request struct {
	method  string
	path    string
	peer    string // local address to dial from; default the trusted proxy
	client  string // X-Forwarded-For value; "" = none
	key     string // X-Api-Key; "" = none
	ctype   string
	body    string
	headers map[string]string
}

type response struct {
	status int
	header http.Header
	body   string
}

// json decodes the body into a map, failing the test if it is not JSON.
func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("response %d is not JSON: %q", r.status, r.body)
	}
	return m
}

func (h *harness) do(req request) response {
	h.t.Helper()
	return doRequest(h.t, req)
}

func doRequest(t *testing.T, req request) response {
	t.Helper()
	peer := req.peer
	if peer == "" {
		peer = trustedPeer
	}
	target := fmt.Sprintf("127.0.0.1:%d", httpPort)
	if strings.Contains(peer, ":") {
		target = fmt.Sprintf("[::1]:%d", httpPort)
	}
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(peer)}, Timeout: 5 * time.Second}
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, network, target)
			},
			DisableKeepAlives: true,
		},
		// A redirect (the gate's deny redirect) is an answer to check.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	method := req.method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if req.body != "" {
		body = strings.NewReader(req.body)
	}
	r, err := http.NewRequest(method, "http://knock.test"+req.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if req.client != "" {
		r.Header.Set("X-Forwarded-For", req.client)
	}
	if req.key != "" {
		r.Header.Set("X-Api-Key", req.key)
	}
	if req.ctype != "" {
		r.Header.Set("Content-Type", req.ctype)
	}
	for k, v := range req.headers {
		r.Header.Set(k, v)
	}
	resp := testutil.MustDo(t, client, r)
	return response{status: resp.Status, header: resp.Header, body: resp.Body}
}

// knock POSTs /knock for client with key and an optional JSON body.
func (h *harness) knock(client, key, body string) response {
	h.t.Helper()
	req := request{method: http.MethodPost, path: "/knock", client: client, key: key}
	if body != "" {
		req.ctype, req.body = "application/json", body
	}
	return h.do(req)
}

// expectStatus fails the test unless r has the given status.
func expectStatus(t *testing.T, r response, status int, what string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d (body %q), want %d", what, r.status, r.body, status)
	}
}

// expectError checks a JSON error response of the knock API.
func expectError(t *testing.T, r response, status int, msg string) {
	t.Helper()
	expectStatus(t, r, status, msg)
	m := r.json(t)
	if len(m) != 1 || !strings.Contains(fmt.Sprint(m["error"]), msg) {
		t.Fatalf("error body %q, want {\"error\": ...%q...}", r.body, msg)
	}
	if got := r.header.Get("Access-Control-Allow-Origin"); got == "" {
		t.Fatalf("error response %d has no Access-Control-Allow-Origin", r.status)
	}
}

// gate asks the protected site for client and returns the status.
func (h *harness) gate(client string) int {
	h.t.Helper()
	return h.do(request{path: "/private", client: client}).status
}

func (h *harness) readFile(name string) string {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.dir, name))
	if err != nil {
		h.t.Fatal(err)
	}
	return string(b)
}

package knocker

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-knocker/knocker/internal/testcaddy"
	"github.com/caddy-knocker/knocker/internal/testutil"
)

func TestKnockOutcomeOfEveryStatus(t *testing.T) {
	for status, want := range map[int]string{
		200: "granted",
		401: "invalid_key",
		403: "forbidden",
		429: "rate_limited",
		400: "bad_request", 405: "bad_request", 413: "bad_request", 415: "bad_request", 425: "bad_request",
		500: "error", 503: "error",
	} {
		if got := outcomeNames[outcomeOf(status)]; got != want {
			t.Errorf("status %d: outcome %s, want %s", status, got, want)
		}
	}
}

// The gate's counting must not cost its hot path an allocation.
func TestGateCountsWithoutAllocating(t *testing.T) {
	g := newBenchGate(t)
	g.errorRoutes = false // a denial written, not a Caddy error (which allocates)
	w := httptest.NewRecorder()
	for _, ip := range []string{"203.0.113.7", "203.0.113.8"} { // allowed, denied
		r := gateRequest(ip)
		if allocs := testing.AllocsPerRun(100, func() { _ = g.ServeHTTP(w, r, okHandler) }); allocs != 0 {
			t.Errorf("gate for %s: %.1f allocations per request", ip, allocs)
		}
	}
}

// scrape is one read of the admin endpoint's /metrics: sample lines by
// name and labels as printed, e.g. `caddy_knocker_grants` or
// `caddy_knocker_knocks_total{outcome="granted"}`.
type scrape struct {
	body    string
	samples map[string]float64
}

func scrapeMetrics(t *testing.T) scrape {
	t.Helper()
	status, body := testutil.Get(t, &http.Client{Timeout: 30 * time.Second},
		fmt.Sprintf("http://%s/metrics", testcaddy.AdminAddress(t)))
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %q", status, body)
	}
	s := scrape{body: body, samples: map[string]float64{}}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("/metrics line %q: no value", line)
		}
		s.samples[line[:i]] = v
	}
	return s
}

// value is the sample called name; a missing one fails the test.
func (s scrape) value(t *testing.T, name string) float64 {
	t.Helper()
	v, ok := s.samples[name]
	if !ok {
		t.Fatalf("/metrics has no %s", name)
	}
	return v
}

var ipv4Pattern = regexp.MustCompile(`\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b`)

// TestMetricsOnTheAdminEndpoint scripts knocks of every outcome and gate
// requests of every decision, then reads the admin endpoint's /metrics
// (no metrics option needed) and checks each count, exactly. The counters
// are the process's, so it compares with a scrape taken just before.
func TestMetricsOnTheAdminEndpoint(t *testing.T) {
	h := startCaddy(t, `max_entries 2
		rate_limit {
			failure 1
		}`, `
	knock
	knocker {
		exclude /public
		always_allow 192.0.2.0/24
	}
	respond "ok"`)
	const (
		granted4, granted6 = "203.0.113.210", "2001:db8::210"
		full               = "203.0.113.211" // knocks when the whitelist is full of admin grants
		guesser            = "203.0.113.212"
		remote             = "203.0.113.213"
		sloppy             = "203.0.113.214"
		stranger           = "203.0.113.215"
	)
	before := scrapeMetrics(t)

	expectStatus(t, h.knock(granted4, adminSecret, ""), 200, "admin knock")
	expectStatus(t, h.knock(granted6, adminSecret, ""), 200, "admin knock over IPv6")
	// phone may not evict admin grants: the whitelist is full.
	expectStatus(t, h.knock(full, phoneSecret, ""), 503, "knock into a full whitelist")
	expectStatus(t, h.knock(guesser, "wrong-key", ""), 401, "wrong key")
	expectStatus(t, h.knock(guesser, "", ""), 401, "no key")
	expectStatus(t, h.knock(guesser, "wrong-again", ""), 429, "second guess")
	expectStatus(t, h.knock(remote, phoneSecret, `{"ip_address":"198.51.100.9"}`), 403, "remote knock without allow_remote_whitelist")
	expectStatus(t, h.do(request{method: http.MethodGet, path: "/knock", client: sloppy}), 405, "GET /knock")
	expectStatus(t, h.do(request{method: http.MethodPost, path: "/knock", client: sloppy, key: adminSecret, ctype: "text/plain", body: "x"}), 415, "not JSON")
	expectStatus(t, h.do(request{method: http.MethodOptions, path: "/knock", client: sloppy}), 204, "preflight")

	expectStatus(t, h.do(request{path: "/private", client: granted4}), 200, "granted client")
	expectStatus(t, h.do(request{path: "/private", client: granted6}), 200, "granted client over IPv6")
	expectStatus(t, h.do(request{path: "/private", client: "192.0.2.9"}), 200, "always allowed")
	expectStatus(t, h.do(request{path: "/public/page", client: stranger}), 200, "excluded path")
	expectStatus(t, h.do(request{path: "/private", client: stranger}), 401, "stranger")
	expectStatus(t, h.do(request{path: "/private", client: full}), 401, "refused knocker")

	after := scrapeMetrics(t)
	delta := func(name string) float64 { return after.value(t, name) - before.value(t, name) }
	for outcome, want := range map[string]float64{
		"granted": 2, "invalid_key": 2, "forbidden": 1, "bad_request": 2, "rate_limited": 1, "error": 1,
	} {
		name := fmt.Sprintf(`caddy_knocker_knocks_total{outcome=%q}`, outcome)
		if got := delta(name); got != want {
			t.Errorf("%s rose by %v, want %v", name, got, want)
		}
		hist := fmt.Sprintf(`caddy_knocker_knock_duration_seconds_count{outcome=%q}`, outcome)
		if got := delta(hist); got != want {
			t.Errorf("%s rose by %v, want %v (one per knock)", hist, got, want)
		}
	}
	for decision, want := range map[string]float64{"allowed": 2, "denied": 2, "excluded": 1, "always_allowed": 1} {
		name := fmt.Sprintf(`caddy_knocker_gate_requests_total{decision=%q}`, decision)
		if got := delta(name); got != want {
			t.Errorf("%s rose by %v, want %v", name, got, want)
		}
	}
	if got := after.value(t, "caddy_knocker_grants"); got != 2 {
		t.Errorf("caddy_knocker_grants %v, want 2", got)
	}
	// Each grant returned after its own journal fsync (the knocks were
	// one at a time); sweeps may add more.
	if got := delta("caddy_knocker_store_fsync_duration_seconds_count"); got < 2 {
		t.Errorf("store fsyncs observed: %v, want at least 2", got)
	}

	// No address and no secret, anywhere in the scrape.
	for _, line := range strings.Split(after.body, "\n") {
		if ip := ipv4Pattern.FindString(line); ip != "" || strings.Contains(line, "2001:db8") || strings.Contains(line, "::1") {
			t.Errorf("/metrics line carries an address: %q", line)
		}
		for _, secret := range []string{adminSecret, phoneSecret, guestSecret, "wrong-key"} {
			if strings.Contains(line, secret) {
				t.Errorf("/metrics line carries a key: %q", line)
			}
		}
	}
}

// TestMetricsSurviveReload: a reload registers the same collectors on the
// new config's registry (no error, no second series), counting on from
// where they were; the grants gauge reads the store the new config holds.
func TestMetricsSurviveReload(t *testing.T) {
	dir := t.TempDir()
	const client = "203.0.113.216"
	h := startCaddyIn(t, dir, "", defaultSite)
	expectStatus(t, h.knock(client, adminSecret, ""), 200, "knock")
	first := scrapeMetrics(t)

	h = startCaddyIn(t, dir, "", defaultSite+"\n\theader X-Reloaded yes")
	second := scrapeMetrics(t)
	const granted = `caddy_knocker_knocks_total{outcome="granted"}`
	if a, b := first.value(t, granted), second.value(t, granted); b != a {
		t.Errorf("%s %v before the reload, %v after: want it kept", granted, a, b)
	}
	if got := second.value(t, "caddy_knocker_grants"); got != 1 {
		t.Errorf("caddy_knocker_grants %v after the reload, want 1", got)
	}
	if n := strings.Count(second.body, "\n# TYPE caddy_knocker_knocks_total "); n != 1 {
		t.Errorf("caddy_knocker_knocks_total described %d times after the reload", n)
	}
	expectStatus(t, h.knock(client, adminSecret, ""), 200, "knock after the reload")
	if got := scrapeMetrics(t).value(t, granted); got != first.value(t, granted)+1 {
		t.Errorf("%s %v after one more knock, want %v", granted, got, first.value(t, granted)+1)
	}
}

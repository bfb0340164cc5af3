package firewalld_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/caddy-knocker/knocker"
	"github.com/caddy-knocker/knocker/firewalld"
	"github.com/caddy-knocker/knocker/internal/testcaddy"
	"github.com/caddy-knocker/knocker/internal/testports"
	"github.com/caddy-knocker/knocker/internal/testutil"
)

// httpPort is the knock site's port in this test process's Caddy, chosen
// free once per process (see internal/testcaddy).
var httpPort = sync.OnceValue(func() int {
	port, err := testports.Port()
	if err != nil {
		panic(err)
	}
	testcaddy.Watch(port)
	return port
})

const (
	adminKey = "firewalld-test-admin-0123456789abcdef"
	listen   = 2222 // the monitored port, listened on in the firewall namespace
	clientA  = "203.0.113.5"
	clientB  = "203.0.113.6"
)

func loadCaddy(t *testing.T, dir, firewalldBlock string) {
	t.Helper()
	t.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	global := testutil.Preamble{
		Admin:       testcaddy.AdminAddress(t),
		HTTPPort:    httpPort(),
		DefaultBind: "127.0.0.1",
		Knocker: &testutil.Knocker{
			WhitelistFile: dir + "/whitelist.json",
			Keys:          []testutil.Key{{Name: "admin", Secret: adminKey, MaxTTL: "1h", AllowRemoteWhitelist: true}},
			Extra:         firewalldBlock,
		},
	}
	cfg := global.String() + fmt.Sprintf("http://:%d {\n\tknock\n}\n", httpPort())
	testcaddy.Load(t, cfg, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
}

// stopCaddyApps loads a config without knocker: the firewalld backend stops
// (leaving its rules, as designed) so it cannot react to later tests.
func stopCaddyApps(t *testing.T) {
	testcaddy.Load(t, testutil.Preamble{Admin: testcaddy.AdminAddress(t)}.String(), "caddyfile")
}

func call(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", httpPort(), path), strings.NewReader(body))
	req.Header.Set("X-Api-Key", adminKey)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp := testutil.MustDo(t, http.DefaultClient, req)
	var m map[string]any
	_ = json.Unmarshal([]byte(resp.Body), &m)
	return resp.Status, m
}

// TestKnockOverHTTPOpensThePort runs the whole path: Caddy with the plugin,
// a knock over HTTP, firewalld's rules, and real TCP from the client
// namespace to a monitored port, then expiry, tampering and a caddy reload.
func TestKnockOverHTTPOpensThePort(t *testing.T) {
	firewalld.NeedSandbox(t)
	firewalld.UseZones(t, "public")
	firewalld.StartListener(t, listen)
	dir := t.TempDir()
	block := fmt.Sprintf("firewalld {\n\t\t\tzone public\n\t\t\tport %d/tcp\n\t\t}", listen)
	loadCaddy(t, dir, block)
	t.Cleanup(func() { stopCaddyApps(t) })

	if status, body := call(t, "GET", "/ready", ""); status != 200 {
		t.Fatalf("/ready with protection in place: %d %v", status, body)
	}
	firewalld.ExpectReach(t, clientA, listen, false)

	// An admin knock for clientA opens the port for clientA only.
	status, body := call(t, "POST", "/knock", `{"ip_address":"`+clientA+`","ttl":10}`) // room for a busy machine before it expires
	if status != 200 || body["whitelisted_entry"] != clientA {
		t.Fatalf("knock: %d %v", status, body)
	}
	accept := fmt.Sprintf(`rule priority="-27002" family="ipv4" source address="%s" port port="%d" protocol="tcp" accept`, clientA, listen)
	if rules := firewalld.RichRules(t, "public", false); !slices.Contains(rules, accept) {
		t.Fatalf("runtime rules after the knock answered 200:\n%s", strings.Join(rules, "\n"))
	}
	firewalld.ExpectReach(t, clientA, listen, true)
	firewalld.ExpectReach(t, clientB, listen, false)
	// ...and it closes again when the grant expires.
	firewalld.ExpectReach(t, clientA, listen, false)

	// A longer grant, then a caddy reload with a changed config: the rule
	// stays, once.
	if status, _ := call(t, "POST", "/knock", `{"ip_address":"`+clientB+`"}`); status != 200 {
		t.Fatalf("knock for %s: %d", clientB, status)
	}
	// A real change (a comment would adapt to the same JSON, and Caddy
	// skips reloading an unchanged config).
	loadCaddy(t, dir, strings.Replace(block, "\n\t\t}", "\n\t\t\tqueue_size 16\n\t\t}", 1))
	acceptB := strings.Replace(accept, clientA, clientB, 1)
	rules := firewalld.RichRules(t, "public", false)
	if n := strings.Count(strings.Join(rules, "\n"), acceptB); n != 1 {
		t.Fatalf("after caddy reload the accept rule for %s appears %d times:\n%s", clientB, n, strings.Join(rules, "\n"))
	}
	firewalld.ExpectReach(t, clientB, listen, true)

	// Revoked through the admin API: the port closes for clientB.
	req, _ := http.NewRequest("DELETE", "http://"+testcaddy.AdminAddress(t)+"/knocker/grants/"+clientB, nil)
	if resp := testutil.MustDo(t, http.DefaultClient, req); resp.Status != 200 || strings.TrimSpace(resp.Body) != `{"revoked":1}` {
		t.Fatalf("revoke %s: %d %s", clientB, resp.Status, resp.Body)
	}
	firewalld.ExpectReach(t, clientB, listen, false)
	if rules := firewalld.RichRules(t, "public", false); slices.Contains(rules, acceptB) {
		t.Fatalf("the accept rule for %s outlived its revocation:\n%s", clientB, strings.Join(rules, "\n"))
	}

	// Tampering: the drop rule removed behind Knocker's back fails /ready.
	drop := fmt.Sprintf(`rule priority="-27001" family="ipv4" port port="%d" protocol="tcp" drop`, listen)
	firewalld.Fwcmd(t, "--zone=public", "--remove-rich-rule="+drop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, body = call(t, "GET", "/ready", "")
		if status == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/ready after tampering: %d %v", status, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if reason, _ := body["error"].(string); !strings.HasPrefix(reason, "Firewalld protection not ready: ") {
		t.Fatalf("/ready reason %q", reason)
	}
	if _, err := os.Stat(filepath.Join(dir, "whitelist.firewalld.json")); err != nil {
		t.Fatalf("firewalld state file beside the whitelist: %v", err)
	}

	// The backend's metrics are on the admin endpoint, beside the app's,
	// with no address in them: two knocks opened rules, the tampering
	// failed a check.
	status, metrics := testutil.Get(t, http.DefaultClient, fmt.Sprintf("http://%s/metrics", testcaddy.AdminAddress(t)))
	if status != 200 {
		t.Fatalf("/metrics: %d", status)
	}
	for name, least := range map[string]float64{
		`caddy_knocker_firewalld_operation_duration_seconds_count{operation="open"}`: 2,
		`caddy_knocker_firewalld_operation_errors_total{operation="verify"}`:         1,
		`caddy_knocker_knocks_total{outcome="granted"}`:                              2,
	} {
		var v float64
		if i := strings.Index(metrics, "\n"+name+" "); i < 0 {
			t.Errorf("/metrics has no %s", name)
		} else if _, err := fmt.Sscan(metrics[i+len(name)+2:], &v); err != nil || v < least {
			t.Errorf("%s = %v (%v), want at least %v", name, v, err, least)
		}
	}
	for _, ip := range []string{clientA, clientB} {
		if strings.Contains(metrics, ip) {
			t.Errorf("/metrics names %s", ip)
		}
	}
}

// TestCrashKeepsRulesMatchingGrants: Caddy (the built binary) with
// firewalld is killed with SIGKILL at random moments while knocks arrive,
// and restarted on the same whitelist; after every restart the accept
// rules in firewalld are exactly the active grants.
func TestCrashKeepsRulesMatchingGrants(t *testing.T) {
	firewalld.NeedSandbox(t)
	firewalld.UseZones(t, "public")
	bin := filepath.Join(t.TempDir(), "caddy")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/caddy").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	port := testports.FreePort(t)
	cfgPath := filepath.Join(dir, "Caddyfile")
	global := testutil.Preamble{
		Admin:          "off",
		DefaultBind:    "127.0.0.1",
		TrustedProxies: "127.0.0.1/32",
		Knocker: &testutil.Knocker{
			WhitelistFile: dir + "/whitelist.json",
			Keys:          []testutil.Key{{Name: "admin", Secret: adminKey, MaxTTL: "1h"}},
			RateLimitsOff: true,
			Extra:         fmt.Sprintf("firewalld {\n\t\t\tzone public\n\t\t\tport %d/tcp\n\t\t}", listen),
		},
	}
	cfg := global.String() + fmt.Sprintf("http://:%d {\n\tknock\n}\n", port)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "run", "--config", cfgPath, "--adapter", "caddyfile")
		cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/ready", port)); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return cmd
				}
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatal("Caddy with firewalld not ready within 30 s")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	acceptFor := func(entry string) string {
		return fmt.Sprintf(`rule priority="-27002" family="ipv4" source address="%s" port port="%d" protocol="tcp" accept`, entry, listen)
	}
	knock := func(ip string) bool {
		req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/knock", port), nil)
		req.Header.Set("X-Api-Key", adminKey)
		req.Header.Set("X-Forwarded-For", ip)
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			return false // the process was killed: never acknowledged
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}

	// whitelisted asks the running Caddy whether ip holds a grant.
	whitelisted := func(ip string) bool {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/knock/status", port), nil)
		req.Header.Set("X-Forwarded-For", ip)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st struct{ Whitelisted bool }
		json.NewDecoder(resp.Body).Decode(&st)
		return st.Whitelisted
	}
	ruleIPs := func() map[string]bool {
		ips := map[string]bool{}
		for _, r := range firewalld.RichRules(t, "public", false) {
			if strings.Contains(r, `priority="-27002"`) {
				_, rest, _ := strings.Cut(r, `source address="`)
				ip, _, _ := strings.Cut(rest, `"`)
				if r != acceptFor(ip) {
					t.Fatalf("unexpected accept rule %s", r)
				}
				ips[ip] = true
			}
		}
		return ips
	}

	acked := map[string]bool{}
	var attempted []string
	const rounds = 20
	for round := range rounds {
		cmd := start()
		// The accept rules match the store: every rule's address holds a
		// grant, and every acknowledged knock has its rule. (A knock killed
		// after it was persisted but before its answer left is a grant
		// without an acknowledgement; it must have its rule too.)
		rules := ruleIPs()
		for ip := range rules {
			if !whitelisted(ip) {
				cmd.Process.Kill()
				t.Fatalf("round %d: accept rule for %s, which holds no grant (a rule of an unpersisted knock survived)", round, ip)
			}
		}
		for ip := range acked {
			if !rules[ip] {
				cmd.Process.Kill()
				t.Fatalf("round %d: acknowledged grant %s has no accept rule after restart", round, ip)
			}
		}
		done := make(chan []string)
		go func() {
			var ok []string
			for i := 0; i < 200; i++ {
				ip := fmt.Sprintf("10.%d.%d.%d", 100+round, i/200, i%200+1)
				if knock(ip) {
					ok = append(ok, ip)
				}
			}
			done <- ok
		}()
		time.Sleep(time.Duration(20+rand.IntN(150)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		for _, ip := range <-done {
			acked[ip] = true
		}
		for i := 0; i < 200; i++ {
			attempted = append(attempted, fmt.Sprintf("10.%d.%d.%d", 100+round, i/200, i%200+1))
		}
	}
	cmd := start()
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	// Over every address ever knocked for: a grant exactly when a rule.
	rules, grants := ruleIPs(), 0
	for _, ip := range attempted {
		w := whitelisted(ip)
		if w != rules[ip] {
			t.Fatalf("after %d crashes, %s: whitelisted %v but accept rule %v", rounds, ip, w, rules[ip])
		}
		if acked[ip] && !w {
			t.Fatalf("acknowledged grant %s lost", ip)
		}
		if w {
			grants++
		}
	}
	t.Logf("figure: %d kill -9 rounds, %d knocks attempted, %d acknowledged, %d grants in the store, accept rules equal to the grants after every restart", rounds, len(attempted), len(acked), grants)
}

// TestScopedKnocksOpenTheirPorts runs both callers of PrepareGrant with
// scopes: a knock with a scoped key opens the unscoped port and its
// scope's, not another scope's; an admin key's knock (full access) opens
// all; an operator's grant through the admin API opens its scopes' ports.
func TestScopedKnocksOpenTheirPorts(t *testing.T) {
	firewalld.NeedSandbox(t)
	firewalld.UseZones(t, "work")
	dir := t.TempDir()
	const friendKey = "firewalld-test-friend-0123456789abcdef"
	extra := "key friend " + friendKey + " {\n\t\t\tmax_ttl 1h\n\t\t\tallow_remote_whitelist\n\t\t\tscopes games\n\t\t}\n" +
		"\t\tfirewalld {\n\t\t\tzone work\n\t\t\tport 2222/tcp\n\t\t\tport 2223/tcp scope games\n\t\t\tport 2224/tcp scope admin\n\t\t}"
	loadCaddy(t, dir, extra)
	t.Cleanup(func() { stopCaddyApps(t) })

	accept := func(ip string, port int) string {
		return fmt.Sprintf(`rule priority="-27002" family="ipv4" source address="%s" port port="%d" protocol="tcp" accept`, ip, port)
	}
	var drops []string
	for _, port := range []int{2222, 2223, 2224} {
		for _, fam := range []string{"ipv4", "ipv6"} {
			drops = append(drops, fmt.Sprintf(`rule priority="-27001" family="%s" port port="%d" protocol="tcp" drop`, fam, port))
		}
	}
	expect := func(what string, want ...string) {
		t.Helper()
		want = append(slices.Clone(drops), want...)
		slices.Sort(want)
		if got := firewalld.RichRules(t, "work", false); !slices.Equal(got, want) {
			t.Fatalf("runtime rules %s:\n  %s\nwant\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	}

	req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/knock", httpPort()), strings.NewReader(`{"ip_address":"`+clientA+`"}`))
	req.Header.Set("X-Api-Key", friendKey)
	req.Header.Set("Content-Type", "application/json")
	if resp := testutil.MustDo(t, http.DefaultClient, req); resp.Status != 200 {
		t.Fatalf("knock with the games key: %d %s", resp.Status, resp.Body)
	}
	expect("after a knock with the games key", accept(clientA, 2222), accept(clientA, 2223))

	if status, body := call(t, "POST", "/knock", `{"ip_address":"`+clientB+`"}`); status != 200 {
		t.Fatalf("knock with the admin key: %d %v", status, body)
	}
	expect("after a full-access knock", accept(clientA, 2222), accept(clientA, 2223),
		accept(clientB, 2222), accept(clientB, 2223), accept(clientB, 2224))

	req, _ = http.NewRequest("POST", "http://"+testcaddy.AdminAddress(t)+"/knocker/grants",
		strings.NewReader(`{"entry":"`+clientA+`","ttl":600,"scopes":["admin"]}`))
	req.Header.Set("Content-Type", "application/json")
	if resp := testutil.MustDo(t, http.DefaultClient, req); resp.Status != 200 {
		t.Fatalf("admin API grant with scope admin: %d %s", resp.Status, resp.Body)
	}
	expect("after an operator's admin grant", accept(clientA, 2222), accept(clientA, 2223), accept(clientA, 2224),
		accept(clientB, 2222), accept(clientB, 2223), accept(clientB, 2224))
}

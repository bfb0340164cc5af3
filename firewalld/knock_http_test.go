package firewalld_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/caddy-knocker/knocker"
	"github.com/caddy-knocker/knocker/firewalld"
)

// Ports of this test binary's in-process Caddy, apart from the root
// package's (2999, 9080) so that packages may test in parallel.
const (
	adminPort = 3999
	httpPort  = 9180
	adminKey  = "firewalld-test-admin-0123456789abcdef"
	listen    = 2222 // the monitored port, listened on in the firewall namespace
	clientA   = "203.0.113.5"
	clientB   = "203.0.113.6"
)

func loadCaddy(t *testing.T, dir, firewalldBlock string) {
	t.Helper()
	t.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	cfg := fmt.Sprintf(`{
	admin localhost:%d
	http_port %d
	default_bind 127.0.0.1
	knocker {
		whitelist_file %s/whitelist.json
		key admin %s {
			max_ttl 1h
			allow_remote_whitelist
		}
		%s
	}
}
http://:%d {
	knock
}
`, adminPort, httpPort, dir, adminKey, firewalldBlock, httpPort)
	caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: adminPort}).InitServer(cfg, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
}

// stopCaddyApps loads a config without knocker: the firewalld app stops
// (leaving its rules, as designed) so it cannot react to later tests.
func stopCaddyApps(t *testing.T) {
	caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: adminPort}).InitServer(fmt.Sprintf(`{
	admin localhost:%d
}`, adminPort), "caddyfile")
}

func call(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", httpPort, path), strings.NewReader(body))
	req.Header.Set("X-Api-Key", adminKey)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m
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
	status, body := call(t, "POST", "/knock", `{"ip_address":"`+clientA+`","ttl":3}`)
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
	loadCaddy(t, dir, block+"\n\t\t# reloaded")
	acceptB := strings.Replace(accept, clientA, clientB, 1)
	rules := firewalld.RichRules(t, "public", false)
	if n := strings.Count(strings.Join(rules, "\n"), acceptB); n != 1 {
		t.Fatalf("after caddy reload the accept rule for %s appears %d times:\n%s", clientB, n, strings.Join(rules, "\n"))
	}
	firewalld.ExpectReach(t, clientB, listen, true)

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
}

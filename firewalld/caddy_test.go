package firewalld

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// The knocker app in these configs is the real one from the root package:
// knock_http_test.go (package firewalld_test, in this same test binary)
// imports it, which registers it. This package itself cannot import it.
func caddyConfig(apps string) []byte {
	return []byte(`{"admin":{"disabled":true,"config":{"persist":false}},"apps":{` + apps + `}}`)
}

// TestCaddyValidate runs Caddy's validation (Provision without Start): it
// must pass without touching firewalld, and catch a double configuration.
func TestCaddyValidate(t *testing.T) {
	wl := filepath.Join(t.TempDir(), "whitelist.json")
	nested := fmt.Sprintf(`"knocker":{"keys":[{"name":"t","secret":"caddy-test-secret-0123456789","max_ttl":3600000000000}],"whitelist_file":%q,"firewalld":{"ports":["22/tcp"]}}`, wl)
	direct := fmt.Sprintf(`"knocker":{"keys":[{"name":"t","secret":"caddy-test-secret-0123456789","max_ttl":3600000000000}],"whitelist_file":%q},"knocker_firewalld":{"ports":["22/tcp"]}`, wl)
	both := fmt.Sprintf(`"knocker":{"keys":[{"name":"t","secret":"caddy-test-secret-0123456789","max_ttl":3600000000000}],"whitelist_file":%q,"firewalld":{"ports":["22/tcp"]}},"knocker_firewalld":{"ports":["23/tcp"]}`, wl)
	bad := fmt.Sprintf(`"knocker":{"keys":[{"name":"t","secret":"caddy-test-secret-0123456789","max_ttl":3600000000000}],"whitelist_file":%q,"firewalld":{"ports":["22/tcp"],"action":"allow"}}`, wl)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent") // nothing may dial
	for _, tc := range []struct{ name, apps, wantErr string }{
		{"nested", nested, ""},
		{"direct", direct, ""},
		{"both", both, "configure firewalld in one place"},
		{"invalid", bad, `action: "allow" is not drop or reject`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cfg caddy.Config
			if err := json.Unmarshal(caddyConfig(tc.apps), &cfg); err != nil {
				t.Fatal(err)
			}
			// Several tries: apps are provisioned in random map order.
			for range 8 {
				err := caddy.Validate(&cfg)
				if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
					t.Fatalf("Validate = %v, want %q", err, tc.wantErr)
				}
				json.Unmarshal(caddyConfig(tc.apps), &cfg)
			}
		})
	}
	if _, err := os.Stat(wl); err == nil {
		t.Error("validation created the whitelist")
	}
}

// TestCaddyLifecycle runs the app inside Caddy: configured directly as
// apps.knocker_firewalld, then a config reload that changes the ports
// (Caddy starts the new apps before stopping the old ones), then nested in
// the knocker app, then Caddy stops. Rules follow each config; grants
// survive the reloads.
func TestCaddyLifecycle(t *testing.T) {
	useZones(t, "home")
	wl := filepath.Join(t.TempDir(), "whitelist.json")
	load := func(apps string) {
		t.Helper()
		if err := caddy.Load(caddyConfig(apps), true); err != nil {
			t.Fatalf("caddy.Load: %v", err)
		}
	}
	t.Cleanup(func() { caddy.Stop() })

	load(fmt.Sprintf(`"knocker_firewalld":{"zones":["home"],"ports":["2222/tcp"]},"knocker":{"keys":[{"name":"t","secret":"caddy-test-secret-0123456789","max_ttl":3600000000000}],"whitelist_file":%q}`, wl))
	waitRules(t, time.Second, "home", dropV4, dropV6)
	fw, err := caddyApp()
	if err != nil {
		t.Fatal(err)
	}
	// Configured directly, the app found the whitelist at Start through
	// the knocker app.
	grant(t, fw, &testSource{st: fw.reconciler().store, path: wl}, "198.51.100.7", time.Hour)
	waitRules(t, time.Second, "home", dropV4, dropV6, acceptText(t, "198.51.100.7", tcp(2222)))

	drop2223v4 := `rule priority="-27001" family="ipv4" port port="2223" protocol="tcp" drop`
	drop2223v6 := `rule priority="-27001" family="ipv6" port port="2223" protocol="tcp" drop`
	load(fmt.Sprintf(`"knocker_firewalld":{"zones":["home"],"ports":["2223/tcp"]},"knocker":{"keys":[{"name":"t","secret":"caddy-test-secret-0123456789","max_ttl":3600000000000}],"whitelist_file":%q}`, wl))
	waitRules(t, 2*time.Second, "home", drop2223v4, drop2223v6, acceptText(t, "198.51.100.7", tcp(2223)))

	load(fmt.Sprintf(`"knocker":{"keys":[{"name":"t","secret":"caddy-test-secret-0123456789","max_ttl":3600000000000}],"whitelist_file":%q,"firewalld":{"zones":["home"],"ports":["2223/tcp"],"action":"drop"}}`, wl))
	waitRules(t, 2*time.Second, "home", drop2223v4, drop2223v6, acceptText(t, "198.51.100.7", tcp(2223)))
	fw, err = caddyApp()
	if err != nil {
		t.Fatal(err)
	}
	if err := fw.Ready(); err != nil {
		t.Fatal(err)
	}

	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	// Stop leaves the protection and the grant in place.
	equalRules(t, "after caddy stop", richRules(t, "home", false),
		[]string{drop2223v4, drop2223v6, acceptText(t, "198.51.100.7", tcp(2223))})
}

// caddyApp returns the running knocker_firewalld app.
func caddyApp() (*App, error) {
	ctx := caddy.ActiveContext()
	v, err := ctx.AppIfConfigured(ModuleID)
	if err != nil {
		return nil, err
	}
	return v.(*App), nil
}

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

	"github.com/caddy-knocker/knocker/firewall"
)

// The knocker app in these configs is the real one from the root package:
// knock_http_test.go (package firewalld_test, in this same test binary)
// imports it, which registers it. This package itself cannot import it.
func caddyConfig(apps string) []byte {
	return []byte(`{"admin":{"disabled":true,"config":{"persist":false}},"apps":{` + apps + `}}`)
}

// knockerApp is the knocker app's JSON with extra fields appended.
func knockerApp(wl, extra string) string {
	return fmt.Sprintf(`"knocker":{"keys":[{"name":"t","secret":"caddy-test-secret-0123456789","max_ttl":3600000000000}],"whitelist_file":%q%s}`, wl, extra)
}

// TestCaddyValidate runs Caddy's validation (Provision without Start): it
// must pass without touching firewalld, and name what is wrong otherwise,
// including the configurations of earlier versions (a firewalld field, an
// apps.knocker_firewalld app), which must fail rather than leave the ports
// ungated.
func TestCaddyValidate(t *testing.T) {
	wl := filepath.Join(t.TempDir(), "whitelist.json")
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent") // nothing may dial
	for _, tc := range []struct{ name, apps, wantErr string }{
		{"valid", knockerApp(wl, `,"firewall":{"backend":"firewalld","ports":["22/tcp"]}`), ""},
		{"invalid", knockerApp(wl, `,"firewall":{"backend":"firewalld","ports":["22/tcp"],"action":"allow"}`), `action: "allow" is not drop or reject`},
		{"unknown field", knockerApp(wl, `,"firewall":{"backend":"firewalld","ports":["22/tcp"],"port":"23/tcp"}`), `unknown field "port"`},
		{"no backend", knockerApp(wl, `,"firewall":{"ports":["22/tcp"]}`), `firewall: module name not specified with key 'backend'`},
		{"unknown backend", knockerApp(wl, `,"firewall":{"backend":"nftables","ports":["22/tcp"]}`), `unknown module: knocker.firewall.nftables`},
		{"old field", knockerApp(wl, `,"firewalld":{"ports":["22/tcp"]}`), `unknown field "firewalld"`},
		{"old app", knockerApp(wl, "") + `,"knocker_firewalld":{"ports":["22/tcp"]}`, `unknown module: knocker_firewalld`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cfg caddy.Config
			if err := json.Unmarshal(caddyConfig(tc.apps), &cfg); err != nil {
				t.Fatal(err)
			}
			err := caddy.Validate(&cfg)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Validate = %v, want %q", err, tc.wantErr)
			}
		})
	}
	if _, err := os.Stat(wl); err == nil {
		t.Error("validation created the whitelist")
	}
}

// TestCaddyLifecycle runs the backend inside Caddy: started by the knocker
// app, then a config reload that changes the ports (Caddy starts the new
// config's apps before stopping the old ones), then Caddy stops. Rules
// follow each config; grants survive the reload.
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

	load(knockerApp(wl, `,"firewall":{"backend":"firewalld","zones":["home"],"ports":["2222/tcp"]}`))
	waitRules(t, time.Second, "home", dropV4, dropV6)
	fw, err := runningBackend()
	if err != nil {
		t.Fatal(err)
	}
	// The backend follows the knocker app's store.
	grant(t, fw, &testSource{st: fw.reconciler().store, path: wl}, "198.51.100.7", time.Hour)
	waitRules(t, time.Second, "home", dropV4, dropV6, acceptText(t, "198.51.100.7", tcp(2222)))

	drop2223v4 := `rule priority="-27001" family="ipv4" port port="2223" protocol="tcp" drop`
	drop2223v6 := `rule priority="-27001" family="ipv6" port port="2223" protocol="tcp" drop`
	load(knockerApp(wl, `,"firewall":{"backend":"firewalld","zones":["home"],"ports":["2223/tcp"],"action":"drop"}`))
	waitRules(t, 2*time.Second, "home", drop2223v4, drop2223v6, acceptText(t, "198.51.100.7", tcp(2223)))
	fw, err = runningBackend()
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
	if fw.reconciler() != nil {
		t.Error("the backend still runs after Caddy stopped")
	}
}

// runningBackend returns the firewalld backend of the running knocker app.
func runningBackend() (*Backend, error) {
	v, err := caddy.ActiveContext().AppIfConfigured("knocker")
	if err != nil {
		return nil, err
	}
	host, ok := v.(interface{ Firewall() firewall.Backend })
	if !ok {
		return nil, fmt.Errorf("knocker app %T has no Firewall method", v)
	}
	b, ok := host.Firewall().(*Backend)
	if !ok {
		return nil, fmt.Errorf("firewall backend is %T", host.Firewall())
	}
	return b, nil
}

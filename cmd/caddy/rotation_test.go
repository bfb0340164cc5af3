package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-knocker/knocker/internal/testports"
	"github.com/caddy-knocker/knocker/internal/testutil"
)

// TestKeyRotation checks the rotation procedure docs/configuration.md
// gives ("Rotating a key"), on the built binary: a changed {file.*} secret
// takes effect with `caddy reload --force` (a plain reload sees an
// unchanged config: the placeholder is resolved at provision time, so the
// adapted JSON is the same), and an admin knock with "ttl": 1 ends a grant
// the old key made.
func TestKeyRotation(t *testing.T) {
	bin := caddyBinary(t)
	home, dir := t.TempDir(), t.TempDir()
	secret := filepath.Join(dir, "phone.key")
	const oldKey, newKey, adminKey = "old-phone-secret-0123456789abcdef", "new-phone-secret-0123456789abcdef", "rotation-admin-0123456789abcdef"
	write := func(path, content string) {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(secret, oldKey+"\n")
	admin := fmt.Sprintf("localhost:%d", ports.rotationAdmin)
	site := siteURL(ports.rotationKnock)
	global := testutil.Preamble{
		Admin:          admin,
		DefaultBind:    "127.0.0.1",
		LogFile:        dir + "/caddy.log",
		TrustedProxies: "127.0.0.1/32",
		Knocker: &testutil.Knocker{
			WhitelistFile: dir + "/whitelist.json",
			Keys: []testutil.Key{
				{Name: "phone", Secret: "{file." + secret + "}", MaxTTL: "1h"},
				{Name: "admin", Secret: adminKey, MaxTTL: "1h", AllowRemoteWhitelist: true},
			},
		},
	}
	config := writeConfig(t, dir, "rotation.Caddyfile", global.String()+fmt.Sprintf("http://:%d {\n\tknock\n}\n", ports.rotationKnock))
	caddy := startCaddy(t, bin, home, config)
	caddy.waitUp(t, site+"/health")
	// One connection per request: a kept-alive connection would still be
	// served by the config before a reload.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	knock := func(key, ip string) int {
		t.Helper()
		code, _, err := knockAs(client, site, key, ip, 0)
		if err != nil {
			t.Fatal(err)
		}
		return code
	}
	reload := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"reload", "--config", config, "--adapter", "caddyfile", "--address", admin}, args...)...)
		cmd.Env = caddy.cmd.Env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("caddy reload %v: %v\n%s", args, err, out)
		}
		// The reload returns once the old servers began to shut down;
		// their sockets may still take a connection for a moment.
		testports.AwaitOldListenersClosed(t, ports.rotationKnock)
		return string(out)
	}

	if code := knock(oldKey, "203.0.113.190"); code != http.StatusOK {
		t.Fatalf("knock with the old key: %d", code)
	}
	write(secret, newKey+"\n")
	reload()
	if code := knock(oldKey, "203.0.113.191"); code != http.StatusOK {
		t.Fatalf("after a plain reload the old key got %d: Caddy now reloads a changed {file.*} secret; update the rotation procedure in docs/configuration.md", code)
	}
	reload("--force")
	if code := knock(oldKey, "203.0.113.192"); code != http.StatusUnauthorized {
		t.Fatalf("after caddy reload --force the old key got %d, want 401", code)
	}
	if code := knock(newKey, "203.0.113.193"); code != http.StatusOK {
		t.Fatalf("after caddy reload --force the new key got %d, want 200", code)
	}

	// The old key's grants stay until they expire; an admin knock with
	// ttl 1 ends one at once (the last knock wins, also when shorter).
	for _, ip := range []string{"203.0.113.190", "203.0.113.191"} {
		code, ans, err := knockAdmin(client, site, adminKey, ip)
		if err != nil || code != http.StatusOK || ans.ExpiresInSeconds != 1 {
			t.Fatalf("ending %s's grant: %d %+v %v", ip, code, ans, err)
		}
		// Ended within the second: already expired (a busy machine may
		// take that long to ask), or expiring at most a second from now.
		st, err := statusAs(client, site, ip)
		if err != nil || st.Whitelisted && (st.ExpiresAt == nil || *st.ExpiresAt > time.Now().Unix()+1) {
			t.Fatalf("%s after the ttl-1 knock: %+v %v", ip, st, err)
		}
	}
	logs, err := os.ReadFile(filepath.Join(dir, "caddy.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logs), `"entry":"203.0.113.190","ttl":3600,"key":"phone"`) {
		t.Fatalf("the log names no key in its knock lines, so the documented way (docs/configuration.md) to find a key's grants does not work:\n%s", logs)
	}
}

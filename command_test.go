package knocker

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/caddy-knocker/knocker/internal/testcaddy"
)

// run runs a caddy knocker subcommand against the test Caddy's admin
// endpoint and returns what it printed.
func runKnockerCommand(t *testing.T, c *cobra.Command, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&out)
	if c.Flags().Lookup("address") != nil {
		args = append(args, "--address", testcaddy.AdminAddress(t))
	}
	c.SetArgs(args)
	err := c.Execute()
	return out.String(), err
}

// TestKnockerCommands: caddy knocker grants, grant, revoke and keygen
// against a real Caddy's admin API.
func TestKnockerCommands(t *testing.T) {
	h := startCaddy(t, "", defaultSite)
	// The listings print whole seconds left: a second passing between a
	// grant and its listing (a busy machine) must not change them.
	freezeClock(t, time.Now())
	expectStatus(t, h.knock("203.0.113.30", phoneSecret, ""), 200, "phone knock")

	out, err := runKnockerCommand(t, grantCommand(), "192.0.2.0/24", "--ttl", "10m")
	if err != nil || !strings.HasPrefix(out, "192.0.2.0/24 whitelisted for 10m0s (until ") {
		t.Fatalf("grant: %q, %v", out, err)
	}
	if got := h.gate("192.0.2.9"); got != 200 {
		t.Fatalf("gate after caddy knocker grant: %d", got)
	}

	out, err = runKnockerCommand(t, grantsCommand())
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !regexp.MustCompile(`^ENTRY\s+KEY\s+SCOPES\s+EXPIRES IN\s+CREATED\s+CLIENT IP$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^192\.0\.2\.0/24\s+admin-api\s+all\s+10m0s\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+-$`).MatchString(lines[1]) ||
		!regexp.MustCompile(`^203\.0\.113\.30\s+phone\s+all\s+4h0m0s\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+203\.0\.113\.30$`).MatchString(lines[2]) {
		t.Fatalf("grants table:\n%s", out)
	}
	out, err = runKnockerCommand(t, grantsCommand(), "--key", "phone", "--json")
	var gs []grantJSON
	if err != nil || json.Unmarshal([]byte(out), &gs) != nil || len(gs) != 1 || gs[0].Entry != "203.0.113.30" {
		t.Fatalf("grants --key phone --json: %q, %v", out, err)
	}

	if out, err = runKnockerCommand(t, revokeCommand(), "192.0.2.0/24"); err != nil || out != "revoked 1 grant\n" {
		t.Fatalf("revoke entry: %q, %v", out, err)
	}
	if _, err = runKnockerCommand(t, revokeCommand(), "192.0.2.0/24"); err == nil || !strings.Contains(err.Error(), "HTTP 404") || !strings.Contains(err.Error(), "no grant for 192.0.2.0/24") {
		t.Fatalf("revoke a missing entry: %v, want the 404 and its reason", err)
	}
	if out, err = runKnockerCommand(t, revokeCommand(), "--key", "phone"); err != nil || out != "revoked 1 grant\n" {
		t.Fatalf("revoke --key: %q, %v", out, err)
	}
	if got := h.gate("203.0.113.30"); got != 401 {
		t.Fatalf("gate after caddy knocker revoke --key phone: %d", got)
	}
	if _, err = runKnockerCommand(t, revokeCommand(), "10.0.0.1", "--key", "phone"); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Fatalf("revoke with both: %v", err)
	}
	if _, err = runKnockerCommand(t, grantCommand(), "10.0.0.1", "--ttl", "soon"); err == nil || !strings.Contains(err.Error(), "--ttl") {
		t.Fatalf("grant with a bad ttl: %v", err)
	}

	// A grant limited to scopes opens no unscoped gate, and lists its scopes.
	if out, err = runKnockerCommand(t, grantCommand(), "198.51.100.7", "--ttl", "10m", "--scopes", "media,games"); err != nil {
		t.Fatalf("grant --scopes: %q, %v", out, err)
	}
	if got := h.gate("198.51.100.7"); got != 401 {
		t.Fatalf("unscoped gate after a scoped grant: %d, want 401", got)
	}
	if out, err = runKnockerCommand(t, grantsCommand()); err != nil || !regexp.MustCompile(`(?m)^198\.51\.100\.7\s+admin-api\s+games,media\s+10m0s`).MatchString(out) {
		t.Fatalf("grants after a scoped grant: %q, %v", out, err)
	}
	if _, err = runKnockerCommand(t, grantCommand(), "198.51.100.8", "--ttl", "10m", "--scopes", "media,Games"); err == nil || !strings.Contains(err.Error(), "scopes") {
		t.Fatalf("grant with a bad scope: %v", err)
	}
	if _, err = runKnockerCommand(t, grantCommand(), "198.51.100.9", "--ttl", "10m", "--scopes", ""); err == nil || !strings.Contains(err.Error(), "scopes") || h.gate("198.51.100.9") != 401 {
		t.Fatalf("grant with an empty --scopes: %v, want an error and no grant", err)
	}

	out, err = runKnockerCommand(t, keygenCommand(), "--name", "my phone")
	m := regexp.MustCompile(`^KNOCKER_MY_PHONE_KEY=([0-9a-f]{64})\n\n#[^\n]*\nkey "my phone" \{env\.KNOCKER_MY_PHONE_KEY\} \{`).FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("keygen: %q, %v", out, err)
	}
	if _, err := runKnockerCommand(t, keygenCommand(), "--name", "admin-api"); err == nil || !strings.Contains(err.Error(), "cannot name a key") {
		t.Fatalf("keygen --name admin-api: %v", err)
	}
	out, err = runKnockerCommand(t, keygenCommand(), "--name", `say "hi"`)
	if err != nil || !strings.Contains(out, "\nkey \"say \\\"hi\\\"\" {env.KNOCKER_SAY__HI__KEY} {") {
		t.Fatalf("keygen with a quote in the name: %q, %v", out, err)
	}
	other, _ := runKnockerCommand(t, keygenCommand())
	if strings.Contains(other, m[1]) {
		t.Fatal("keygen printed the same secret twice")
	}
}

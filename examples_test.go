package knocker

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// TestExamples keeps examples/ working: each Caddyfile adapts without
// copying a secret from the environment into the adapted config, the JSON
// example is exactly the homelab Caddyfile adapted, and every config passes
// Caddy's own validation (provisioning of every module, no start).
func TestExamples(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	secrets := []string{"example-admin-secret-0123456789", "example-phone-secret-0123456789", "example-own-secret-0123456789",
		"example-cluster-secret-0123456789abcdef", "example-nats-password-0123456789"}
	t.Setenv("KNOCKER_ADMIN_KEY", secrets[0])
	t.Setenv("KNOCKER_PHONE_KEY", secrets[1])
	t.Setenv("KNOCKER_KEY", secrets[2]) // the variable the quickstart tells users to set
	t.Setenv("KNOCKER_CLUSTER_SECRET", secrets[3])
	t.Setenv("KNOCKER_NATS_PASSWORD", secrets[4])
	t.Setenv("KNOCKER_NATS_URL", "nats://127.0.0.1:4222")
	t.Setenv("KNOCKER_NODE", "home")

	configs := map[string][]byte{}
	caddyfiles, _ := filepath.Glob("examples/*.Caddyfile")
	if len(caddyfiles) < 2 {
		t.Fatalf("expected the quickstart and homelab Caddyfiles, found %v", caddyfiles)
	}
	for _, file := range caddyfiles {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		// {$NAME} is substituted by the adapter, so a secret read that way
		// lands in Caddy's autosave file: examples use {env.NAME}.
		for i, line := range strings.Split(string(src), "\n") {
			if !strings.HasPrefix(strings.TrimSpace(line), "#") && strings.Contains(line, "{$") {
				t.Errorf("%s:%d uses a {$NAME} substitution; use a runtime placeholder such as {env.NAME}", file, i+1)
			}
		}
		out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": file})
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, secret := range secrets {
			if strings.Contains(string(out), secret) {
				t.Errorf("%s: the adapted config (what Caddy autosaves) contains a secret from the environment", file)
			}
		}
		for _, w := range warnings {
			t.Errorf("%s:%d: adapt warning: %s", file, w.Line, w.Message)
		}
		configs[file] = out
	}

	want, err := os.ReadFile("examples/homelab.json")
	if err != nil {
		t.Fatal(err)
	}
	var adapted, example any
	if err := json.Unmarshal(configs["examples/homelab.Caddyfile"], &adapted); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &example); err != nil {
		t.Fatalf("examples/homelab.json: %v", err)
	}
	if !reflect.DeepEqual(adapted, example) {
		t.Fatal("examples/homelab.json is not the adapted homelab.Caddyfile; regenerate it with: go run ./cmd/caddy adapt --config examples/homelab.Caddyfile --pretty > examples/homelab.json")
	}
	configs["examples/homelab.json"] = want

	for file, raw := range configs {
		var cfg caddy.Config
		if err := caddy.StrictUnmarshalJSON(raw, &cfg); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if err := caddy.Validate(&cfg); err != nil {
			t.Errorf("%s does not validate: %v", file, err)
		}
	}
}

package knocker

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/caddy-knocker/knocker/internal/testcaddy"
)

// TestAccessLogKeyWarning: knock warns about an access log that would
// record X-Api-Key, and only then.
func TestAccessLogKeyWarning(t *testing.T) {
	const filtered = "format filter {\n\t\t\trequest>headers>X-Api-Key delete\n\t\t}"
	parent := t.TempDir() // outlives the subtests: Caddy closes each config's store when the next one loads
	for i, tc := range []struct {
		name, format string
		warn         bool
	}{
		{"filter deletes the header", filtered, false},
		{"filter replaces the header", "format filter {\n\t\t\trequest>headers>X-Api-Key replace REDACTED\n\t\t}", false},
		{"filter hashes the header", "format filter {\n\t\t\trequest>headers>X-Api-Key hash\n\t\t}", false},
		{"filter of the header in lower case", "format filter {\n\t\t\trequest>headers>x-api-key delete\n\t\t}", true},
		{"no filter", "", true},
		{"json without filter", "format json", true},
		{"filter of another header", "format filter {\n\t\t\trequest>headers>Cookie delete\n\t\t}", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(parent, strconv.Itoa(i))
			cfg := config(t, dir, "", defaultSite)
			if !strings.Contains(cfg, filtered) {
				t.Fatal("the test config no longer has the filtered access log this test rewrites")
			}
			setKeyEnv(t)
			testcaddy.Load(t, strings.Replace(cfg, filtered, tc.format, 1), "caddyfile")
			logs, err := os.ReadFile(filepath.Join(dir, "caddy.log"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(logs), "knocker.store") && !strings.Contains(string(logs), "whitelist") {
				t.Fatalf("caddy.log shows nothing of the config's start; the search below would prove nothing:\n%s", logs)
			}
			warned := strings.Contains(string(logs), "access logs of this server record X-Api-Key")
			if warned != tc.warn {
				t.Fatalf("warning logged: %v, want %v\n%s", warned, tc.warn, logs)
			}
			if tc.warn && !strings.Contains(string(logs), `"logs":["log0"]`) {
				t.Fatalf("the warning does not name the leaking log:\n%s", logs)
			}
			if strings.Contains(string(logs), "may record X-Api-Key") {
				t.Fatalf("Caddy's log configuration could not be read:\n%s", logs)
			}
		})
	}
}

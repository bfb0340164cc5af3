package knocker

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
)

var updateGolden = flag.Bool("update", false, "rewrite the expected JSON of testdata/caddyfile_adapt fixtures")

// TestCaddyfileAdapt checks each fixture in testdata/caddyfile_adapt: a
// Caddyfile, a line of dashes, then the JSON `caddy adapt` must produce or,
// for error_* fixtures, text the adapt error must contain.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/caddyfile_adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".caddyfiletest")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			input, expected, ok := strings.Cut(string(data), "----------\n")
			if !ok {
				t.Fatal("fixture has no ---------- separator")
			}
			expected = strings.TrimSpace(expected)
			if strings.HasPrefix(name, "error_") {
				_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
				if err == nil || !strings.Contains(err.Error(), expected) {
					t.Fatalf("adapt error %v, want it to contain %q", err, expected)
				}
				return
			}
			if *updateGolden {
				writeGolden(t, file, input)
				return
			}
			if !caddytest.CompareAdapt(t, file, input, "caddyfile", expected) {
				t.Fatal("adapted JSON differs (diff above); rerun with -update after checking the change is intended")
			}
		})
	}
}

func writeGolden(t *testing.T, file, input string) {
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
	if err != nil {
		t.Fatal(err)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, out, "", "\t"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(input+"----------\n"+pretty.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

package knockerl4

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/caddy-knocker/knocker/internal/docscheck"
)

// TestDocsCoverMatcher is the root package's documentation drift test for
// the module only this package registers: docs/configuration.md's module
// table must have a row for layer4.matchers.knocked naming its fields.
func TestDocsCoverMatcher(t *testing.T) {
	raw, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	missing, checked, err := docscheck.Modules(string(raw), "github.com/caddy-knocker/knocker/layer4", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(checked, "layer4.matchers.knocked") {
		t.Fatalf("layer4.matchers.knocked is not registered, or not found as this package's (found: %v): the walk is broken", checked)
	}
	if len(missing) > 0 {
		t.Errorf("docs/configuration.md does not document:\n\t%s", strings.Join(missing, "\n\t"))
	}
}

// TestDocsRecipesAdapt keeps the caddy-l4 Caddyfiles of the README's SSH
// recipe and docs/configuration.md adapting, with the matcher in them:
// the root package's example tests cannot, since they do not link caddy-l4.
func TestDocsRecipesAdapt(t *testing.T) {
	t.Setenv("KNOCKER_PHONE_KEY", "example-phone-secret-0123456789")
	blocks := 0
	for _, file := range []string{"../README.md", "../docs/configuration.md"} {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, block := range caddyfileBlocks(string(raw)) {
			if !strings.Contains(block, "layer4 {") {
				continue
			}
			blocks++
			block = strings.ReplaceAll(block, "[<scope>]", "ssh")
			if out := adapt(t, block); !strings.Contains(out, `"knocked":`) {
				t.Errorf("%s: a layer4 Caddyfile adapts without the knocked matcher:\n%s", file, block)
			}
		}
	}
	if blocks < 2 {
		t.Fatalf("found %d layer4 Caddyfiles in the README and configuration.md, want the SSH recipe and the reference's", blocks)
	}
}

// caddyfileBlocks returns the contents of the ```caddyfile blocks of doc.
func caddyfileBlocks(doc string) []string {
	var blocks []string
	for rest := doc; ; {
		_, after, ok := strings.Cut(rest, "```caddyfile\n")
		if !ok {
			return blocks
		}
		block, tail, _ := strings.Cut(after, "```")
		blocks = append(blocks, block)
		rest = tail
	}
}

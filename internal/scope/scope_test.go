package scope

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, name := range []string{"", "media", "9", "a_b-c", "0-", strings.Repeat("z", 32)} {
		if err := Check(name); err != nil {
			t.Errorf("Check(%q): %v, want nil", name, err)
		}
	}
	for _, name := range []string{"Media", "-a", "_a", "a b", "a.b", "é", "a/b", "a\x00", strings.Repeat("z", 33)} {
		if err := Check(name); err == nil {
			t.Errorf("Check(%q) accepted it", name)
		}
	}
}

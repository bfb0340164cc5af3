package pathmatch

import (
	"strings"
	"testing"
)

// FuzzPathExclusion: normalisation yields a clean absolute path, and an
// ambiguous path never matches an exclusion.
func FuzzPathExclusion(f *testing.F) {
	for _, seed := range []string{"/public", "/public/../admin", "/public/..;/admin", "/api%2Fstatus", "/api%252Fstatus",
		"http://evil/public", "//public///x//", "/public\\..\\admin", "/public/%2e%2e/admin", "/p?x=/public", ""} {
		f.Add(seed)
	}
	prefixes, err := ParsePrefixes("exclude", []string{"/public", "/api/status"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		n := normalizePath(raw)
		if !strings.HasPrefix(n, "/") || n != "/" && strings.HasSuffix(n, "/") {
			t.Fatalf("normalizePath(%q) = %q", raw, n)
		}
		for _, seg := range strings.Split(n, "/")[1:] {
			if n != "/" && (seg == "" || seg == "." || seg == "..") {
				t.Fatalf("normalizePath(%q) = %q keeps an empty or dot segment", raw, n)
			}
		}
		if prefixes.Match(raw) && isAmbiguousPath(raw) {
			t.Fatalf("ambiguous path %q matched an exclusion", raw)
		}
	})
}

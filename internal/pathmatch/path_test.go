package pathmatch

import "testing"

// The Python Knocker's normalisation table.
func TestNormalizePathOriginalTable(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "/"},
		{"/", "/"},
		{"api/status", "/api/status"},
		{"/api/status", "/api/status"},
		{"/api/status/", "/api/status"},
		{"/api/status/health", "/api/status/health"},
		{"/api/status/../status", "/api/status"},
		{"/api/status/./secret", "/api/status/secret"},
		{"//api///status//", "/api/status"},
		{"/api/statusfake", "/api/statusfake"},
		{"/api/status/../secret", "/api/secret"},
		{"/api/status/../../admin", "/admin"},
		{"/api/status/../../../etc/passwd", "/etc/passwd"},
		{"/api/status%2E%2E/secret", "/api/status../secret"},
		{"/api/%2e%2e/api/status", "/api/status"},
		{"/api%2Fstatus", "/api/status"},
		{"/api%252Fstatus", "/api%2Fstatus"},
		{"http://evil.example/api/status", "/api/status"},
		{"https://evil.example", "/"},
		{"https://evil.example?x=/admin", "/"},
		{"/api/status?x=1", "/api/status"},
		{"/api/status?next=http://evil/x", "/api/status"},
		{"/a#frag?x", "/a"},
		{"/a%3Fb", "/a?b"},
		{"/API/STATUS", "/API/STATUS"},
		{"/%zz/x", "/%zz/x"},
		{"/a\\..\\b", "/a\\..\\b"},
	} {
		if got := normalizePath(tc.in); got != tc.want {
			t.Errorf("normalizePath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// Exclusion decisions against the prefix /api/status. Paths that servers
// may read differently never match (stricter than the Python Knocker, which
// admitted the rows marked "original: excluded").
func TestPathPrefixesMatch(t *testing.T) {
	ps, err := ParsePrefixes("exclude", []string{"/api/status"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want bool
	}{
		{"/api/status", true},
		{"/api/status/", true},
		{"/api/status/health", true},
		{"//api///status//", true},
		{"/api/status?x=1", true},
		{"http://evil.example/api/status", true},
		{"/api/statusfake", false},
		{"/api/status/../secret", false},
		{"/api/status/../../admin", false},
		{"/api/status%2E%2E/secret", false},
		{"/api%252Fstatus", false},
		{"/API/STATUS", false},
		{"/api/status/../status", false},  // original: excluded
		{"/api/status/./secret", false},   // original: excluded
		{"/api/%2e%2e/api/status", false}, // original: excluded
		{"/api%2Fstatus", false},          // original: excluded
		{"/api/status%2fx", false},
		{"/api/status\\..\\..\\admin", false},
		{"/api/status%5c..%5cadmin", false},
		{"/api/status/%00", false},
		{"/api/status;x=1", false},
		{"/admin;/api/status", false},
		{"/api/status/..;/admin", false}, // Tomcat reads "..;" as ".."
		{"/api/status/..;x=1/admin", false},
		{"/api/status/%2e%2e;/admin", false},
		{"/api/status/.;/health", false},
		{"/api/status/%3b/health", true},                // a plain ";" segment is not a dot segment
		{"/api/status/%c0%ae%c0%ae/admin", false},       // overlong UTF-8 "."
		{"/api/status/%ef%bc%8e%ef%bc%8e/admin", false}, // fullwidth dots
		{"/api/status/..%20/admin", false},              // Windows drops the space
		{"/api/status/.../admin", false},
		{"/api/status/%20../admin", false},
		{"/api/status/%e2%80%a5/admin", false}, // two dot leader
		{"/api/status/%ff/health", false},      // not UTF-8 at all
		{"/api/status/v1.2/health", true},      // dots inside a name are fine
		{"/api/status/%e2%82%ac", true},        // valid non-ASCII is fine
	} {
		if got := ps.Match(tc.path); got != tc.want {
			t.Errorf("match(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
}

func TestParsePathPrefixesRefusesEverything(t *testing.T) {
	for _, p := range []string{"", "/", "//", "/./", "/a/..", "?x"} {
		if _, err := ParsePrefixes("exclude", []string{"/ok", p}); err == nil {
			t.Errorf("parsePathPrefixes(%q) accepted a prefix that excludes every path", p)
		}
	}
}

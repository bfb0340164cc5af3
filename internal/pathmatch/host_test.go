package pathmatch

import "testing"

func TestNormalizeHost(t *testing.T) {
	for in, want := range map[string]string{
		"Example.COM:8443":  "example.com",
		"example.com.":      "example.com",
		"[::1]:80":          "::1",
		"[2001:DB8::1]":     "2001:db8::1",
		"2001:db8::1":       "2001:db8::1", // the Python Knocker broke this into "2001"
		"a.com, b.com":      "a.com",
		" a.com ":           "a.com",
		"*":                 "*",
		"":                  "",
		",":                 "",
		"evil.com@good.com": "", // the Python Knocker read this as good.com
		"[::1":              "",
		"a b":               "",
	} {
		if got := NormalizeHost(in); got != want {
			t.Errorf("normalizeHost(%q) = %q, want %q", in, got, want)
		}
	}
}

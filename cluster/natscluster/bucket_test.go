package natscluster

import "testing"

func TestServerVersionCheck(t *testing.T) {
	for v, want := range map[string]bool{
		"2.9.10":      false, // Debian 12's
		"2.10.24":     false,
		"2.11.0":      true,
		"2.11.0-RC.1": true,
		"2.15.2":      true,
		"v2.12.1":     true,
		"3.0.0":       true,
		"":            false,
		"2.x":         false,
	} {
		if got := atLeast(v, minServer); got != want {
			t.Errorf("atLeast(%q, 2.11.0) = %v, want %v", v, got, want)
		}
	}
}

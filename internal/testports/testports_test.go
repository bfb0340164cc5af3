package testports

import (
	"path/filepath"
	"strconv"
	"testing"
)

func TestPortsAreDistinctReservedAndBelowTheEphemeralRange(t *testing.T) {
	ports, err := Ports(20)
	if err != nil {
		t.Fatal(err)
	}
	low, high := pickRange()
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] || p < low || p > high {
			t.Fatalf("port %d: repeated or outside %d-%d (%v)", p, low, high, ports)
		}
		seen[p] = true
		// Another holder (as another test process would be) cannot reserve it.
		if f, ok := reserve(filepath.Join(lockDir(), strconv.Itoa(p)+".lock")); ok {
			f.Close()
			if reserveIsExclusive {
				t.Fatalf("port %d was reserved a second time", p)
			}
		}
	}
	more, err := Ports(5)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range more {
		if seen[p] {
			t.Fatalf("port %d picked twice in one process", p)
		}
	}
}

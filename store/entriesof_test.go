package store

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestEntriesOf: a prefix's active entries of every scope set, and only
// that prefix's (not a covering network's or a neighbour's).
func TestEntriesOf(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	now := e.clock.Unix()
	p := netip.MustParsePrefix("203.0.113.5/32")
	for _, g := range []struct {
		p      string
		exp    int64
		scopes []string
	}{
		{"203.0.113.5/32", now + 100, nil},
		{"203.0.113.5/32", now + 200, []string{"games"}},
		{"203.0.113.5/32", now + 300, []string{"games", "media"}},
		{"203.0.113.5/32", now + 10, []string{"media"}},
		{"203.0.113.0/24", now + 400, []string{"games"}}, // covers p: not p's
		{"203.0.113.6/32", now + 500, []string{"games"}},
	} {
		if _, err := s.GrantWith(netip.MustParsePrefix(g.p), g.exp, GrantOptions{Scopes: g.scopes}); err != nil {
			t.Fatal(err)
		}
	}
	list := func(at int64) string {
		var out []string
		for _, en := range s.EntriesOf(p, at) {
			if en.Prefix != p {
				t.Errorf("entry of %s listed for %s", en.Prefix, p)
			}
			out = append(out, strings.Join(en.Scopes, ",")+"="+strconv.FormatInt(en.Expires-now, 10))
		}
		slices.Sort(out)
		return strings.Join(out, " ")
	}
	if got, want := list(now), "=100 games,media=300 games=200 media=10"; got != want {
		t.Errorf("EntriesOf at now: %q, want %q", got, want)
	}
	if got, want := list(now+150), "games,media=300 games=200"; got != want {
		t.Errorf("EntriesOf later (expired entries left out): %q, want %q", got, want)
	}
	if _, err := s.Revoke(p); err != nil {
		t.Fatal(err)
	}
	if got := list(now); got != "" {
		t.Errorf("EntriesOf after Revoke: %q, want none", got)
	}
	if got := s.EntriesOf(netip.MustParsePrefix("203.0.113.5/24"), now); got != nil {
		t.Errorf("EntriesOf a non-canonical prefix: %v, want none", got)
	}
}

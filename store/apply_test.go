package store

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
)

func TestApplyReplicatedChanges(t *testing.T) {
	e := newEnv(t)
	e.max = 2
	s := e.open()
	rec := record(s)
	a, b, c := mustPrefix(t, "10.0.0.1"), mustPrefix(t, "10.0.0.2"), mustPrefix(t, "10.0.0.3")
	client := netip.MustParseAddr("192.0.2.7")

	changes := []Change{
		{Prefix: a, Expires: t0 + 100, Remote: true, Options: GrantOptions{Owner: "phone", Client: client}, Created: t0 - 50, Renewed: t0 - 5},
		{Prefix: b, Expires: t0 + 100, Remote: true, Scopes: []string{"ssh"}},
		// Beyond max_entries: a replicated grant was bounded where it was made.
		{Prefix: c, Expires: t0 + 100, Remote: true},
		{Prefix: netip.MustParsePrefix("10.0.0.9/24"), Expires: t0 + 100, Remote: true}, // not canonical
		{Prefix: a, Expires: t0 - 1, Remote: true},                                      // expired
	}
	if err := s.Apply(changes); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{false, false, false, true, true} {
		if failed := changes[i].Err != nil; failed != want {
			t.Errorf("change %d: err %v, want failure %v", i, changes[i].Err, want)
		}
	}
	if !errors.Is(changes[4].Err, ErrInvalid) {
		t.Errorf("expired change: %v, want ErrInvalid", changes[4].Err)
	}
	if got, want := rec.take(), []string{"added 10.0.0.1 100 remote", "added 10.0.0.2 100 remote", "added 10.0.0.3 100 remote"}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
	grants, err := s.Grants(t0)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(grants, func(g Entry) bool { return g.Prefix == a })
	if i < 0 || grants[i].Owner != "phone" || grants[i].Created != t0-50 || grants[i].Renewed != t0-5 || grants[i].Client != client {
		t.Errorf("replicated grant's details not kept: %+v", grants)
	}

	// The same grant again (a second delivery, or a node's own knock coming
	// back) changes nothing and tells nobody.
	again := []Change{{Prefix: a, Expires: t0 + 100, Remote: true, Options: GrantOptions{Owner: "phone"}}}
	if err := s.Apply(again); err != nil || again[0].Err != nil {
		t.Fatal(err, again[0].Err)
	}
	if got := rec.take(); len(got) != 0 {
		t.Errorf("a repeated replicated grant emitted %q", got)
	}

	// A removal takes only the entry of its scope set.
	rm := []Change{{Prefix: b, Scopes: []string{"web"}, Remote: true}, {Prefix: b, Scopes: []string{"ssh"}, Remote: true}}
	if err := s.Apply(rm); err != nil {
		t.Fatal(err)
	}
	if len(rm[0].Removed) != 0 || len(rm[1].Removed) != 1 {
		t.Errorf("removed %v and %v, want nothing and b's ssh entry", rm[0].Removed, rm[1].Removed)
	}
	if got, want := rec.take(), []string{"removed 10.0.0.2 100 remote"}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
	if s.Len() != 2 {
		t.Errorf("Len %d, want 2", s.Len())
	}

	// A local grant is still bounded, and its events are not remote.
	if _, err := s.GrantWith(mustPrefix(t, "10.0.0.4"), t0+50, GrantOptions{Owner: "tablet"}); !errors.Is(err, ErrFull) {
		t.Errorf("local grant beyond max_entries: %v, want ErrFull", err)
	}
	s.Close()
	if err := s.Apply([]Change{{Prefix: a, Expires: t0 + 10}}); !errors.Is(err, ErrClosed) {
		t.Errorf("Apply after Close: %v, want ErrClosed", err)
	}
}

func TestApplySurvivesReopen(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	p := mustPrefix(t, "2001:db8::/64")
	if err := s.Apply([]Change{{Prefix: p, Expires: t0 + 100, Remote: true, Scopes: []string{"web"}, Options: GrantOptions{Owner: "laptop"}, Created: t0 - 9}}); err != nil {
		t.Fatal(err)
	}
	s.crash()
	s = e.open()
	g, err := s.Grants(t0)
	if err != nil || len(g) != 1 || g[0].Owner != "laptop" || g[0].Created != t0-9 || !slices.Equal(g[0].Scopes, []string{"web"}) {
		t.Fatalf("after a crash: %+v %v", g, err)
	}
}

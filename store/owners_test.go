package store

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
)

// grantAs grants key until exp on behalf of owner.
func grantAs(t *testing.T, s *Store, key string, exp int64, opts GrantOptions) (GrantResult, error) {
	t.Helper()
	return s.GrantWith(mustPrefix(t, key), exp, opts)
}

func mustGrantAs(t *testing.T, s *Store, key string, exp int64, opts GrantOptions) GrantResult {
	t.Helper()
	r, err := grantAs(t, s, key, exp, opts)
	if err != nil {
		t.Fatalf("grant %s as %q: %v", key, opts.Owner, err)
	}
	return r
}

// owners returns "entry=owner" for every active entry, sorted.
func ownersOf(t *testing.T, s *Store, now int64) []string {
	t.Helper()
	return showGrants(t, s, now, func(e Entry) string { return FormatPrefix(e.Prefix) + "=" + e.Owner })
}

// showGrants returns every grant active at now as show shows it, sorted.
func showGrants(t *testing.T, s *Store, now int64, show func(Entry) string) []string {
	t.Helper()
	es, err := s.Grants(now)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, show(e))
	}
	slices.Sort(out)
	return out
}

func TestEvictionOnlyOfTheGrantersOwnEntries(t *testing.T) {
	e := newEnv(t)
	e.max = 3
	s := e.open()
	admin, guest := GrantOptions{Owner: "admin"}, GrantOptions{Owner: "guest"}
	mustGrantAs(t, s, "10.0.0.1", t0+10, admin) // the soonest-expiring of all
	mustGrantAs(t, s, "10.0.0.2", t0+50, guest)
	mustGrantAs(t, s, "10.0.0.3", t0+40, guest)
	r := mustGrantAs(t, s, "10.0.0.4", t0+60, guest)
	if len(r.Evicted) != 1 || FormatPrefix(r.Evicted[0].Prefix) != "10.0.0.3" || r.Evicted[0].Owner != "guest" {
		t.Fatalf("evicted %+v, want guest's soonest-expiring 10.0.0.3", r.Evicted)
	}
	want := []string{"10.0.0.1=admin", "10.0.0.2=guest", "10.0.0.4=guest"}
	if got := ownersOf(t, s, t0); !slices.Equal(got, want) {
		t.Fatalf("entries %v, want %v", got, want)
	}

	// A key with nothing of its own to evict gets ErrFull, and nothing changes.
	if _, err := grantAs(t, s, "10.0.0.5", t0+60, GrantOptions{Owner: "phone"}); !errors.Is(err, ErrFull) {
		t.Fatalf("phone's grant into a full whitelist: %v, want ErrFull", err)
	}
	if got := ownersOf(t, s, t0); !slices.Equal(got, want) {
		t.Fatalf("after the refused grant: %v, want %v", got, want)
	}
	// Extending an entry needs no room.
	mustGrantAs(t, s, "10.0.0.1", t0+70, admin)

	// A grant allowed to evict guest's entries takes the soonest of them.
	mayEvictGuest := GrantOptions{Owner: "admin", MayEvict: func(o string) bool { return o == "guest" }}
	r = mustGrantAs(t, s, "10.0.0.6", t0+80, mayEvictGuest)
	if len(r.Evicted) != 1 || FormatPrefix(r.Evicted[0].Prefix) != "10.0.0.2" {
		t.Fatalf("evicted %+v, want guest's 10.0.0.2", r.Evicted)
	}
}

// With one owner (or none) the Python Knocker's rule holds: the soonest-expiring
// entry is evicted.
func TestEvictionWithOneOwnerIsTheOriginals(t *testing.T) {
	for _, owner := range []string{"", "phone"} {
		e := newEnv(t)
		e.max = 3
		s := e.open()
		opts := GrantOptions{Owner: owner}
		for i, exp := range []int64{t0 + 30, t0 + 10, t0 + 20} {
			mustGrantAs(t, s, "10.0.1."+string(rune('1'+i)), exp, opts)
		}
		r := mustGrantAs(t, s, "10.0.1.9", t0+5, opts)
		if len(r.Evicted) != 1 || FormatPrefix(r.Evicted[0].Prefix) != "10.0.1.2" {
			t.Fatalf("owner %q: evicted %+v, want the soonest-expiring 10.0.1.2", owner, r.Evicted)
		}
	}
}

func TestMaxOwned(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	guest := GrantOptions{Owner: "guest", MaxOwned: 2}
	mustGrantAs(t, s, "10.0.2.1", t0+30, GrantOptions{Owner: "phone"})
	mustGrantAs(t, s, "10.0.2.2", t0+20, guest)
	mustGrantAs(t, s, "10.0.2.3", t0+10, guest)
	r := mustGrantAs(t, s, "10.0.2.4", t0+40, guest)
	if len(r.Evicted) != 1 || FormatPrefix(r.Evicted[0].Prefix) != "10.0.2.3" {
		t.Fatalf("evicted %+v, want guest's soonest 10.0.2.3", r.Evicted)
	}
	// Extending one's own entry at the bound evicts nothing.
	if r := mustGrantAs(t, s, "10.0.2.4", t0+50, guest); len(r.Evicted) != 0 {
		t.Fatalf("extension evicted %+v", r.Evicted)
	}
	// Taking over phone's entry makes it guest's: one more for guest.
	r = mustGrantAs(t, s, "10.0.2.1", t0+60, guest)
	if len(r.Evicted) != 1 || FormatPrefix(r.Evicted[0].Prefix) != "10.0.2.2" {
		t.Fatalf("takeover evicted %+v, want guest's 10.0.2.2", r.Evicted)
	}
	want := []string{"10.0.2.1=guest", "10.0.2.4=guest"}
	if got := ownersOf(t, s, t0); !slices.Equal(got, want) {
		t.Fatalf("entries %v, want %v", got, want)
	}
}

// Owners persist: in the journal across a crash, in the metadata file
// across a clean close; the snapshot stays in the Python service's format.
func TestOwnersPersist(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	mustGrantAs(t, s, "10.0.3.1", t0+100, GrantOptions{Owner: "phone"})
	mustGrantAs(t, s, "2001:db8::/64", t0+100, GrantOptions{Owner: `odd "name" ü`})
	mustGrant(t, s, "10.0.3.2", t0+100)
	want := []string{"10.0.3.1=phone", "10.0.3.2=", `2001:db8::/64=odd "name" ü`}
	s.crash()
	s = e.open()
	if got := ownersOf(t, s, t0); !slices.Equal(got, want) {
		t.Fatalf("after a crash (journal replay): %v, want %v", got, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	snap, err := os.ReadFile(e.path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(snap), "phone") || !strings.Contains(string(snap), `"10.0.3.1": 1795305700`) {
		t.Fatalf("the snapshot is not the Python Knocker's format:\n%s", snap)
	}
	meta, err := os.ReadFile(e.path + metaSuffix)
	if err != nil || !strings.Contains(string(meta), "10.0.3.1 key=\"phone\" created=1795305600 renewed=1795305600\n") || strings.Contains(string(meta), "10.0.3.2") {
		t.Fatalf("metadata file: %v\n%s", err, meta)
	}
	s = e.open()
	if got := ownersOf(t, s, t0); !slices.Equal(got, want) {
		t.Fatalf("after a clean close (metadata file): %v, want %v", got, want)
	}
	// The owners count for eviction after the restart.
	e.max = 3
	s.Close()
	s = e.open()
	r := mustGrantAs(t, s, "10.0.3.9", t0+200, GrantOptions{Owner: "phone"})
	if len(r.Evicted) != 1 || FormatPrefix(r.Evicted[0].Prefix) != "10.0.3.1" {
		t.Fatalf("evicted %+v, want phone's own 10.0.3.1", r.Evicted)
	}
}

func TestCorruptMetadataStopsOpen(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	mustGrantAs(t, s, "10.0.4.1", t0+100, GrantOptions{Owner: "phone"})
	s.Close()
	for _, bad := range []string{
		`{"10.0.4.1": {"key": 7}}`,
		metaHeader + "\n10.0.4.1 key=phone\n",
		metaHeader + "\n10.0.4.1 key=\"phone\" extra\n",
		metaHeader + "\nnot-an-ip key=\"phone\"\n",
	} {
		if err := os.WriteFile(e.path+metaSuffix, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(e.options()); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), metaSuffix) {
			t.Fatalf("Open with metadata %q: %v, want ErrCorrupt naming the file", bad, err)
		}
	}
}

func TestJournalOwnerField(t *testing.T) {
	p := mustPrefix(t, "203.0.113.7")
	for _, owner := range []string{"", "phone", "two words", `quote"d`, "ünï", "line\nbreak"} {
		line := appendRecord(nil, opSet, p, 1795319276, nil, owner, grantInfo{})
		rec, err := parseRecord(line[:len(line)-1])
		if err != nil || rec.owner != owner || rec.exp != 1795319276 || rec.prefix != p {
			t.Errorf("owner %q: %+v, %v", owner, rec, err)
		}
		if strings.Count(string(line), "\n") != 1 {
			t.Errorf("owner %q: record %q is not one line", owner, line)
		}
	}
	// A record of a journal without owners reads as the unknown owner.
	if rec, err := parseRecord([]byte(strings.TrimSuffix(string(appendRecord(nil, opSet, p, 5, nil, "", grantInfo{})), "\n"))); err != nil || rec.owner != "" {
		t.Errorf("record without owner: %+v, %v", rec, err)
	}
	if _, err := grantAs(t, newEnv(t).open(), "10.0.0.1", t0+10, GrantOptions{Owner: strings.Repeat("x", maxOwnerName+1)}); !errors.Is(err, ErrInvalid) {
		t.Errorf("an owner name over %d bytes: %v, want ErrInvalid", maxOwnerName, err)
	}
}

// Expired entries not yet swept make room for anyone's grant.
func TestExpiredEntriesOfOthersMakeRoom(t *testing.T) {
	e := newEnv(t)
	e.max = 2
	s := e.open()
	admin := GrantOptions{Owner: "admin"}
	mustGrantAs(t, s, "10.0.5.1", t0+10, admin)
	mustGrantAs(t, s, "10.0.5.2", t0+20, admin)
	e.clock.Advance(15) // 10.0.5.1 has expired; the sweeper has not run
	r := mustGrantAs(t, s, "10.0.5.3", t0+100, GrantOptions{Owner: "guest"})
	if len(r.Evicted) != 1 || FormatPrefix(r.Evicted[0].Prefix) != "10.0.5.1" {
		t.Fatalf("evicted %+v, want the expired 10.0.5.1", r.Evicted)
	}
	if _, err := grantAs(t, s, "10.0.5.4", t0+100, GrantOptions{Owner: "guest2"}); !errors.Is(err, ErrFull) {
		t.Fatalf("with no expired entry left: %v, want ErrFull", err)
	}
}

// A grant's details (first and last knock, the client) persist with its
// owner, through the journal and the metadata file; a re-knock keeps the
// first knock's time, and a grant made again after expiring starts anew.
func TestGrantDetailsPersist(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	phone := netip.MustParseAddr("198.51.100.9")
	mustGrantAs(t, s, "10.0.4.1", t0+100, GrantOptions{Owner: "phone", Client: phone})
	mustGrantAs(t, s, "10.0.4.2", t0+30, GrantOptions{Owner: "admin", Client: netip.MustParseAddr("2001:db8::9")})
	mustGrant(t, s, "10.0.4.3", t0+100) // no owner: no details
	e.clock.Advance(40)
	r := mustGrantAs(t, s, "10.0.4.1", t0+200, GrantOptions{Owner: "phone", Client: netip.MustParseAddr("::ffff:198.51.100.10")})
	if r.Entry.Created != t0 || r.Entry.Renewed != t0+40 || r.Entry.Client != netip.MustParseAddr("198.51.100.10") {
		t.Fatalf("re-knock result %+v: want created at the first knock, renewed now, the new client unmapped", r.Entry)
	}
	mustGrantAs(t, s, "10.0.4.2", t0+300, GrantOptions{Owner: "admin"}) // expired 10 s ago, not swept
	mustGrantAs(t, s, "10.0.4.3", t0+100, GrantOptions{Owner: "guest"})
	e.clock.Advance(1)
	if r := mustGrantAs(t, s, "10.0.4.3", t0+100, GrantOptions{Owner: "phone"}); r.Entry.Created != t0+41 {
		t.Fatalf("another key's re-grant kept created %d, want its own knock's %d", r.Entry.Created, t0+41)
	}
	mustGrant(t, s, "10.0.4.3", t0+100) // back to no owner: no details
	want := map[string]Entry{
		"10.0.4.1": {Owner: "phone", Created: t0, Renewed: t0 + 40, Client: netip.MustParseAddr("198.51.100.10")},
		"10.0.4.2": {Owner: "admin", Created: t0 + 40, Renewed: t0 + 40},
		"10.0.4.3": {},
	}
	check := func(when string) {
		t.Helper()
		grants, err := s.Grants(e.clock.Unix())
		if err != nil {
			t.Fatal(err)
		}
		if len(grants) != len(want) {
			t.Fatalf("%s: %d grants, want %d", when, len(grants), len(want))
		}
		for _, g := range grants {
			w := want[FormatPrefix(g.Prefix)]
			if g.Owner != w.Owner || g.Created != w.Created || g.Renewed != w.Renewed || g.Client != w.Client {
				t.Errorf("%s: %s = %+v, want %+v", when, FormatPrefix(g.Prefix), g, w)
			}
		}
	}
	check("before restart")
	s.crash()
	s = e.open()
	check("after a crash (journal replay)")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = e.open()
	check("after a clean close (metadata file)")
	s.Close()
}

func TestGrantDetailsFields(t *testing.T) {
	g := grantInfo{created: 5, renewed: 7, client: netip.MustParseAddr("2001:db8::1").As16()}
	line := string(appendInfo(nil, g))
	if line != " created=5 renewed=7 client=2001:db8::1" {
		t.Fatalf("appendInfo = %q", line)
	}
	if back, err := parseInfo(line); err != nil || back != g {
		t.Fatalf("parseInfo(%q) = %+v, %v", line, back, err)
	}
	for _, bad := range []string{"created=x", "client=fe80::1%eth0", "client=nope", "future=1", "renewed=", "created=1 created=2", "created=-1"} {
		if _, err := parseInfo(bad); err == nil {
			t.Errorf("parseInfo(%q) accepted", bad)
		}
	}
	p := netip.MustParsePrefix("10.0.0.1/32")
	rec, err := parseRecord([]byte(strings.TrimSuffix(string(appendRecord(nil, opSet, p, 9, nil, "my phone", g)), "\n")))
	if err != nil || rec.owner != "my phone" || rec.info != g || rec.exp != 9 {
		t.Fatalf("record round trip: %+v, %v", rec, err)
	}
	rec, err = parseRecord([]byte(strings.TrimSuffix(string(appendRecord(nil, opSet, p, 9, nil, "", g)), "\n")))
	if err != nil || rec.owner != "" || rec.info != g {
		t.Fatalf("record without owner: %+v, %v", rec, err)
	}
	glued := `+ 10.0.0.1 9 "alice"created=1`
	if _, err := parseRecord(fmt.Appendf(nil, "%08x %s", crc32c(glued), glued)); err == nil {
		t.Fatalf("record %q with no space after the owner accepted", glued)
	}
}

// RevokeOwner removes exactly the owner's entries, durably, with events.
func TestRevokeOwner(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	var removed []string
	cancel := s.Subscribe(func(ev Event) {
		if ev.Kind == Removed {
			removed = append(removed, FormatPrefix(ev.Entry.Prefix)+"="+ev.Entry.Owner)
		}
	})
	defer cancel()
	mustGrantAs(t, s, "10.0.5.1", t0+100, GrantOptions{Owner: "lost-phone"})
	mustGrantAs(t, s, "10.0.5.2", t0+100, GrantOptions{Owner: "lost-phone"})
	mustGrantAs(t, s, "10.0.5.3", t0+100, GrantOptions{Owner: "laptop"})
	mustGrant(t, s, "10.0.5.4", t0+100)
	got, err := s.RevokeOwner("lost-phone")
	if err != nil || len(got) != 2 {
		t.Fatalf("RevokeOwner = %v, %v; want the two grants", got, err)
	}
	if none, err := s.RevokeOwner("nobody"); err != nil || len(none) != 0 {
		t.Fatalf("RevokeOwner(nobody) = %v, %v", none, err)
	}
	if _, err := s.RevokeOwner(""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("RevokeOwner(\"\") = %v, want ErrInvalid", err)
	}
	slices.Sort(removed)
	if want := []string{"10.0.5.1=lost-phone", "10.0.5.2=lost-phone"}; !slices.Equal(removed, want) {
		t.Fatalf("Removed events %v, want %v", removed, want)
	}
	s.crash()
	s = e.open()
	if got, want := ownersOf(t, s, t0), []string{"10.0.5.3=laptop", "10.0.5.4="}; !slices.Equal(got, want) {
		t.Fatalf("after a crash: %v, want %v", got, want)
	}
	s.Close()
}

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

// grantIn grants key until exp limited to scopes (nil: full access).
func grantIn(t *testing.T, s *Store, key string, exp int64, owner string, scopes ...string) GrantResult {
	t.Helper()
	return mustGrantAs(t, s, key, exp, GrantOptions{Owner: owner, Scopes: scopes})
}

// grantString shows a grant as "entry[scopes] exp owner".
func grantString(e Entry) string {
	return fmt.Sprintf("%s[%s] %s %s", FormatPrefix(e.Prefix), strings.Join(e.Scopes, ","), itoa(e.Expires), e.Owner)
}

// grantStrings returns every active grant of s, sorted.
func grantStrings(t *testing.T, s *Store, now int64) []string {
	t.Helper()
	return showGrants(t, s, now, grantString)
}

func TestCheckScopes(t *testing.T) {
	in := []string{"media", "games", "media", "a-1_b"}
	got, err := CheckScopes(in)
	if err != nil || !slices.Equal(got, []string{"a-1_b", "games", "media"}) {
		t.Fatalf("CheckScopes(%q) = %q, %v", in, got, err)
	}
	if !slices.Equal(in, []string{"media", "games", "media", "a-1_b"}) {
		t.Fatalf("CheckScopes modified its argument: %q", in)
	}
	if got, err := CheckScopes(nil); got != nil || err != nil {
		t.Fatalf("CheckScopes(nil) = %q, %v; want nil (full access)", got, err)
	}
	if got, err := CheckScopes([]string{}); got != nil || err != nil {
		t.Fatalf("CheckScopes([]) = %q, %v; want nil (full access)", got, err)
	}
	sixteen := make([]string, 0, 17)
	for i := range 16 {
		sixteen = append(sixteen, fmt.Sprintf("s%d", i))
	}
	if _, err := CheckScopes(append(sixteen, "s0")); err != nil {
		t.Fatalf("16 distinct scopes and a duplicate: %v", err)
	}
	name32 := strings.Repeat("a", 32)
	if _, err := CheckScopes([]string{name32, "0", "9x"}); err != nil {
		t.Fatalf("valid names refused: %v", err)
	}
	for _, bad := range [][]string{
		{""}, {"Media"}, {"_media"}, {"-media"}, {"me dia"}, {"media,games"}, {"mé"},
		{strings.Repeat("a", 33)}, {"ok", "bad!"}, append(sixteen, "s16"),
	} {
		_, err := CheckScopes(bad)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckScopes(%q) = %v, want ErrInvalid", bad, err)
			continue
		}
		if len(bad) < 16 && !strings.Contains(err.Error(), fmt.Sprintf("%q", bad[len(bad)-1])) {
			t.Errorf("CheckScopes(%q): error %q does not name the bad scope", bad, err)
		}
	}
}

// One prefix holds one grant per scope set; a re-knock of a set renews
// that set's grant only, and revoking the prefix removes them all.
func TestScopedGrantIdentity(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	rec := record(s)
	grantIn(t, s, "203.0.113.7", t0+100, "owner")
	r := grantIn(t, s, "203.0.113.7", t0+50, "child", "media")
	if r.Previous != 0 || len(r.Evicted) != 0 || !slices.Equal(r.Entry.Scopes, []string{"media"}) {
		t.Fatalf("the child's grant beside the owner's: %+v, want a new entry", r)
	}
	r = grantIn(t, s, "203.0.113.7", t0+60, "guest", "media", "games")
	r = grantIn(t, s, "203.0.113.7", t0+70, "guest", "games", "media", "games") // the same set
	if r.Previous != t0+60 || !slices.Equal(r.Entry.Scopes, []string{"games", "media"}) {
		t.Fatalf("re-knock of the same set: %+v, want it extended", r)
	}
	want := []string{"203.0.113.7[] 100 owner", "203.0.113.7[games,media] 70 guest", "203.0.113.7[media] 50 child"}
	if got := grantStrings(t, s, t0); !slices.Equal(got, want) {
		t.Fatalf("grants %q, want %q", got, want)
	}
	if s.Len() != 3 {
		t.Fatalf("Len = %d, want 3", s.Len())
	}
	if got := len(s.Entries(t0)); got != 3 {
		t.Fatalf("Entries has %d entries, want 3", got)
	}
	var scoped []string
	for _, ev := range rec.events {
		scoped = append(scoped, ev.Kind.String()+" "+strings.Join(ev.Entry.Scopes, ","))
	}
	if want := []string{"added ", "added media", "added games,media", "extended games,media"}; !slices.Equal(scoped, want) {
		t.Fatalf("events %q, want %q", scoped, want)
	}
	rec.events = nil

	if n, err := s.Revoke(mustPrefix(t, "203.0.113.7")); n != 3 || err != nil {
		t.Fatalf("Revoke = %d, %v; want all 3 grants of the prefix", n, err)
	}
	var removed []string
	for _, ev := range rec.events {
		removed = append(removed, ev.Kind.String()+" "+grantString(ev.Entry))
	}
	slices.Sort(removed)
	if want := []string{"removed 203.0.113.7[] 100 owner", "removed 203.0.113.7[games,media] 70 guest", "removed 203.0.113.7[media] 50 child"}; !slices.Equal(removed, want) {
		t.Fatalf("events of the revocation %q, want %q", removed, want)
	}
	if s.Len() != 0 || s.AllowedIn(netip.MustParseAddr("203.0.113.7"), "media", t0) {
		t.Fatalf("after the revocation: Len %d", s.Len())
	}
	if _, err := grantAs(t, s, "203.0.113.7", t0+10, GrantOptions{Scopes: []string{"Media"}}); !errors.Is(err, ErrInvalid) || s.Len() != 0 {
		t.Fatalf("grant with an invalid scope: %v, Len %d; want ErrInvalid and nothing stored", err, s.Len())
	}
}

func TestAllowedInMatrix(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	grantIn(t, s, "10.0.0.1", t0+100, "")                   // full access
	grantIn(t, s, "10.0.0.2", t0+100, "kid", "media")       // media only
	grantIn(t, s, "10.0.0.3", t0+100, "", "media", "games") // media and games
	grantIn(t, s, "10.1.0.0/24", t0+50, "")                 // a full network...
	grantIn(t, s, "10.1.0.9", t0+200, "kid", "media")       // ...and a scoped host in it
	grantIn(t, s, "2001:db8::/64", t0+100, "", "games")
	grantIn(t, s, "10.0.0.4", t0+5, "", "media") // expires first
	e.clock.Advance(10)
	now := e.clock.Unix()

	type row struct {
		ip      string
		allowed bool            // Allowed
		in      map[string]bool // AllowedIn by scope; absent: false
	}
	all := map[string]bool{"": true, "media": true, "games": true, "other": true}
	rows := []row{
		{"10.0.0.1", true, all},
		{"10.0.0.2", false, map[string]bool{"media": true}},
		{"10.0.0.3", false, map[string]bool{"media": true, "games": true}},
		{"10.1.0.1", true, all},
		{"10.1.0.9", true, all}, // the full /24 admits everywhere
		{"::ffff:10.0.0.2", false, map[string]bool{"media": true}},
		{"2001:db8::7", false, map[string]bool{"games": true}},
		{"2001:db8:1::7", false, nil},
		{"10.0.0.4", false, nil}, // expired, not swept
		{"10.0.0.9", false, nil},
		{"fe80::1%eth0", false, nil},
	}
	for _, r := range rows {
		ip := netip.MustParseAddr(r.ip)
		if got := s.Allowed(ip, now); got != r.allowed {
			t.Errorf("Allowed(%s) = %v, want %v", r.ip, got, r.allowed)
		}
		for _, scope := range []string{"", "media", "games", "other"} {
			want := r.in[scope]
			if got := s.AllowedIn(ip, scope, now); got != want {
				t.Errorf("AllowedIn(%s, %q) = %v, want %v", r.ip, scope, got, want)
			}
			m, ok := s.MatchIn(ip, scope, now)
			if ok != want {
				t.Errorf("MatchIn(%s, %q) found %v, want %v", r.ip, scope, ok, want)
			}
			if scope == "" {
				if m2, ok2 := s.Match(ip, now); ok2 != ok || m2.Prefix != m.Prefix || m2.Expires != m.Expires {
					t.Errorf("MatchIn(%s, \"\") = %v %v, Match = %v %v", r.ip, m, ok, m2, ok2)
				}
			}
		}
	}

	// MatchIn: the admitting entry with the latest expiry.
	ip := netip.MustParseAddr("10.1.0.9")
	if m, _ := s.MatchIn(ip, "media", now); grantString(m) != "10.1.0.9[media] 200 " {
		t.Errorf("MatchIn(10.1.0.9, media) = %s, want the later scoped host grant", grantString(m))
	}
	if m, _ := s.MatchIn(ip, "games", now); grantString(m) != "10.1.0.0/24[] 50 " {
		t.Errorf("MatchIn(10.1.0.9, games) = %s, want the full network grant", grantString(m))
	}
	if m, _ := s.Match(ip, now); grantString(m) != "10.1.0.0/24[] 50 " {
		t.Errorf("Match(10.1.0.9) = %s, want only the full network grant", grantString(m))
	}
	// MatchAny: whatever admits, scoped or not.
	for ipText, want := range map[string]string{
		"10.1.0.9":    "10.1.0.9[media] 200 ",
		"10.0.0.3":    "10.0.0.3[games,media] 100 ",
		"10.1.0.1":    "10.1.0.0/24[] 50 ",
		"2001:db8::7": "2001:db8::/64[games] 100 ",
	} {
		if m, ok := s.MatchAny(netip.MustParseAddr(ipText), now); !ok || grantString(m) != want {
			t.Errorf("MatchAny(%s) = %s %v, want %s", ipText, grantString(m), ok, want)
		}
	}
	for _, ipText := range []string{"10.0.0.4", "10.0.0.9", "2001:db8:1::7"} {
		if m, ok := s.MatchAny(netip.MustParseAddr(ipText), now); ok {
			t.Errorf("MatchAny(%s) = %s, want nothing", ipText, grantString(m))
		}
	}
	// On equal expiry and length, the full grant wins.
	grantIn(t, s, "10.0.0.2", t0+100, "")
	if m, _ := s.MatchIn(netip.MustParseAddr("10.0.0.2"), "media", now); m.Scopes != nil {
		t.Errorf("MatchIn with a full and a scoped grant of one expiry = %s, want the full one", grantString(m))
	}
	if m, _ := s.MatchAny(netip.MustParseAddr("10.0.0.2"), now); m.Scopes != nil {
		t.Errorf("MatchAny with a full and a scoped grant of one expiry = %s, want the full one", grantString(m))
	}

	ips := []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("2001:db8::7"), netip.MustParseAddr("10.9.9.9"), netip.MustParseAddr("2001:db9::1")}
	allocs := testing.AllocsPerRun(100, func() {
		for _, ip := range ips {
			s.AllowedIn(ip, "media", now)
			s.AllowedIn(ip, "games", now)
			s.AllowedIn(ip, "other", now)
			s.MatchIn(ip, "games", now)
		}
	})
	if allocs != 0 {
		t.Errorf("AllowedIn and MatchIn allocate %.1f times per round", allocs)
	}
}

// max_entries and MaxOwned count each (prefix, scope set) as one entry.
func TestScopedGrantsCountAsEntries(t *testing.T) {
	e := newEnv(t)
	e.max = 3
	s := e.open()
	kid := GrantOptions{Owner: "kid", Scopes: []string{"media"}}
	mustGrantAs(t, s, "10.0.0.1", t0+30, GrantOptions{Owner: "kid"})
	mustGrantAs(t, s, "10.0.0.1", t0+20, kid)
	mustGrantAs(t, s, "10.0.0.1", t0+40, GrantOptions{Owner: "kid", Scopes: []string{"games"}})
	if s.Len() != 3 {
		t.Fatalf("Len = %d, want 3 grants of one address", s.Len())
	}
	// At max_entries, a further grant of kid evicts kid's soonest: the media grant.
	r := mustGrantAs(t, s, "10.0.0.2", t0+50, kid)
	if len(r.Evicted) != 1 || grantString(r.Evicted[0]) != "10.0.0.1[media] 20 kid" {
		t.Fatalf("evicted %v, want kid's soonest-expiring grant, the media one", r.Evicted)
	}
	if _, err := grantAs(t, s, "10.0.0.3", t0+50, GrantOptions{Owner: "other", Scopes: []string{"media"}}); !errors.Is(err, ErrFull) {
		t.Fatalf("a grant of another key into a full whitelist: %v, want ErrFull", err)
	}
	// MaxOwned 2: kid holds 3 grants now (two scoped, one full).
	kid.MaxOwned = 2
	r = mustGrantAs(t, s, "10.0.0.3", t0+60, kid)
	if len(r.Evicted) != 2 {
		t.Fatalf("evicted %v, want two of kid's grants (MaxOwned 2 with the new one)", r.Evicted)
	}
	want := []string{"10.0.0.2[media] 50 kid", "10.0.0.3[media] 60 kid"}
	if got := grantStrings(t, s, t0); !slices.Equal(got, want) {
		t.Fatalf("grants %q, want %q", got, want)
	}
	if got, err := s.RevokeOwner("kid"); err != nil || len(got) != 2 || got[0].Scopes == nil {
		t.Fatalf("RevokeOwner = %v, %v; want the two scoped grants", got, err)
	}
}

// Scoped grants persist: through the journal across a crash, through the
// metadata file across a clean close, and never in whitelist.json, which
// must stay importable by readers of the original format.
func TestScopedGrantsPersist(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	client := netip.MustParseAddr("198.51.100.9")
	mustGrantAs(t, s, "203.0.113.7", t0+100, GrantOptions{Owner: "owner", Client: client})
	mustGrantAs(t, s, "203.0.113.7", t0+200, GrantOptions{Owner: "guest", Client: client, Scopes: []string{"media", "games"}})
	mustGrantAs(t, s, "2001:db8::/64", t0+300, GrantOptions{Scopes: []string{"games"}}) // no owner
	mustGrant(t, s, "10.0.0.1", t0+400)
	want := []string{"10.0.0.1[] 400 ", "2001:db8::/64[games] 300 ", "203.0.113.7[] 100 owner", "203.0.113.7[games,media] 200 guest"}
	check := func(when string) {
		t.Helper()
		if got := grantStrings(t, s, t0); !slices.Equal(got, want) {
			t.Fatalf("%s: %q, want %q", when, got, want)
		}
		if !s.AllowedIn(netip.MustParseAddr("2001:db8::1"), "games", t0) || s.Allowed(netip.MustParseAddr("2001:db8::1"), t0) {
			t.Fatalf("%s: the scoped network grant does not admit as it should", when)
		}
	}
	check("before")
	data, _ := os.ReadFile(e.path + ".journal")
	if !strings.Contains(string(data), ` + 203.0.113.7 1795305800 "guest" scopes=games,media created=`) {
		t.Fatalf("journal:\n%s", data)
	}
	s.crash()
	s = e.open()
	check("after a crash (journal replay)")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	snap, _ := os.ReadFile(e.path)
	if want := "{\n  \"10.0.0.1\": 1795306000,\n  \"203.0.113.7\": 1795305700\n}"; string(snap) != want {
		t.Fatalf("whitelist.json holds more than the full-access grants:\n%s", snap)
	}
	meta, _ := os.ReadFile(e.path + metaSuffix)
	for _, line := range []string{
		"\n203.0.113.7 key=\"owner\" created=1795305600 renewed=1795305600 client=198.51.100.9\n",
		"\n203.0.113.7 key=\"guest\" scopes=games,media expires=1795305800 created=1795305600 renewed=1795305600 client=198.51.100.9\n",
		"\n2001:db8::/64 scopes=games expires=1795305900\n",
	} {
		if !strings.Contains(string(meta), line) {
			t.Fatalf("metadata file lacks %q:\n%s", line, meta)
		}
	}
	s = e.open()
	check("after a clean close (metadata file)")

	// A scoped grant expired while the store was down is dropped.
	s.Close()
	e.clock.Advance(350)
	s = e.open()
	want = []string{"10.0.0.1[] 400 "}
	if got := grantStrings(t, s, e.clock.Unix()); !slices.Equal(got, want) || s.Len() != 1 {
		t.Fatalf("after expiry while down: %q (Len %d), want %q", got, s.Len(), want)
	}
	s.Close()
	if meta, _ := os.ReadFile(e.path + metaSuffix); strings.Contains(string(meta), "scopes=") {
		t.Fatalf("the expired scoped grants were written again:\n%s", meta)
	}
}

// A scoped grant lives only in the metadata file and the journal: every
// crash point of a compaction must restore the committed state.
func TestScopedGrantsAtEveryCompactionCrashPoint(t *testing.T) {
	e := newEnv(t)
	read := func(name string) []byte {
		data, err := os.ReadFile(e.path + name)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		return data
	}
	// Generation 1: snapshot and metadata.
	s := e.open()
	grantIn(t, s, "10.0.0.1", t0+100, "owner")
	grantIn(t, s, "10.0.0.1", t0+100, "kid", "media")
	grantIn(t, s, "10.0.0.2", t0+100, "kid", "games")
	grantIn(t, s, "10.0.0.3", t0+100, "", "media")
	s.Close()
	snap1, meta1 := read(""), read(metaSuffix)
	// The journal that a compaction folds into generation 2.
	s = e.open()
	s.Revoke(mustPrefix(t, "10.0.0.2"))                  // scoped, gone in gen 2
	grantIn(t, s, "10.0.0.1", t0+150, "kid", "media")    // extended
	grantIn(t, s, "10.0.0.4", t0+100, "guest", "games")  // new, scoped
	grantIn(t, s, "10.0.0.3", t0+120, "guest", "media")  // another owner
	grantIn(t, s, "10.0.0.5", t0+100, "guest", "x", "y") // new set
	s.crash()
	journal1 := read(".journal")
	s = e.open()
	s.Close()
	snap2, meta2 := read(""), read(metaSuffix)
	// The journal after the rotation.
	s = e.open()
	s.Revoke(mustPrefix(t, "10.0.0.4"))
	grantIn(t, s, "10.0.0.5", t0+130, "guest", "x", "y")
	grantIn(t, s, "10.0.0.6", t0+100, "", "media")
	want := grantStrings(t, s, t0)
	s.crash()
	journal2 := read(".journal")

	write := func(name string, data []byte) {
		if data == nil {
			os.Remove(e.path + name)
			return
		}
		if err := os.WriteFile(e.path+name, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name       string
		snap, meta []byte
		old        []byte
	}{
		{"before the metadata file", snap1, meta1, journal1},
		{"after the metadata file, before the snapshot", snap1, meta2, journal1},
		{"after the snapshot, before .journal.old is removed", snap2, meta2, journal1},
		{"after the compaction", snap2, meta2, nil},
	} {
		write("", c.snap)
		write(metaSuffix, c.meta)
		write(".journal.old", c.old)
		write(".journal", journal2)
		s := e.open()
		if got := grantStrings(t, s, t0); !slices.Equal(got, want) {
			t.Errorf("crash %s:\n got %q\nwant %q", c.name, got, want)
		}
		if !s.AllowedIn(netip.MustParseAddr("10.0.0.5"), "y", t0) || s.AllowedIn(netip.MustParseAddr("10.0.0.4"), "games", t0) {
			t.Errorf("crash %s: AllowedIn disagrees with the grants", c.name)
		}
		s.crash()
	}
}

// Background compaction with scoped grants: the snapshot holds none, the
// metadata file all, and a crash after it loses nothing.
func TestCompactionWithScopedGrants(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	s.exec(func() { s.w.minCompact = 2000 })
	for i := range 60 {
		grantIn(t, s, fmt.Sprintf("10.0.%d.0/24", i), t0+1000, "")
		grantIn(t, s, fmt.Sprintf("10.0.%d.0/24", i), t0+1000+int64(i), "kid", "media")
		if i%3 == 0 {
			s.Revoke(mustPrefix(t, fmt.Sprintf("10.0.%d.0/24", i)))
		}
	}
	want := grantStrings(t, s, t0)
	var compacted int64
	s.exec(func() { s.waitCompaction(); compacted = s.w.snapshotSize })
	if compacted == 0 {
		t.Fatal("no compaction happened")
	}
	snap, _ := os.ReadFile(e.path)
	if strings.Contains(string(snap), "media") || !strings.Contains(string(snap), `"10.0.1.0/24"`) {
		t.Fatalf("snapshot after compaction:\n%s", snap)
	}
	s.crash()
	s = e.open()
	if got := grantStrings(t, s, t0); !slices.Equal(got, want) {
		t.Fatalf("after compaction and crash:\n got %q\nwant %q", got, want)
	}
	if len(want) != 80 {
		t.Fatalf("%d grants, want 80", len(want))
	}
}

// recordLine frames body as a journal line with a valid checksum.
func recordLine(body string) []byte { return fmt.Appendf(nil, "%08x %s", crc32c(body), body) }

func TestJournalScopesField(t *testing.T) {
	p := mustPrefix(t, "203.0.113.7")
	g := grantInfo{created: 5}
	for _, c := range []struct {
		op     byte
		owner  string
		scopes []string
		want   string
	}{
		{opSet, "kid", []string{"games", "media"}, `+ 203.0.113.7 9 "kid" scopes=games,media created=5`},
		{opSet, "", []string{"media"}, `+ 203.0.113.7 9 scopes=media created=5`},
		{opDelete, "", []string{"media"}, `- 203.0.113.7 scopes=media`},
		{opDelete, "", nil, `- 203.0.113.7`},
	} {
		line := appendRecord(nil, c.op, p, 9, c.scopes, c.owner, g)
		if got := string(line[9 : len(line)-1]); got != c.want {
			t.Errorf("record %q, want %q", got, c.want)
		}
		rec, err := parseRecord(line[:len(line)-1])
		if err != nil || rec.op != c.op || !slices.Equal(rec.scopes, c.scopes) || rec.owner != c.owner || rec.prefix != p {
			t.Errorf("parseRecord(%q) = %+v, %v", line, rec, err)
		}
	}
	for _, bad := range []string{
		`+ 1.2.3.4 9 scopes=`,
		`+ 1.2.3.4 9 scopes=Media`,
		`+ 1.2.3.4 9 scopes=media,games`, // not sorted
		`+ 1.2.3.4 9 scopes=media,media`,
		`+ 1.2.3.4 9 scopes=a,,b`,
		`+ 1.2.3.4 9 scopes=a scopes=b`,
		`+ 1.2.3.4 9 created=5 scopes=a`,
		`+ 1.2.3.4 9 scopes=a "kid"`,
		`- 1.2.3.4 scopes=`,
		`- 1.2.3.4 scopes=b,a`,
		`- 1.2.3.4 scopes=a extra`,
		`- 1.2.3.4 created=5`,
		`- 1.2.3.4 `,
	} {
		if rec, err := parseRecord(recordLine(bad)); err == nil || errors.Is(err, errBadFrame) {
			t.Errorf("parseRecord(%q) = %+v, %v; want a content error", bad, rec, err)
		}
	}

	// In a journal, such a record stops Open.
	e := newEnv(t)
	crashedStore(t, e)
	appendFile(t, e.path+".journal", string(recordLine(`+ 9.9.9.9 1795319276 scopes=b,a`))+"\n")
	if _, err := Open(e.options()); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "line 4") {
		t.Fatalf("Open = %v, want ErrCorrupt at line 4", err)
	}
}

func TestMetadataScopesField(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	grantIn(t, s, "10.0.4.1", t0+100, "kid", "media")
	s.Close()
	for _, bad := range []string{
		"10.0.4.1 scopes=media",                        // no expiry
		"10.0.4.1 scopes=media expires=x",              // bad expiry
		"10.0.4.1 scopes=media expires=-5",             // bad expiry
		"10.0.4.1 expires=1795305700 scopes=media",     // wrong order
		"10.0.4.1 scopes=media,games expires=1",        // not canonical
		"10.0.4.1 scopes= expires=1",                   // empty set
		"10.0.4.1 created=5",                           // neither key= nor scopes=
		"10.0.4.1 key=\"kid\" expires=1795305700",      // expiry without scopes
		"10.0.4.1 scopes=media expires=1 scopes=games", // twice
	} {
		data := metaHeader + "\n" + bad + "\n"
		if err := os.WriteFile(e.path+metaSuffix, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if s, err := Open(e.options()); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), metaSuffix+" line 2") {
			if err == nil {
				s.Close()
			}
			t.Errorf("Open with metadata line %q: %v, want ErrCorrupt naming the file and line", bad, err)
		}
	}
}

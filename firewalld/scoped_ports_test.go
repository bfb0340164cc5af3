package firewalld

// Ports tied to access scopes, against the sandbox's firewalld: which
// grant opens which port, and each rule's timeout when several grants of
// one prefix open it.

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-knocker/knocker/firewall"
	"github.com/caddy-knocker/knocker/store"
)

// scopedConfig gates 2222 for every grant and one port per scope.
const scopedConfig = `"ports":["2222/tcp"],"scoped_ports":{"games":["2223/tcp"],"media":["2224/tcp"],"admin":["2225/tcp"]}`

var scopedPorts = []uint16{2222, 2223, 2224, 2225}

// scopedDrops are the block rules of scopedConfig: scoped ports too.
func scopedDrops() []string {
	var out []string
	for _, n := range scopedPorts {
		for _, fam := range []string{"ipv4", "ipv6"} {
			out = append(out, fmt.Sprintf(`rule priority="-27001" family="%s" port port="%d" protocol="tcp" drop`, fam, n))
		}
	}
	return out
}

// withAccepts returns the block rules plus an accept for p on each port.
func withAccepts(t *testing.T, rules []string, p string, ports ...uint16) []string {
	out := slices.Clone(rules)
	for _, n := range ports {
		out = append(out, acceptText(t, p, tcp(n)))
	}
	return out
}

// placedExpiries returns the expiry a's reconciler gave each of p's accept
// rules in zone, by port number: firewalld lists no timeouts, so this is
// what the rules were added with.
func placedExpiries(t *testing.T, a *Backend, zone, p string) map[uint16]int64 {
	t.Helper()
	sh := a.reconciler().sh
	sh.mu.Lock()
	defer sh.mu.Unlock()
	out := map[uint16]int64{}
	for at, e := range sh.placementsOf(mustPrefix(t, p)) {
		rule, ok := parseKnockerRule(at.rule)
		if at.zone != zone || !ok {
			t.Fatalf("unexpected placement %v", at)
		}
		out[rule.port.Number] = e
	}
	return out
}

func expectExpiries(t *testing.T, a *Backend, zone, p string, want map[uint16]int64) {
	t.Helper()
	if got := placedExpiries(t, a, zone, p); !maps.Equal(got, want) {
		t.Fatalf("expiries of %s's accept rules by port: got %v, want %v", p, got, want)
	}
}

// TestScopedPorts: a scoped grant opens the unscoped ports and its
// scope's, with real packets; a full-access grant opens all; two grants of
// one prefix give each port the latest expiry of the grants that open it;
// a re-knock extends only its own ports; an undo and the removal of one
// grant leave the other's ports; a firewalld reload and a restart of the
// backend restore the same rules with the same expiries.
func TestScopedPorts(t *testing.T) {
	useZones(t, "public")
	startListener(t, 2222, 2223, 2224, 2225)
	src := openStore(t)
	a := startBackend(t, `{"zones":["public"],`+scopedConfig+`}`, src)
	drops := scopedDrops()
	waitRules(t, time.Second, "public", drops...)

	expG := grantAs(t, a, src, clientA, time.Hour, "friend", "games")
	waitRules(t, time.Second, "public", withAccepts(t, drops, clientA, 2222, 2223)...)
	expectReach(t, clientA, 2223, true)
	expectReach(t, clientA, 2222, true)
	expectReach(t, clientA, 2224, false) // media: another scope
	expectReach(t, clientA, 2225, false)

	expB := grantAs(t, a, src, clientB, time.Hour, "")
	want := withAccepts(t, withAccepts(t, drops, clientA, 2222, 2223), clientB, scopedPorts...)
	waitRules(t, time.Second, "public", want...)
	expectReach(t, clientB, 2225, true) // full access admits every scope
	expectExpiries(t, a, "public", clientB, map[uint16]int64{2222: expB, 2223: expB, 2224: expB, 2225: expB})

	// A second grant of clientA, for media, lasting longer.
	expM := grantAs(t, a, src, clientA, 2*time.Hour, "other", "media")
	withB := withAccepts(t, drops, clientB, scopedPorts...)
	waitRules(t, time.Second, "public", withAccepts(t, withB, clientA, 2222, 2223, 2224)...)
	expectExpiries(t, a, "public", clientA, map[uint16]int64{2222: expM, 2223: expG, 2224: expM})
	expectReach(t, clientA, 2224, true)

	// A re-knock of games, now the latest: only its ports change.
	expG = grantAs(t, a, src, clientA, 3*time.Hour, "friend", "games")
	idle(t, a)
	expectExpiries(t, a, "public", clientA, map[uint16]int64{2222: expG, 2223: expG, 2224: expM})

	// A shorter admin grant keeps the shared port's later expiry; not
	// persisted, its port closes again.
	expAdm := time.Now().Add(30 * time.Minute).Unix()
	undo, err := a.PrepareGrant(t.Context(), firewall.Grant{Prefix: mustPrefix(t, clientA), Expires: expAdm, Scopes: []string{"admin"}})
	if err != nil {
		t.Fatal(err)
	}
	equalRules(t, "runtime rules after PrepareGrant", richRules(t, "public", false), withAccepts(t, withB, clientA, 2222, 2223, 2224, 2225))
	expectExpiries(t, a, "public", clientA, map[uint16]int64{2222: expG, 2223: expG, 2224: expM, 2225: expAdm})
	undo()
	idle(t, a)
	waitRules(t, time.Second, "public", withAccepts(t, withB, clientA, 2222, 2223, 2224)...)
	expectExpiries(t, a, "public", clientA, map[uint16]int64{2222: expG, 2223: expG, 2224: expM})

	// The games grant goes: its port closes at once, the shared port
	// stays with the media grant's expiry.
	if gone, err := src.st.RevokeOwner("friend"); err != nil || len(gone) != 1 {
		t.Fatalf("RevokeOwner: %v %v", gone, err)
	}
	final := withAccepts(t, withB, clientA, 2222, 2224)
	waitRules(t, 2*time.Second, "public", final...)
	idle(t, a)
	wantA := map[uint16]int64{2222: expM, 2224: expM}
	expectExpiries(t, a, "public", clientA, wantA)
	expectReach(t, clientA, 2223, false)
	expectReach(t, clientA, 2222, true)

	// Restored from the store, per port, after a reload...
	fwcmd(t, "--reload")
	waitRules(t, 5*time.Second, "public", final...)
	idle(t, a)
	expectExpiries(t, a, "public", clientA, wantA)

	// ...and by a new backend on the same whitelist.
	a.Stop()
	b := startBackend(t, `{"zones":["public"],`+scopedConfig+`}`, src)
	equalRules(t, "runtime rules after a restart", richRules(t, "public", false), final)
	expectExpiries(t, b, "public", clientA, wantA)
	expectExpiries(t, b, "public", clientB, map[uint16]int64{2222: expB, 2223: expB, 2224: expB, 2225: expB})
	expectReach(t, clientA, 2224, true)
	expectReach(t, clientA, 2223, false)
}

// TestScopedPortTimeouts checks firewalld's own timers, with no backend
// running: a port two grants of a prefix open stays open until the later
// one expires, and a port only the short grant opens closes with it.
func TestScopedPortTimeouts(t *testing.T) {
	useZones(t, "work")
	src := openStore(t)
	a := startBackend(t, `{"zones":["work"],`+scopedConfig+`}`, src)
	drops := scopedDrops()
	// The long grant first: a last-knock-wins timeout would give the
	// shared port the short one.
	grantAs(t, a, src, clientA, time.Hour, "other", "media")
	grantAs(t, a, src, clientA, 5*time.Second, "friend", "games")
	// clientB's grant is the clock: it expires 5 s after clientA's games.
	grantAs(t, a, src, clientB, 10*time.Second, "friend", "games")
	idle(t, a)
	a.Stop() // from here on only firewalld's timers act
	waitRules(t, time.Second, "work", withAccepts(t, withAccepts(t, drops, clientB, 2222, 2223), clientA, 2222, 2223, 2224)...)
	// Before clientB's rules go, clientA's games port must have closed;
	// after, clientA's shared port must still be open.
	waitFor(t, 30*time.Second, func() (bool, string) {
		got := richRules(t, "work", false)
		return !slices.Contains(got, acceptText(t, clientB, tcp(2222))) && !slices.Contains(got, acceptText(t, clientB, tcp(2223))),
			"runtime rules of work:\n  " + strings.Join(got, "\n  ")
	})
	equalRules(t, "runtime rules once the short grants expired", richRules(t, "work", false),
		withAccepts(t, drops, clientA, 2222, 2224))
}

// TestScopedGrantRestore: a backend starting on a whitelist with grants
// of several scope sets per prefix gives each port the latest expiry of
// the grants that open it, and replaces a rule of the wrong port set.
func TestScopedGrantRestore(t *testing.T) {
	useZones(t, "work")
	src := openStore(t)
	now := time.Now().Unix()
	for _, g := range []struct {
		p      string
		ttl    int64
		scopes []string
	}{
		{clientA, 3600, []string{"games"}},
		{clientA, 7200, []string{"media"}},
		{clientA, 1800, []string{"admin", "games"}},
		{clientB, 900, nil},
		{"198.51.100.7", 600, []string{"media"}},
	} {
		if _, err := src.st.GrantWith(mustPrefix(t, g.p), now+g.ttl, store.GrantOptions{Scopes: g.scopes}); err != nil {
			t.Fatal(err)
		}
	}
	// Rules no grant explains: a network nobody holds, and a port of
	// another scope than 198.51.100.7's grant's.
	c := testClient(t)
	for _, stale := range []string{acceptText(t, "203.0.113.4/30", tcp(2225)), acceptText(t, "198.51.100.7", tcp(2223))} {
		if err := c.addRuntimeRule(context.Background(), "work", stale, 600); err != nil {
			t.Fatal(err)
		}
	}
	a := startBackend(t, `{"zones":["work"],`+scopedConfig+`}`, src)
	drops := scopedDrops()
	equalRules(t, "runtime rules after Start", richRules(t, "work", false),
		withAccepts(t, withAccepts(t, withAccepts(t, drops, clientA, scopedPorts...), clientB, scopedPorts...), "198.51.100.7", 2222, 2224))
	expectExpiries(t, a, "work", clientA, map[uint16]int64{2222: now + 7200, 2223: now + 3600, 2224: now + 7200, 2225: now + 1800})
	expectExpiries(t, a, "work", clientB, map[uint16]int64{2222: now + 900, 2223: now + 900, 2224: now + 900, 2225: now + 900})
}

// TestScopedKnockInFlightDuringRestore: a new configuration starting (a
// Caddy reload) between a knock's PrepareGrant and its store write keeps
// the ports the knock opened, though the store holds another grant of the
// same address that does not open them.
func TestScopedKnockInFlightDuringRestore(t *testing.T) {
	useZones(t, "work")
	src := openStore(t)
	config := `{"zones":["work"],` + scopedConfig + `}`
	a := startBackend(t, config, src)
	grantAs(t, a, src, clientA, time.Hour, "other", "media")
	expires := time.Now().Add(2 * time.Hour).Unix()
	undo, err := a.PrepareGrant(t.Context(), firewall.Grant{Prefix: mustPrefix(t, clientA), Expires: expires, Scopes: []string{"games"}})
	if err != nil {
		t.Fatal(err)
	}
	inFlight := withAccepts(t, scopedDrops(), clientA, 2222, 2223, 2224)
	waitRules(t, time.Second, "work", inFlight...)
	b := startBackend(t, strings.Replace(config, `"zones"`, `"queue_size":16,"zones"`, 1), src)
	equalRules(t, "runtime rules after the new configuration's restore", richRules(t, "work", false), inFlight)
	if _, err := src.st.GrantWith(mustPrefix(t, clientA), expires, store.GrantOptions{Owner: "friend", Scopes: []string{"games"}}); err != nil {
		undo()
		t.Fatal(err)
	}
	idle(t, a)
	idle(t, b)
	equalRules(t, "runtime rules once the knock is stored", richRules(t, "work", false), inFlight)
	a.Stop()
}

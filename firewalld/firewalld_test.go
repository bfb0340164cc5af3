package firewalld

// Tests against the real firewalld of the sandbox (see sandbox_test.go).
// Each test works in its own zone(s) and resets them before and after;
// only the zone "public" serves the sandbox's interface, so packet tests
// use it.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/caddy-knocker/knocker/firewall"
)

// useZones resets zones now and when the test ends.
func useZones(t *testing.T, zones ...string) {
	t.Helper()
	needSandbox(t)
	for _, z := range zones {
		resetZone(t, z)
	}
	// Registered first, so it runs after the test's own cleanups: an Backend
	// still running then would change rules under the next test.
	t.Cleanup(func() {
		if n := runningApps(); n > 0 {
			t.Errorf("%d firewalld Backend(s) still run on the sandbox bus after the test: a test must stop the Backends it starts", n)
		}
		for _, z := range zones {
			resetZone(t, z)
		}
	})
}

func sorted(list ...string) []string {
	out := slices.Clone(list)
	slices.Sort(out)
	return out
}

func equalRules(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, sorted(want...)) {
		t.Fatalf("%s:\ngot  %s\nwant %s", what, strings.Join(got, "\n     "), strings.Join(sorted(want...), "\n     "))
	}
}

// waitRules polls until zone's runtime rich rules are exactly want.
func waitRules(t *testing.T, timeout time.Duration, zone string, want ...string) {
	t.Helper()
	want = sorted(want...)
	waitFor(t, timeout, func() (bool, string) {
		got := richRules(t, zone, false)
		return slices.Equal(got, want), "runtime rules of " + zone + ":\n  " + strings.Join(got, "\n  ") +
			"\nwant\n  " + strings.Join(want, "\n  ")
	})
}

const (
	dropV4 = `rule priority="-27001" family="ipv4" port port="2222" protocol="tcp" drop`
	dropV6 = `rule priority="-27001" family="ipv6" port port="2222" protocol="tcp" drop`
)

// TestCanonicalForm checks that the text Knocker builds is exactly what
// firewalld prints back, for every kind of rule it writes, so that
// listings can be compared by string.
func TestCanonicalForm(t *testing.T) {
	useZones(t, "block")
	conn, err := dialSystemBus()
	if err != nil {
		t.Fatal(err)
	}
	c := &client{conn: conn}
	defer c.close()
	ctx := t.Context()
	ssh, dns := tcp(22), Port{Number: 53, Protocol: "udp"}
	var rules []richRule
	rules = append(rules, blockRules([]Port{ssh, dns}, []netip.Prefix{pfx("0.0.0.0/0"), pfx("::/0"), pfx("203.0.113.0/24"), pfx("2001:db8::/32"), pfx("198.51.100.7/32")}, "drop")...)
	rules = append(rules, blockRules([]Port{ssh}, []netip.Prefix{pfx("0.0.0.0/0"), pfx("2001:db8:1::/48")}, "reject")...)
	for _, p := range []string{"203.0.113.5", "2001:db8::5", "203.0.113.4/30", "2001:db8:a:b::/64", "10.0.0.0/8"} {
		rules = append(rules, acceptRules(mustPrefix(t, p), []Port{ssh, dns})...)
	}
	path, err := c.permanentZone(ctx, "block")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, r := range rules {
		s := r.String()
		want = append(want, s)
		if err := c.addPermanentRule(ctx, path, s); err != nil {
			t.Fatalf("permanent %s: %v", s, err)
		}
		if err := c.addRuntimeRule(ctx, "block", s, 300); err != nil {
			t.Fatalf("runtime %s: %v", s, err)
		}
	}
	perm, err := c.permanentRules(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	runtime, err := c.runtimeRules(ctx, "block")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(perm)
	slices.Sort(runtime)
	equalRules(t, "permanent listing", perm, want)
	equalRules(t, "runtime listing", runtime, want)
	// firewall-cmd, firewalld's own client, prints the same.
	cmdList := strings.Split(fwcmd(t, "--zone=block", "--list-rich-rules"), "\n")
	slices.Sort(cmdList)
	equalRules(t, "firewall-cmd --list-rich-rules", cmdList, want)
	for _, s := range runtime {
		if _, ok := parseKnockerRule(s); !ok {
			t.Errorf("firewalld's listing not recognised as Knocker's: %s", s)
		}
	}
	// The errors Knocker relies on come back typed.
	if err := c.addRuntimeRule(ctx, "block", want[0], 300); !errors.Is(err, ErrAlreadyEnabled) {
		t.Errorf("second add: %v, want ALREADY_ENABLED", err)
	}
	if err := c.removeRuntimeRule(ctx, "block", acceptText(t, "192.0.2.1", ssh)); !errors.Is(err, ErrNotEnabled) {
		t.Errorf("remove of an absent rule: %v, want NOT_ENABLED", err)
	}
	if _, err := c.runtimeRules(ctx, "no-such-zone"); !errors.Is(err, ErrInvalidZone) {
		t.Errorf("unknown zone: %v, want INVALID_ZONE", err)
	}
	v, err := c.version(ctx)
	t.Logf("firewalld %s", v)
	if err != nil || v == "" {
		t.Errorf("version: %q %v", v, err)
	}
}

// TestStartProtects checks the default rules after Start (both families,
// per port, in the default zone), the state file, and with real packets
// that a monitored port is closed even though the zone opens it while an
// unmonitored port the zone opens (ssh) stays reachable.
func TestStartProtects(t *testing.T) {
	useZones(t, "public")
	fwcmd(t, "--zone=public", "--add-port=2222/tcp") // the zone itself opens the monitored port
	t.Cleanup(func() { fwcmd(t, "--zone=public", "--remove-port=2222/tcp") })
	startListener(t, 22, 2222)
	expectReach(t, clientA, 2222, true)

	src := openStore(t)
	a := startBackend(t, `{"ports":["2222/tcp","2223/udp"]}`, src) // zone: the default one
	want := []string{
		dropV4, dropV6,
		`rule priority="-27001" family="ipv4" port port="2223" protocol="udp" drop`,
		`rule priority="-27001" family="ipv6" port port="2223" protocol="udp" drop`,
	}
	equalRules(t, "permanent rules", richRules(t, "public", true), want)
	equalRules(t, "runtime rules", richRules(t, "public", false), want)
	if err := a.Ready(); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	b, err := os.ReadFile(strings.TrimSuffix(src.path, ".json") + ".firewalld.json")
	if err != nil {
		t.Fatal(err)
	}
	var st ruleState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	equalRules(t, "state file", st.Zones["public"], want)

	expectReach(t, clientA, 2222, false)
	expectReach(t, clientA, 22, true)
}

// TestGrantOpensPorts follows grants through their life with real
// packets: closed before, open after PrepareGrant+Grant (only for the
// granted source), closed again after revocation and after expiry.
func TestGrantOpensPorts(t *testing.T) {
	useZones(t, "public")
	startListener(t, 2222)
	src := openStore(t)
	a := startBackend(t, `{"zones":["public"],"ports":["2222/tcp"]}`, src)
	expectReach(t, clientA, 2222, false)

	grant(t, a, src, clientA, time.Hour)
	grant(t, a, src, "2001:db8::5", time.Hour)
	waitRules(t, time.Second, "public", dropV4, dropV6,
		acceptText(t, clientA, tcp(2222)), acceptText(t, "2001:db8::5", tcp(2222)))
	expectReach(t, clientA, 2222, true)
	expectReach(t, clientB, 2222, false)

	// A network: both clients; it expires after a few seconds.
	grant(t, a, src, "203.0.113.4/30", 3*time.Second)
	if got := richRules(t, "public", false); !slices.Contains(got, acceptText(t, "203.0.113.4/30", tcp(2222))) {
		t.Fatalf("CIDR accept rule missing: %v", got)
	}
	expectReach(t, clientB, 2222, true)
	expectReach(t, clientB, 2222, false) // expired
	waitRules(t, 5*time.Second, "public", dropV4, dropV6,
		acceptText(t, clientA, tcp(2222)), acceptText(t, "2001:db8::5", tcp(2222)))

	// Revocation closes at once, not at firewalld's timeout.
	if _, err := src.st.Revoke(mustPrefix(t, clientA)); err != nil {
		t.Fatal(err)
	}
	waitRules(t, 2*time.Second, "public", dropV4, dropV6, acceptText(t, "2001:db8::5", tcp(2222)))
	expectReach(t, clientA, 2222, false)
}

// TestReloadAndRestartRestore checks that every grant's rules are back
// within 2 s after firewall-cmd --reload, after a firewalld restart (same
// bus) and after a restart of the whole sandbox (the bus goes away too,
// and firewalld's permanent configuration is reset).
func TestReloadAndRestartRestore(t *testing.T) {
	sb := needSandbox(t)
	useZones(t, "work")
	src := openStore(t)
	a := startBackend(t, `{"zones":["work"],"ports":["2222/tcp"]}`, src)
	grants := []string{clientA, "2001:db8::5", "203.0.113.4/30"}
	want := []string{dropV4, dropV6}
	for _, g := range grants {
		grant(t, a, src, g, time.Hour)
		want = append(want, acceptText(t, g, tcp(2222)))
	}
	waitRules(t, time.Second, "work", want...)

	fwcmd(t, "--reload")
	began := time.Now()
	if got := richRules(t, "work", false); len(got) != 2 {
		t.Logf("right after the reload: %d rules (the reload dropped the grants)", len(got))
	}
	waitRules(t, 2*time.Second, "work", want...)
	t.Logf("after firewall-cmd --reload: all rules back in %v", time.Since(began))

	if out, err := sb.run("restart-firewalld"); err != nil {
		t.Fatalf("restarting firewalld: %v\n%s", err, out)
	}
	began = time.Now()
	waitRules(t, 2*time.Second, "work", want...)
	t.Logf("after a firewalld restart: all rules back in %v", time.Since(began))

	if out, err := sb.run("restart"); err != nil {
		t.Fatalf("restarting the sandbox: %v\n%s", err, out)
	}
	began = time.Now()
	waitRules(t, 2*time.Second, "work", want...)
	t.Logf("after a sandbox restart (new bus, fresh permanent config): all rules back in %v", time.Since(began))
	equalRules(t, "permanent rules", richRules(t, "work", true), []string{dropV4, dropV6})
	waitFor(t, 2*time.Second, func() (bool, string) {
		err := a.Ready()
		return err == nil, "Ready: " + errString(err)
	})
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// TestCaddyReloadOverlap simulates a Caddy config reload: a second Backend
// starts on the same store while the first still runs, knocks arrive on
// both, then the first stops. No rule may be lost or duplicated.
func TestCaddyReloadOverlap(t *testing.T) {
	useZones(t, "public") // active, so its rules reach nftables
	src := openStore(t)
	const config = `{"zones":["public"],"ports":["2222/tcp"]}`
	oldBackend := startBackend(t, config, src)
	grant(t, oldBackend, src, "198.51.100.1", time.Hour)

	// The new Backend finds the old one's rules right: it removes nothing,
	// not even for a moment.
	removed := watchRemovals(t)
	newBackend := startBackend(t, config, src)
	if got := removed(); len(got) > 0 {
		t.Errorf("the new Backend's Start removed rules: %v", got)
	}
	grant(t, newBackend, src, "198.51.100.2", time.Hour)
	grant(t, oldBackend, src, "198.51.100.3", time.Hour) // an old handler still serving
	grant(t, oldBackend, src, "198.51.100.1", 2*time.Hour)
	if err := oldBackend.Stop(); err != nil {
		t.Fatal(err)
	}
	want := []string{dropV4, dropV6}
	for _, g := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3"} {
		want = append(want, acceptText(t, g, tcp(2222)))
	}
	idle(t, newBackend)
	waitRules(t, time.Second, "public", want...)
	equalRules(t, "permanent rules", richRules(t, "public", true), []string{dropV4, dropV6})
	// Exactly one nftables rule per accept (firewalld's listing is a set,
	// the kernel's ruleset is not).
	out, err := exec.Command("ip", "netns", "exec", needSandbox(t).netns, "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	for _, g := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3"} {
		if n := strings.Count(string(out), "ip saddr "+g+" tcp dport 2222"); n != 1 {
			t.Errorf("%s: %d nftables accept rules, want 1", g, n)
		}
	}

	// The new Backend alone follows the store and firewalld now.
	if _, err := src.st.Revoke(mustPrefix(t, "198.51.100.3")); err != nil {
		t.Fatal(err)
	}
	want = want[:len(want)-1]
	waitRules(t, 2*time.Second, "public", want...)
	fwcmd(t, "--reload")
	waitRules(t, 2*time.Second, "public", want...)
	if err := newBackend.Ready(); err != nil {
		t.Fatal(err)
	}
}

// watchRemovals starts collecting firewalld's RichRuleRemoved signals; the
// returned func stops and returns the removed rules.
func watchRemovals(t *testing.T) func() []string {
	t.Helper()
	conn, err := dialSystemBus()
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.AddMatchSignal(dbus.WithMatchInterface(ifaceZone), dbus.WithMatchMember("RichRuleRemoved")); err != nil {
		t.Fatal(err)
	}
	ch := make(chan *dbus.Signal, 1024)
	conn.Signal(ch)
	// A round trip after the match is in place: signals sent before
	// firewalld answers it are ordered before the answer.
	testClient(t).runtimeRules(t.Context(), "public")
	return func() []string {
		testClient(t).runtimeRules(t.Context(), "public") // flush
		time.Sleep(100 * time.Millisecond)
		conn.Close()
		var rules []string
		for sig := range ch {
			if len(sig.Body) == 2 {
				rules = append(rules, fmt.Sprint(sig.Body[1]))
			}
		}
		return rules
	}
}

// TestPruneOnConfigChange changes ports, action, sources and zones between
// Starts: Knocker's old rules go, a user's rules stay, including one that
// looks like Knocker's while the state file says it is not.
func TestPruneOnConfigChange(t *testing.T) {
	useZones(t, "internal", "dmz")
	src := openStore(t)
	check := func(what, zone string, perm []string, accepts ...string) {
		t.Helper()
		equalRules(t, what+": permanent "+zone, richRules(t, zone, true), perm)
		equalRules(t, what+": runtime "+zone, richRules(t, zone, false), append(slices.Clone(perm), accepts...))
	}
	rule := func(family, source, port, action string) string {
		r := `rule priority="-27001" family="` + family + `"`
		if source != "" {
			r += ` source address="` + source + `"`
		}
		return r + ` port port="` + port + `" protocol="tcp" ` + action
	}
	const guest = "198.51.100.9"

	first := startBackend(t, `{"zones":["internal"],"ports":["2222/tcp","2223/tcp"],"monitor":["203.0.113.0/24","::/0"]}`, src)
	grant(t, first, src, guest, time.Hour)
	first.Stop()
	// The user's rules, added once the state file exists.
	userRule := `rule family="ipv4" source address="198.51.100.0/24" port port="2222" protocol="tcp" accept`
	lookalike := `rule priority="-27001" family="ipv4" port port="9999" protocol="tcp" drop`
	for _, r := range []string{userRule, lookalike} {
		fwcmd(t, "--permanent", "--zone=internal", "--add-rich-rule="+r)
		fwcmd(t, "--zone=internal", "--add-rich-rule="+r)
	}
	check("first config", "internal", []string{userRule, lookalike,
		rule("ipv4", "203.0.113.0/24", "2222", "drop"), rule("ipv4", "203.0.113.0/24", "2223", "drop"),
		rule("ipv6", "", "2222", "drop"), rule("ipv6", "", "2223", "drop"),
	}, acceptText(t, guest, tcp(2222)), acceptText(t, guest, tcp(2223)))

	// Another port set, action and monitor: the old rules and the grant's
	// accept on the dropped port go.
	second := startBackend(t, `{"zones":["internal"],"ports":["2223/tcp"],"action":"reject"}`, src)
	second.Stop()
	check("second config", "internal", []string{userRule, lookalike,
		rule("ipv4", "", "2223", "reject"), rule("ipv6", "", "2223", "reject"),
	}, acceptText(t, guest, tcp(2223)))

	// Another zone: the zone left behind is cleaned up.
	third := startBackend(t, `{"zones":["dmz"],"ports":["2223/tcp"],"action":"reject"}`, src)
	third.Stop()
	check("third config", "internal", []string{userRule, lookalike})
	dmz := []string{rule("ipv4", "", "2223", "reject"), rule("ipv6", "", "2223", "reject")}
	check("third config", "dmz", dmz, acceptText(t, guest, tcp(2223)))

	// Without the state file only Knocker's exact priority and shape
	// identify its rules: the look-alike goes, the user's rule stays, and
	// dmz, which Knocker no longer knows it protected, is left alone.
	if err := os.Remove(strings.TrimSuffix(src.path, ".json") + ".firewalld.json"); err != nil {
		t.Fatal(err)
	}
	fourth := startBackend(t, `{"zones":["internal"],"ports":["2224/tcp"]}`, src)
	fourth.Stop()
	check("without state file", "internal", []string{userRule,
		rule("ipv4", "", "2224", "drop"), rule("ipv6", "", "2224", "drop"),
	}, acceptText(t, guest, tcp(2224)))
	check("without state file", "dmz", dmz, acceptText(t, guest, tcp(2223)))
}

// TestRollbackWhenZoneVanishes makes firewalld refuse a grant half-way (a
// protected zone deleted under Knocker): the rules already added are rolled
// back, a failed re-knock keeps the earlier grant open, and Ready fails.
func TestRollbackWhenZoneVanishes(t *testing.T) {
	useZones(t, "external")
	fwcmd(t, "--permanent", "--new-zone=kgone")
	t.Cleanup(func() {
		exec.Command("firewall-cmd", "--permanent", "--delete-zone=kgone").Run()
		exec.Command("firewall-cmd", "--reload").Run()
	})
	fwcmd(t, "--reload")
	src := openStore(t)
	a := startBackend(t, `{"zones":["external","kgone"],"ports":["2222/tcp","2223/tcp"]}`, src)
	grant(t, a, src, "198.51.100.1", time.Hour)
	old := []string{acceptText(t, "198.51.100.1", tcp(2222)), acceptText(t, "198.51.100.1", tcp(2223))}

	fwcmd(t, "--permanent", "--delete-zone=kgone")
	fwcmd(t, "--reload")
	idle(t, a) // the resync after the reload, which fails for kgone

	expires := time.Now().Add(time.Hour).Unix()
	_, err := a.PrepareGrant(t.Context(), firewall.Grant{Prefix: mustPrefix(t, "198.51.100.2"), Expires: expires})
	if !errors.Is(err, ErrInvalidZone) || errors.Is(err, ErrBusy) {
		t.Fatalf("PrepareGrant with a vanished zone: %v, want INVALID_ZONE", err)
	}
	t.Logf("PrepareGrant: %v", err)
	_, err = a.PrepareGrant(t.Context(), firewall.Grant{Prefix: mustPrefix(t, "198.51.100.1"), Expires: expires + 3600})
	if !errors.Is(err, ErrInvalidZone) {
		t.Fatalf("re-knock with a vanished zone: %v, want INVALID_ZONE", err)
	}
	// external keeps the defaults and the first grant's rules, nothing of
	// the refused knock.
	waitRules(t, time.Second, "external", append([]string{
		`rule priority="-27001" family="ipv4" port port="2222" protocol="tcp" drop`,
		`rule priority="-27001" family="ipv6" port port="2222" protocol="tcp" drop`,
		`rule priority="-27001" family="ipv4" port port="2223" protocol="tcp" drop`,
		`rule priority="-27001" family="ipv6" port port="2223" protocol="tcp" drop`,
	}, old...)...)
	if err := a.Ready(); err == nil || !strings.Contains(err.Error(), `zone "kgone"`) {
		t.Fatalf("Ready = %v, want a failure naming kgone", err)
	} else {
		t.Logf("Ready: %v", err)
	}
}

// TestBusy saturates the mutation queue: PrepareGrant fails at once with
// ErrBusy, and works again once the queue drains.
func TestBusy(t *testing.T) {
	useZones(t, "dmz")
	src := openStore(t)
	a := startBackend(t, `{"zones":["dmz"],"ports":["2222/tcp"],"queue_size":2}`, src)
	r := a.reconciler()
	release := make(chan struct{})
	running := make(chan struct{})
	var wg sync.WaitGroup
	block := func(signal bool) {
		defer wg.Done()
		r.submit(context.Background(), func(context.Context) error {
			if signal {
				close(running)
			}
			<-release
			return nil
		})
	}
	wg.Add(1)
	go block(true)
	<-running // the worker is busy
	for range 2 {
		wg.Add(1)
		go block(false)
	}
	waitFor(t, 5*time.Second, func() (bool, string) { return len(r.jobs) == 2, "queue not full yet" })

	began := time.Now()
	_, err := a.PrepareGrant(t.Context(), firewall.Grant{Prefix: mustPrefix(t, clientA), Expires: time.Now().Add(time.Hour).Unix()})
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("PrepareGrant on a full queue: %v, want ErrBusy", err)
	}
	t.Logf("%v (after %v)", err, time.Since(began))
	close(release)
	wg.Wait()
	grant(t, a, src, clientA, time.Hour)
}

// TestReadyDetectsTampering removes a default rule behind Knocker's back.
func TestReadyDetectsTampering(t *testing.T) {
	useZones(t, "trusted")
	src := openStore(t)
	a := startBackend(t, `{"zones":["trusted"],"ports":["2222/tcp"]}`, src)
	if err := a.Ready(); err != nil {
		t.Fatal(err)
	}
	fwcmd(t, "--zone=trusted", "--remove-rich-rule="+dropV6)
	err := a.Ready()
	if err == nil || !strings.Contains(err.Error(), "default rule missing") || !strings.Contains(err.Error(), dropV6) {
		t.Fatalf("Ready after tampering = %v", err)
	}
	t.Logf("Ready: %v", err)
	fwcmd(t, "--reload") // the permanent rule comes back
	waitFor(t, 2*time.Second, func() (bool, string) {
		err := a.Ready()
		return err == nil, "Ready after reload: " + errString(err)
	})
}

// TestGrantsWithoutPrepareGrant covers grants that reach the store without
// the knock path: loaded from disk before Start, or written directly.
func TestGrantsWithoutPrepareGrant(t *testing.T) {
	useZones(t, "dmz")
	src := openStore(t)
	if _, err := src.st.Grant(mustPrefix(t, "198.51.100.1"), time.Now().Add(time.Hour).Unix()); err != nil {
		t.Fatal(err)
	}
	// A leftover accept of a grant that no longer exists is pruned.
	stale := acceptText(t, "198.51.100.66", tcp(2222))
	fwcmd(t, "--zone=dmz", "--add-rich-rule="+stale, "--timeout=600")
	a := startBackend(t, `{"zones":["dmz"],"ports":["2222/tcp"]}`, src)
	waitRules(t, time.Second, "dmz", dropV4, dropV6, acceptText(t, "198.51.100.1", tcp(2222)))

	if _, err := src.st.Grant(mustPrefix(t, "198.51.100.2"), time.Now().Add(time.Hour).Unix()); err != nil {
		t.Fatal(err)
	}
	waitRules(t, 2*time.Second, "dmz", dropV4, dropV6,
		acceptText(t, "198.51.100.1", tcp(2222)), acceptText(t, "198.51.100.2", tcp(2222)))
	if _, err := src.st.Revoke(mustPrefix(t, "198.51.100.1")); err != nil {
		t.Fatal(err)
	}
	waitRules(t, 2*time.Second, "dmz", dropV4, dropV6, acceptText(t, "198.51.100.2", tcp(2222)))
	_ = a
}

// TestUndo: when the grant cannot be persisted, undo closes a new grant's
// ports and puts a re-knocked grant back to its stored expiry.
func TestUndo(t *testing.T) {
	useZones(t, "dmz")
	src := openStore(t)
	a := startBackend(t, `{"zones":["dmz"],"ports":["2222/tcp"]}`, src)
	undo, err := a.PrepareGrant(t.Context(), firewall.Grant{Prefix: mustPrefix(t, "198.51.100.1"), Expires: time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	waitRules(t, time.Second, "dmz", dropV4, dropV6, acceptText(t, "198.51.100.1", tcp(2222)))
	undo()
	undo() // idempotent
	waitRules(t, 2*time.Second, "dmz", dropV4, dropV6)

	grant(t, a, src, "198.51.100.2", time.Hour)
	undo, err = a.PrepareGrant(t.Context(), firewall.Grant{Prefix: mustPrefix(t, "198.51.100.2"), Expires: time.Now().Add(2 * time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	undo()
	idle(t, a)
	waitRules(t, time.Second, "dmz", dropV4, dropV6, acceptText(t, "198.51.100.2", tcp(2222)))
	exp := time.Now().Add(time.Hour).Unix()
	sh := a.reconciler().sh
	sh.mu.Lock()
	placed := sh.placementsOf(mustPrefix(t, "198.51.100.2"))
	sh.mu.Unlock()
	for at, e := range placed {
		if e < exp-5 || e > exp+5 {
			t.Errorf("after undo %s expires at %d, want the stored %d", at.rule, e, exp)
		}
	}
	if len(placed) != 1 {
		t.Errorf("placed rules: %v", placed)
	}
}

// TestStaleTimerAfterReload covers a firewalld 1.x quirk: a timed rule's
// timer survives a reload, so a rule re-added after the reload and then
// extended by a re-knock would vanish when the stale timer fires. Knocker
// notices (RichRuleRemoved) and re-adds it.
func TestStaleTimerAfterReload(t *testing.T) {
	useZones(t, "work")
	src := openStore(t)
	a := startBackend(t, `{"zones":["work"],"ports":["2222/tcp"]}`, src)
	grant(t, a, src, "198.51.100.1", 5*time.Second)
	staleAt := time.Now().Add(5 * time.Second)
	fwcmd(t, "--reload")
	want := []string{dropV4, dropV6, acceptText(t, "198.51.100.1", tcp(2222))}
	waitRules(t, 2*time.Second, "work", want...)
	grant(t, a, src, "198.51.100.1", time.Hour) // re-knock: remove + add
	waitFor(t, 10*time.Second, func() (bool, string) {
		return time.Now().After(staleAt.Add(1500 * time.Millisecond)), ""
	})
	waitRules(t, 2*time.Second, "work", want...)
}

// TestStartFailsWithoutFirewalld: a bus without firewalld.
func TestStartFailsWithoutFirewalld(t *testing.T) {
	needSandbox(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "bus.conf")
	addr := "unix:path=" + filepath.Join(dir, "bus")
	os.WriteFile(conf, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>`+addr+`</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="root"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/></policy>
</busconfig>`), 0o600)
	daemon := exec.Command("dbus-daemon", "--config-file="+conf, "--nofork", "--nopidfile")
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { daemon.Process.Kill(); daemon.Wait() })
	waitFor(t, 5*time.Second, func() (bool, string) {
		_, err := os.Stat(filepath.Join(dir, "bus"))
		return err == nil, "dbus-daemon did not create its socket"
	})
	a, err := provision(t, `{"ports":["2222/tcp"]}`)
	if err != nil {
		t.Fatal(err)
	}
	a.bus = addr
	err = a.Start(openStore(t).whitelist())
	if err == nil {
		a.Stop()
		t.Fatal("Start succeeded without firewalld")
	}
	if !strings.Contains(err.Error(), "firewalld is not running (D-Bus name org.fedoraproject.FirewallD1 has no owner)") || !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Start: %v", err)
	}
	t.Logf("Start: %v", err)
	if _, err := a.PrepareGrant(t.Context(), firewall.Grant{Prefix: mustPrefix(t, clientA), Expires: time.Now().Add(time.Hour).Unix()}); !errors.Is(err, ErrStopped) {
		t.Fatalf("PrepareGrant after a failed Start: %v", err)
	}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

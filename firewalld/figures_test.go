package firewalld

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/caddy-knocker/knocker/firewall"
)

// TestFigures measures, side by side in one run, against the sandbox's
// firewalld:
//
//   - knock latency: PrepareGrant (one port, over D-Bus) against the same
//     rule added by running firewall-cmd (the Python Knocker's way), median of n
//     each, interleaved;
//   - the time from a firewalld reload to every rule back, at m active
//     grants.
//
// It logs figures and asserts nothing about time. By default it runs small
// (n=5, m=20) so it cannot rot; the real figures need
//
//	KNOCKER_FIREWALLD_FIGURES=1 go test -run TestFigures -v ./firewalld/
//
// (n=200, m=1000; a few minutes, mostly firewall-cmd's start-up).
func TestFigures(t *testing.T) {
	n, m := 5, 20
	if os.Getenv("KNOCKER_FIREWALLD_FIGURES") == "1" {
		n, m = 200, 1000
	}
	useZones(t, "work")
	src := openStore(t)
	a := startBackend(t, `{"zones":["work"],"ports":["2222/tcp"]}`, src)
	v, _ := testClient(t).version(t.Context())

	var viaDBus, viaCmd []time.Duration
	for i := range n {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 32)
		expires := time.Now().Add(time.Hour).Unix()
		began := time.Now()
		if _, err := a.PrepareGrant(t.Context(), firewall.Grant{Prefix: p, Expires: expires}); err != nil {
			t.Fatal(err)
		}
		viaDBus = append(viaDBus, time.Since(began))

		rule := acceptRules(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)}), 32), []Port{tcp(2222)})[0]
		began = time.Now()
		out, err := exec.Command("firewall-cmd", "--zone=work", "--add-rich-rule="+rule.String(), "--timeout=3600").CombinedOutput()
		if err != nil {
			t.Fatalf("firewall-cmd: %v\n%s", err, out)
		}
		viaCmd = append(viaCmd, time.Since(began))
	}
	t.Logf("firewalld %s, knock latency, median of %d: PrepareGrant via D-Bus %v, firewall-cmd subprocess %v",
		v, n, median(viaDBus), median(viaCmd))

	// m active grants; the running Backend opens their rules from the store's
	// events (as for grants loaded from disk).
	resetZone(t, "work")
	fwcmd(t, "--reload")
	idle(t, a)
	expires := time.Now().Add(time.Hour).Unix()
	want := []string{dropV4, dropV6}
	for i := range m {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 3, byte(i >> 8), byte(i)}), 32)
		if _, err := src.st.Grant(p, expires); err != nil {
			t.Fatal(err)
		}
		want = append(want, acceptRules(p, []Port{tcp(2222)})[0].String())
	}
	slices.Sort(want)
	began := time.Now()
	waitRulesQuiet(t, 5*time.Minute, "work", want)
	t.Logf("%d grants opened from store events in %v", m, time.Since(began))

	began = time.Now()
	if err := testClient(t).reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	reloaded := time.Since(began)
	waitRulesQuiet(t, 5*time.Minute, "work", want)
	t.Logf("firewalld %s, reload at %d active grants: reload call %v, all %d rules back %v after the reload began",
		v, m, reloaded, len(want), time.Since(began))
}

// waitRulesQuiet is waitRules without the long listing on failure, polled
// gently so as not to slow firewalld down.
func waitRulesQuiet(t *testing.T, timeout time.Duration, zone string, want []string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := richRules(t, zone, false)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d runtime rules, want %d", zone, len(got), len(want))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func median(d []time.Duration) string {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s) == 0 {
		return "n/a"
	}
	return fmt.Sprint(s[len(s)/2].Round(10 * time.Microsecond))
}

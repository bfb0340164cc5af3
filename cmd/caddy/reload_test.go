package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-knocker/knocker/internal/testutil"
)

const (
	reloadStableKey = "reload-stable-key-0123456789abcdef"
	reloadCount     = 50
	reloadWarm      = 5 // reloads before the baseline is taken
)

// reloadConfig is the i-th config of the storm. The stable key and the
// listeners stay; everything else alternates with different periods so that
// consecutive configs always differ.
func reloadConfig(whitelist string, i int) string {
	keys := []testutil.Key{{Name: "stable", Secret: reloadStableKey, MaxTTL: "30d"}}
	for k := 0; k < 3; k++ {
		if (i+k)%2 == 0 { // extra keys come and go
			keys = append(keys, testutil.Key{
				Name:   fmt.Sprintf("extra%d", k),
				Secret: fmt.Sprintf("reload-extra-key-%d-0123456789abcdef", k),
				MaxTTL: fmt.Sprintf("%dh", k+1),
			})
		}
	}
	deny := 401
	if i%2 == 1 {
		deny = 403
	}
	gate := fmt.Sprintf("\t\tdeny_status %d\n", deny)
	if i%3 == 0 {
		gate += "\t\texclude /public\n"
	}
	if i%4 < 2 {
		gate += "\t\talways_allow 192.0.2.0/24\n" // unrelated to every test address
	}
	verify := ""
	if i%3 == 1 {
		verify = "\t\texclude /public\n\t\talways_allow 198.51.100.0/24\n"
	}
	global := testutil.Preamble{
		Admin:          reloadAdmin(),
		DefaultBind:    "127.0.0.1",
		TrustedProxies: "127.0.0.1/32",
		Knocker: &testutil.Knocker{
			WhitelistFile: whitelist,
			MaxEntries:    100000 + 1000*(i%5),
			Keys:          keys,
			Extra:         fmt.Sprintf("rate_limit {\n\t\t\twindow %ds\n\t\t\tsuccess %d\n\t\t\tfailure %d\n\t\t}", 30+i%4*10, 5+i%3, 10+i%7),
		},
	}
	return global.String() + fmt.Sprintf(`http://:%d {
	knock {
%s	}
}
http://:%d {
	knocker {
%s	}
	respond "admitted"
}
`, ports.reloadKnock, verify, ports.reloadGate, gate)
}

// caddyResources reads the goroutine count (admin pprof) and open fds of pid.
func caddyResources(t *testing.T, admin *http.Client, pid int) (goroutines, fds int) {
	t.Helper()
	resp, err := admin.Get("http://" + reloadAdmin() + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	resp.Body.Close()
	n, ok := strings.CutPrefix(strings.TrimSpace(line), "goroutine profile: total ")
	if err != nil || !ok {
		t.Fatalf("goroutine profile: %q %v", line, err)
	}
	if goroutines, err = strconv.Atoi(n); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return goroutines, len(entries)
}

// Tolerances for resource growth across the 45 measured reloads. Goroutine and
// fd counts of an idle Caddy are not exact: a keep-alive or admin connection
// still being torn down, a timer goroutine of the HTTP server or the knocker's
// sweeper mid-run can be in or out of one sample. A leak per reload would add
// at least one per reload (45+), so +10 separates noise from a leak.
const (
	goroutineTolerance = 10
	fdTolerance        = 10
)

// TestReloadStorm: 50 reloads with changing configs while
// verifiers and knockers run. Zero wrong decisions, zero grants lost, no
// goroutine or fd growth.
func TestReloadStorm(t *testing.T) {
	bin := caddyBinary(t)
	home, dir := t.TempDir(), t.TempDir()
	whitelist := filepath.Join(dir, "whitelist.json")
	caddy := startCaddy(t, bin, home, writeConfig(t, dir, "reload.Caddyfile", reloadConfig(whitelist, 0)))
	caddy.waitUp(t, siteURL(ports.reloadKnock)+"/health", siteURL(ports.reloadGate)+"/")
	admin := &http.Client{Timeout: 60 * time.Second}

	// Grants made before the storm (long TTLs), and addresses never granted.
	setup := loadClient()
	var granted, never []string
	for i := 0; i < 32; i++ {
		ip := fmt.Sprintf("10.1.0.%d", i+1)
		if code, _, err := knockAs(setup, siteURL(ports.reloadKnock), reloadStableKey, ip, 86400); err != nil || code != http.StatusOK {
			t.Fatalf("pre-storm knock for %s: %d %v", ip, code, err)
		}
		granted = append(granted, ip)
		never = append(never, fmt.Sprintf("10.66.0.%d", i+1))
	}
	setup.CloseIdleConnections()

	var (
		verifyReqs, wrong, connErrs, knocks atomic.Int64
		mu                                  sync.Mutex
		wrongLog                            []string
		connLog                             []string
		grants                              = map[string]int64{} // ip -> acknowledged expires_at
		knockOther                          []string
		nextKnock                           atomic.Int64
	)
	connErr := func(what string, err error) {
		connErrs.Add(1)
		mu.Lock()
		if len(connLog) < 5 {
			connLog = append(connLog, what+": "+err.Error())
		}
		mu.Unlock()
	}
	report := func(format string, args ...any) {
		wrong.Add(1)
		mu.Lock()
		if len(wrongLog) < 20 {
			wrongLog = append(wrongLog, fmt.Sprintf(format, args...))
		}
		mu.Unlock()
	}
	// startLoad runs 6 verifiers and 4 knockers until the returned func is
	// called; that func waits for them and closes their connections.
	startLoad := func() func() {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		client := loadClient()
		for v := 0; v < 6; v++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := v; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					allowed := n%2 == 0
					ip := never[n/2%len(never)]
					if allowed {
						ip = granted[n/2%len(granted)]
					}
					url := siteURL(ports.reloadGate) + "/app/page"
					if n%3 == 0 {
						url = siteURL(ports.reloadKnock) + "/verify"
					}
					code, _, err := getAs(client, url, ip)
					verifyReqs.Add(1)
					switch {
					case err != nil:
						connErr(url, err)
					case allowed && code != http.StatusOK:
						report("whitelisted %s denied at %s: %d", ip, url, code)
					case !allowed && code == http.StatusOK:
						report("never-whitelisted %s allowed at %s", ip, url)
					case !allowed && code != http.StatusUnauthorized && code != http.StatusForbidden:
						report("never-whitelisted %s at %s: unexpected %d", ip, url, code)
					}
				}
			}()
		}
		for k := 0; k < 4; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					n := nextKnock.Add(1)
					ip := fmt.Sprintf("10.200.%d.%d", n/256, n%256)
					code, ans, err := knockAs(client, siteURL(ports.reloadKnock), reloadStableKey, ip, 86400+int(n))
					knocks.Add(1)
					if err != nil {
						connErr("knock", err)
					}
					mu.Lock()
					switch {
					case err != nil:
					case code == http.StatusOK:
						grants[ip] = ans.ExpiresAt
					default:
						knockOther = append(knockOther, fmt.Sprintf("%s: %d", ip, code))
					}
					mu.Unlock()
				}
			}()
		}
		return func() {
			close(stop)
			wg.Wait()
			client.CloseIdleConnections()
		}
	}
	reload := func(i int) {
		t.Helper()
		resp, err := admin.Post("http://"+reloadAdmin()+"/load", "text/caddyfile", strings.NewReader(reloadConfig(whitelist, i)))
		if err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b := new(strings.Builder)
			_, _ = bufio.NewReader(resp.Body).WriteTo(b)
			t.Fatalf("reload %d: %d %s", i, resp.StatusCode, b)
		}
	}
	// measure samples the idle process every 300 ms (bounded, 15 s) until
	// two consecutive samples agree (baseline) or it is at or below the
	// limits (final), and returns the last sample.
	measure := func(settled func(g, f, pg, pf int) bool) (int, int) {
		pg, pf := -1, -1
		deadline := time.Now().Add(15 * time.Second)
		for {
			admin.CloseIdleConnections()
			time.Sleep(300 * time.Millisecond)
			g, f := caddyResources(t, admin, caddy.cmd.Process.Pid)
			if settled(g, f, pg, pf) || time.Now().After(deadline) {
				return g, f
			}
			pg, pf = g, f
		}
	}

	stopLoad := startLoad()
	for i := 1; i <= reloadWarm; i++ {
		reload(i)
	}
	stopLoad()
	g0, f0 := measure(func(g, f, pg, pf int) bool { return g == pg && f == pf })
	stopLoad = startLoad()
	for i := reloadWarm + 1; i <= reloadCount; i++ {
		reload(i)
		time.Sleep(50 * time.Millisecond) // let load run against each config
	}
	stopLoad()
	g1, f1 := measure(func(g, f, _, _ int) bool { return g <= g0+goroutineTolerance && f <= f0+fdTolerance })

	// After the storm: every acknowledged grant is admitted (gate and
	// /verify) and reported with its expiry.
	check := loadClient()
	lost := 0
	for ip, exp := range grants {
		code, _, err := getAs(check, siteURL(ports.reloadGate)+"/app/page", ip)
		vcode, _, verr := getAs(check, siteURL(ports.reloadKnock)+"/verify", ip)
		st, serr := statusAs(check, siteURL(ports.reloadKnock), ip)
		if err != nil || code != http.StatusOK || verr != nil || vcode != http.StatusOK || serr != nil || st.ExpiresAt == nil || *st.ExpiresAt != exp {
			lost++
			if lost <= 10 {
				t.Errorf("grant %s (until %d) after the storm: gate %d %v, verify %d %v, status %+v %v", ip, exp, code, err, vcode, verr, st, serr)
			}
		}
	}
	check.CloseIdleConnections()

	t.Logf("figure: %d reloads, %d verify requests, %d wrong decisions, %d connection errors, %d knocks, %d grants, %d lost grants, goroutines %d -> %d, fds %d -> %d",
		reloadCount, verifyReqs.Load(), wrong.Load(), connErrs.Load(), knocks.Load(), len(grants), lost, g0, g1, f0, f1)
	if len(connLog) > 0 {
		t.Logf("connection errors (first %d): %v", len(connLog), connLog)
	}
	if wrong.Load() > 0 {
		t.Errorf("%d wrong decisions during the reload storm, e.g. %v", wrong.Load(), wrongLog)
	}
	if len(knockOther) > 0 {
		t.Errorf("%d knocks answered neither 200 nor a connection error, e.g. %v", len(knockOther), knockOther[:min(len(knockOther), 10)])
	}
	if len(grants) == 0 {
		t.Error("no knock was granted during the storm")
	}
	if lost > 0 {
		t.Errorf("%d of %d grants lost across the reloads", lost, len(grants))
	}
	if g1 > g0+goroutineTolerance {
		t.Errorf("goroutines grew across %d reloads: %d -> %d", reloadCount-reloadWarm, g0, g1)
	}
	if f1 > f0+fdTolerance {
		t.Errorf("open fds grew across %d reloads: %d -> %d", reloadCount-reloadWarm, f0, f1)
	}
}

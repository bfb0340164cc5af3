package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-knocker/knocker/internal/testutil"
)

const (
	crashKey       = "crash-test-key-0123456789abcdef"
	crashRounds    = 20
	crashKnockers  = 16
	crashPerWorker = 4096 // addresses 10.<round>.<g*16+n/256>.<n%256>
)

func crashConfig(whitelist string) string {
	global := testutil.Preamble{
		Admin:          "off",
		DefaultBind:    "127.0.0.1",
		TrustedProxies: "127.0.0.1/32",
		Knocker: &testutil.Knocker{
			WhitelistFile: whitelist,
			MaxEntries:    1000000,
			Keys:          []testutil.Key{{Name: "crash", Secret: crashKey, MaxTTL: "30d"}},
			RateLimitsOff: true,
		},
	}
	return global.String() + fmt.Sprintf(`http://:%d {
	knock
}
http://:%d {
	knocker
	respond "admitted"
}
`, ports.crashKnock, ports.crashGate)
}

type ack struct {
	ip        string
	entry     string
	expiresAt int64
}

// TestCrashSafety, without the firewalld part: concurrent
// knockers, kill -9 at a random moment, restart on the same whitelist file.
// Every knock answered 200 must be admitted after the restart with the expiry
// it was answered with, the files must always load, and after a final clean
// stop whitelist.json must be in the Python Knocker's format, holding every grant.
func TestCrashSafety(t *testing.T) {
	bin := caddyBinary(t)
	home, dir := t.TempDir(), t.TempDir()
	whitelist := filepath.Join(dir, "whitelist.json")
	config := writeConfig(t, dir, "crash.Caddyfile", crashConfig(whitelist))

	caddy := startCaddy(t, bin, home, config)
	caddy.waitUp(t, siteURL(ports.crashKnock)+"/health", siteURL(ports.crashGate)+"/")

	var all []ack
	checked, statusChecked, connErrors := 0, 0, 0
	for round := 0; round < crashRounds; round++ {
		client := loadClient()
		var (
			mu       sync.Mutex
			acks     []ack
			other    []string // unexpected non-200 answers
			firstAck = make(chan struct{})
			once     sync.Once
			stop     = make(chan struct{})
			wg       sync.WaitGroup
		)
		for g := 0; g < crashKnockers; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; n < crashPerWorker; n++ {
					select {
					case <-stop:
						return
					default:
					}
					ip := fmt.Sprintf("10.%d.%d.%d", round, g*16+n/256, n%256)
					ttl := 86400 + round*100000 + g*5000 + n // distinct expiries
					code, ans, err := knockAs(client, siteURL(ports.crashKnock), crashKey, ip, ttl)
					mu.Lock()
					switch {
					case err != nil:
						connErrors++ // never acknowledged (the kill)
					case code == http.StatusOK:
						acks = append(acks, ack{ip, ans.WhitelistedEntry, ans.ExpiresAt})
						once.Do(func() { close(firstAck) })
					default:
						other = append(other, fmt.Sprintf("%s: %d", ip, code))
					}
					mu.Unlock()
					if err != nil {
						<-stop // Caddy is dead: wait for the round to end
						return
					}
				}
			}()
		}
		// Kill at a random moment once knocks are being acknowledged.
		select {
		case <-firstAck:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: no knock acknowledged within 30s", round)
		}
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		if err := caddy.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		caddy.waitExit(t)
		close(stop)
		wg.Wait()
		client.CloseIdleConnections()
		if len(other) > 0 {
			t.Fatalf("round %d: knocks answered neither 200 nor a connection error: %v", round, other[:min(len(other), 10)])
		}

		// Restart on the same files: it must start.
		caddy = startCaddy(t, bin, home, config)
		caddy.waitUp(t, siteURL(ports.crashKnock)+"/health", siteURL(ports.crashGate)+"/")

		// Every acknowledged knock of this round is admitted by the gate.
		client = loadClient()
		work := make(chan ack)
		var failures []string
		var fwg sync.WaitGroup
		for w := 0; w < 16; w++ {
			fwg.Add(1)
			go func() {
				defer fwg.Done()
				for a := range work {
					code, body, err := getAs(client, siteURL(ports.crashGate)+"/", a.ip)
					if err != nil || code != http.StatusOK || body != "admitted" {
						mu.Lock()
						failures = append(failures, fmt.Sprintf("%s (acknowledged as %s until %d): %d %q %v", a.ip, a.entry, a.expiresAt, code, body, err))
						mu.Unlock()
					}
				}
			}()
		}
		for _, a := range acks {
			if a.entry != a.ip {
				t.Fatalf("round %d: knock for %s acknowledged entry %q", round, a.ip, a.entry)
			}
			work <- a
		}
		close(work)
		fwg.Wait()
		if len(failures) > 0 {
			t.Fatalf("round %d: %d of %d acknowledged knocks lost after kill -9: %v", round, len(failures), len(acks), failures[:min(len(failures), 10)])
		}
		checked += len(acks)
		all = append(all, acks...)

		// /knock/status reports the acknowledged expiry: the last knocks of
		// this round (the ones nearest the kill) and a sample of all rounds.
		sample := acks[max(0, len(acks)-20):]
		for i := 0; i < 20; i++ {
			sample = append(sample, all[rand.IntN(len(all))])
		}
		for _, a := range sample {
			st, err := statusAs(client, siteURL(ports.crashKnock), a.ip)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if !st.Whitelisted || st.Entry == nil || *st.Entry != a.entry || st.ExpiresAt == nil || *st.ExpiresAt != a.expiresAt {
				t.Fatalf("round %d: status of %s: %+v, want entry %s until %d", round, a.ip, st, a.entry, a.expiresAt)
			}
			statusChecked++
		}
		// And a never-knocked address is still denied.
		if code, _, err := getAs(client, siteURL(ports.crashGate)+"/", fmt.Sprintf("10.%d.255.255", round)); err != nil || code != http.StatusUnauthorized {
			t.Fatalf("round %d: never-knocked address: %d %v, want 401", round, code, err)
		}
		client.CloseIdleConnections()
		t.Logf("round %d: %d knocks acknowledged, all admitted after kill -9 and restart", round, len(acks))
	}

	// Clean stop: the snapshot must hold every acknowledged grant.
	if err := caddy.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := caddy.waitExit(t); err != nil {
		t.Fatalf("caddy did not stop cleanly on SIGTERM: %v", err)
	}
	snapshot := readWhitelist(t, whitelist)
	missing := 0
	for _, a := range all {
		if exp, ok := snapshot[a.entry]; !ok || exp != a.expiresAt {
			if missing < 10 {
				t.Errorf("whitelist.json: %s = %d (present %v), want %d", a.entry, exp, ok, a.expiresAt)
			}
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged grants missing or wrong in whitelist.json after a clean stop", missing, len(all))
	}
	t.Logf("figure: %d rounds of kill -9, %d knocks acknowledged, %d checked at the gate after restart, %d /knock/status checks, %d entries in whitelist.json after the clean stop (all %d acknowledged present with their expiry), %d knocks cut off by the kill (not acknowledged, not counted)",
		crashRounds, len(all), checked, statusChecked, len(snapshot), len(all), connErrors)
}

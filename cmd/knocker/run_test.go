package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// With a 4s TTL (the key allows 1h), run re-knocks before each grant ends.
func TestRunReknocksBeforeExpiry(t *testing.T) {
	srv := sharedCaddy(t)
	p := startProxy(t, srv.proxied, "198.51.100.4", "2001:db8::4")
	var out lockedBuffer
	c := testCLI(t, map[string]string{"KNOCKER_KEY": userKey}, &out, &out)
	stop := runInBackground(t, c, "run", "--server", p.url(), "--family", "4", "--ttl", "4s", "--check-interval", "0")

	waitFor(t, "a first grant", func() bool { return p.count("198.51.100.4") >= 1 })
	first := serverStatus(t, p.via4())
	if !first.Whitelisted || first.IP != "198.51.100.4" || *first.ExpiresIn > 4 {
		t.Fatalf("status after the first knock: %+v", first)
	}
	waitFor(t, "two re-knocks", func() bool { return p.count("198.51.100.4") >= 3 })
	later := serverStatus(t, p.via4())
	if !later.Whitelisted || *later.ExpiresAt <= *first.ExpiresAt {
		t.Fatalf("the grant was not extended: first %d, later %+v", *first.ExpiresAt, later)
	}
	if code := stop(); code != exitOK {
		t.Fatalf("exit code %d\n%s", code, out.String())
	}
	log := out.String()
	assertNoKey(t, log)
	wantContains(t, "log", log, "keeping this device whitelisted at "+p.url()+" (family 4, ttl 4s, address check off)",
		"whitelisted 198.51.100.4 for 4s; next knock in 2s", "stopped: context canceled")
	if strings.Contains(log, "failed") {
		t.Fatalf("failures in the log:\n%s", log)
	}
}

// The proxy plays the network: when the address it forwards for a family
// changes, run notices through /knock/status and knocks at once for that
// family only.
func TestRunFollowsAddressChange(t *testing.T) {
	srv := sharedCaddy(t)
	p := startProxy(t, srv.proxied, "198.51.100.20", "2001:db8::20")
	var out lockedBuffer
	c := testCLI(t, map[string]string{"KNOCKER_KEY": userKey, "KNOCKER_FAMILY": "both"}, &out, &out)
	stop := runInBackground(t, c, "run", "--server", p.url(), "--ttl", "1h", "--check-interval", "200ms")

	waitFor(t, "knocks over both families", func() bool {
		return p.count("198.51.100.20") == 1 && p.count("2001:db8::20") == 1
	})
	for _, via := range []string{p.via4(), p.via6()} {
		if code, body := get(t, via+"/protected"); code != http.StatusOK || body != "gated ok" {
			t.Fatalf("%s: %d %q", via, code, body)
		}
	}

	p.addr4.Store("198.51.100.21") // the IPv4 uplink changes
	waitFor(t, "a knock from the new IPv4 address", func() bool { return p.count("198.51.100.21") == 1 })
	if st := serverStatus(t, p.via4()); !st.Whitelisted || st.IP != "198.51.100.21" {
		t.Fatalf("status from the new address: %+v", st)
	}
	if code, _ := get(t, p.via4()+"/protected"); code != http.StatusOK {
		t.Fatalf("the new IPv4 address is not admitted: %d", code)
	}

	p.addr6.Store("2001:db8::21") // and then the IPv6 one
	waitFor(t, "a knock from the new IPv6 address", func() bool { return p.count("2001:db8::21") == 1 })
	if code, _ := get(t, p.via6()+"/protected"); code != http.StatusOK {
		t.Fatalf("the new IPv6 address is not admitted: %d", code)
	}
	if code := stop(); code != exitOK {
		t.Fatalf("exit code %d\n%s", code, out.String())
	}
	// Each family knocked once per address: a change in one did not make
	// the other knock.
	for _, a := range []string{"198.51.100.20", "198.51.100.21", "2001:db8::20", "2001:db8::21"} {
		if n := p.count(a); n != 1 {
			t.Errorf("%d knocks from %s, want 1", n, a)
		}
	}
	log := out.String()
	assertNoKey(t, log)
	wantContains(t, "log", log,
		"[IPv4] whitelisted 198.51.100.20 for 1h; next knock in 54m",
		"[IPv6] whitelisted 2001:db8::20 for 1h",
		"[IPv4] address changed: 198.51.100.20 -> 198.51.100.21; knocking now",
		"[IPv4] whitelisted 198.51.100.21 for 1h",
		"[IPv6] address changed: 2001:db8::20 -> 2001:db8::21; knocking now")
}

// With a key whose grants are the caller's IPv6 /64 (ipv6_prefix 64), the
// answer is the network: run keeps it without knocking again while the
// device's temporary address rotates within it, and knocks at once when
// the address leaves it.
func TestRunKeepsAnIPv6Network(t *testing.T) {
	srv := sharedCaddy(t)
	p := startProxy(t, srv.proxied, "198.51.100.40", "2001:db8:40:1::a")
	var out lockedBuffer
	c := testCLI(t, map[string]string{"KNOCKER_KEY": roamKey}, &out, &out)
	stop := runInBackground(t, c, "run", "--server", p.url(), "--family", "6", "--ttl", "1h", "--check-interval", "100ms")

	// Each check is answered after the knocks before it: two checks seen,
	// any knock they caused has been counted.
	waitFor(t, "two address checks after the knock", func() bool { return p.statusChecks("2001:db8:40:1::a") >= 2 })
	if n := p.count("2001:db8:40:1::a"); n != 1 {
		t.Fatalf("%d knocks from 2001:db8:40:1::a, want 1 (the grant covers it)\n%s", n, out.String())
	}
	p.addr6.Store("2001:db8:40:1::b") // a new temporary address in the network
	waitFor(t, "two checks from the rotated address", func() bool { return p.statusChecks("2001:db8:40:1::b") >= 2 })
	if n := p.count("2001:db8:40:1::b"); n != 0 {
		t.Fatalf("%d knocks from the rotated address, want none\n%s", n, out.String())
	}
	if code, _ := get(t, p.via6()+"/protected"); code != http.StatusOK {
		t.Fatalf("the rotated address is not admitted: %d", code)
	}
	p.addr6.Store("2001:db8:41:1::a") // another network
	waitFor(t, "a knock from the new network", func() bool { return p.count("2001:db8:41:1::a") == 1 })
	// The proxy counts the knock when it arrives; run logs it once the
	// answer is back. Stopping before that would lose the line.
	waitFor(t, "the new network's grant in the log", func() bool {
		return strings.Contains(out.String(), "whitelisted 2001:db8:41:1::/64 for 1h")
	})
	if code := stop(); code != exitOK {
		t.Fatalf("exit code %d\n%s", code, out.String())
	}
	log := out.String()
	assertNoKey(t, log)
	wantContains(t, "log", log,
		"whitelisted 2001:db8:40:1::/64 for 1h",
		"address changed: 2001:db8:40:1::/64 -> 2001:db8:41:1::a; knocking now",
		"whitelisted 2001:db8:41:1::/64 for 1h")
	if strings.Contains(log, "warning: the knock whitelisted") || strings.Contains(log, "-> 2001:db8:40:1::") {
		t.Fatalf("a warning or a knock within the granted network:\n%s", log)
	}
}

// A fake server fails twice (503), rate-limits once (429, Retry-After: 1),
// then grants: run retries with growing delays, waits out the Retry-After,
// and stops checking addresses when /knock/status does not exist.
func TestRunBacksOffOnErrors(t *testing.T) {
	var (
		n     atomic.Int32
		mu    sync.Mutex
		times []time.Time
	)
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/knock" {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		switch n.Add(1) {
		case 1, 2:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"error":"Whitelist storage not accessible"}`)
		case 3:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":"Too many knock attempts."}`)
		default:
			fmt.Fprint(w, `{"whitelisted_entry":"127.0.0.1","expires_at":1900000000,"expires_in_seconds":3600}`)
		}
	}))
	defer fake.Close()
	var out lockedBuffer
	c := testCLI(t, map[string]string{"KNOCKER_KEY": userKey}, &out, &out)
	stop := runInBackground(t, c, "run", "--server", fake.URL, "--retry-min", "20ms", "--retry-max", "80ms", "--check-interval", "50ms")
	waitFor(t, "the grant", func() bool { return strings.Contains(out.String(), "whitelisted 127.0.0.1 for 1h") })
	waitFor(t, "address checks to stop", func() bool { return strings.Contains(out.String(), "address checks off") })
	if code := stop(); code != exitOK {
		t.Fatalf("exit code %d", code)
	}
	log := out.String()
	assertNoKey(t, log)
	wantContains(t, "log", log,
		"knock failed, retrying in ",
		": server answered 503: Whitelist storage not accessible",
		"knock failed, retrying in 1s: server answered 429: Too many knock attempts. Retry after 1s.",
		"address checks off, re-knocking before expiry only: server answered 404")
	if got := strings.Count(log, "knock failed"); got != 3 {
		t.Fatalf("%d failed knocks logged, want 3:\n%s", got, log)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(times) != 4 {
		t.Fatalf("%d knocks, want 4", len(times))
	}
	if gap := times[3].Sub(times[2]); gap < 900*time.Millisecond {
		t.Fatalf("knocked again %s after a 429 with Retry-After: 1", gap)
	}
}

func TestBackoff(t *testing.T) {
	lo, hi := 100*time.Millisecond, time.Second
	low, high := func() float64 { return 0 }, func() float64 { return 0.999999 }
	for n, base := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 1000: time.Second} {
		if got := backoff(n, lo, hi, low); got != base/2 {
			t.Errorf("backoff(%d) with no jitter = %s, want %s", n, got, base/2)
		}
		if got := backoff(n, lo, hi, high); got > base || got < base*99/100 {
			t.Errorf("backoff(%d) with full jitter = %s, want about %s", n, got, base)
		}
	}
}

func TestRefreshDelay(t *testing.T) {
	for ttl, want := range map[time.Duration]time.Duration{
		time.Hour:         54 * time.Minute,
		100 * time.Second: 90 * time.Second,
		10 * time.Second:  8 * time.Second,
		4 * time.Second:   2 * time.Second,
		time.Second:       500 * time.Millisecond,
		0:                 5 * time.Minute,
	} {
		if got := refreshDelay(ttl); got != want {
			t.Errorf("refreshDelay(%s) = %s, want %s", ttl, got, want)
		}
	}
}

// run refuses a bad configuration at once, with exit code 2.
func TestRunConfigError(t *testing.T) {
	r := runCLI(t, map[string]string{"KNOCKER_SERVER": "http://127.0.0.1:1", "KNOCKER_KEY": userKey}, "run", "--retry-min", "1m", "--retry-max", "1s")
	wantCode(t, r, exitUsage)
	wantContains(t, "stderr", r.stderr, "retry-max (1s) is shorter than retry-min (1m0s)")
}

// With --ip-check-url (knocker-cli's comparison mode) run knocks when the
// lookup service reports a new address, and only then: a change the
// lookup does not report is not noticed through /knock/status.
func TestRunIPCheckURL(t *testing.T) {
	srv := sharedCaddy(t)
	p := startProxy(t, srv.proxied, "198.51.100.30", "2001:db8::30")
	var answer atomic.Value
	answer.Store("203.0.113.1")
	var lookups atomic.Int64
	lookup := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" { // as a lookup service moving to another path
			http.Redirect(w, r, "/ip", http.StatusMovedPermanently)
			return
		}
		lookups.Add(1)
		fmt.Fprintln(w, answer.Load().(string))
	}))
	t.Cleanup(lookup.Close)
	var out lockedBuffer
	c := testCLI(t, map[string]string{"KNOCKER_KEY": userKey, "KNOCKER_IP_CHECK_URL": lookup.URL}, &out, &out)
	stop := runInBackground(t, c, "run", "--server", p.url(), "--family", "4", "--ttl", "1h", "--check-interval", "100ms")

	waitFor(t, "the first knock and two lookups", func() bool { return p.count("198.51.100.30") == 1 && lookups.Load() >= 2 })
	p.addr4.Store("198.51.100.31") // the network changes, and the lookup service says so
	answer.Store("203.0.113.2")
	waitFor(t, "a knock from the new address", func() bool { return p.count("198.51.100.31") == 1 })

	p.addr4.Store("198.51.100.32") // a change the lookup service does not see
	seen := lookups.Load()
	waitFor(t, "three more lookups", func() bool { return lookups.Load() >= seen+3 })
	if n := p.count("198.51.100.32"); n != 0 {
		t.Fatalf("knocked %d times from an address the lookup service did not report", n)
	}
	if code := stop(); code != exitOK {
		t.Fatalf("exit code %d\n%s", code, out.String())
	}
	log := out.String()
	wantContains(t, "log", log, "address check every 100ms at "+lookup.URL,
		"address changed (per "+lookup.URL+"): 203.0.113.1 -> 203.0.113.2; knocking now")
	if p.count("198.51.100.30") != 1 {
		t.Fatalf("knocks from the first address: %d, want 1 (no knock without a change)", p.count("198.51.100.30"))
	}
}

// A lookup service that answers no address is an error, retried.
func TestRunIPCheckURLBadAnswer(t *testing.T) {
	srv := sharedCaddy(t)
	p := startProxy(t, srv.proxied, "198.51.100.40", "2001:db8::40")
	var lookups atomic.Int64
	lookup := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lookups.Add(1)
		fmt.Fprintln(w, "<html>not an address</html>")
	}))
	t.Cleanup(lookup.Close)
	var out lockedBuffer
	c := testCLI(t, map[string]string{"KNOCKER_KEY": userKey}, &out, &out)
	stop := runInBackground(t, c, "run", "--server", p.url(), "--family", "4", "--ttl", "1h",
		"--check-interval", "50ms", "--retry-min", "10ms", "--retry-max", "20ms", "--ip_check_url", lookup.URL)
	waitFor(t, "two failed lookups", func() bool { return lookups.Load() >= 2 })
	stop()
	wantContains(t, "log", out.String(), "address lookup failed, next check in", "did not answer with an IP address")
	if p.count("198.51.100.40") != 1 {
		t.Fatalf("knocks: %d, want the first one only", p.count("198.51.100.40"))
	}
}

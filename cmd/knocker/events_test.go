package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The event contract of knocker-cli's docs/logging.md (schema
// version 1), with the priorities and messages of its
// internal/service/event_logging.go and cmd/knocker/knock.go.
type eventContract struct {
	required, optional []string
	enums              map[string][]string
	priority           func(f map[string]string) string
	message            func(f map[string]string) []string // the allowed messages; nil: any
}

func always(p string) func(map[string]string) string {
	return func(map[string]string) string { return p }
}

var contract = map[string]eventContract{
	"ServiceState": {
		required: []string{"KNOCKER_SERVICE_STATE"},
		optional: []string{"KNOCKER_VERSION"},
		enums:    map[string][]string{"KNOCKER_SERVICE_STATE": {"started", "stopping", "stopped", "reloaded"}},
		priority: func(f map[string]string) string {
			if f["KNOCKER_SERVICE_STATE"] == "stopping" {
				return "5"
			}
			return "6"
		},
		message: func(f map[string]string) []string { return []string{"Service state: " + f["KNOCKER_SERVICE_STATE"]} },
	},
	"StatusSnapshot": {
		optional: []string{"KNOCKER_WHITELIST_IP", "KNOCKER_WHITELIST_IPS_JSON", "KNOCKER_EXPIRES_UNIX", "KNOCKER_TTL_SEC",
			"KNOCKER_NEXT_AT_UNIX", "KNOCKER_CADENCE_SOURCE", "KNOCKER_PROFILE", "KNOCKER_PORTS"},
		enums:    map[string][]string{"KNOCKER_CADENCE_SOURCE": {"ttl", "ttl_response", "check_interval"}},
		priority: always("6"),
		message:  func(map[string]string) []string { return []string{"Status snapshot"} },
	},
	"WhitelistApplied": {
		required: []string{"KNOCKER_WHITELIST_IP"},
		optional: []string{"KNOCKER_TTL_SEC", "KNOCKER_EXPIRES_UNIX", "KNOCKER_SOURCE", "KNOCKER_PROFILE"},
		enums:    map[string][]string{"KNOCKER_SOURCE": {"schedule", "cli"}},
		priority: always("6"),
		message: func(f map[string]string) []string {
			return []string{fmt.Sprintf("Whitelisted %s for %ss (expires at %s)", f["KNOCKER_WHITELIST_IP"], f["KNOCKER_TTL_SEC"], unixRFC3339(f["KNOCKER_EXPIRES_UNIX"]))}
		},
	},
	"WhitelistExpired": {
		optional: []string{"KNOCKER_WHITELIST_IP", "KNOCKER_EXPIRED_UNIX"},
		priority: always("5"),
		message: func(f map[string]string) []string {
			return []string{fmt.Sprintf("Whitelist expired for %s at %s", f["KNOCKER_WHITELIST_IP"], unixRFC3339(f["KNOCKER_EXPIRED_UNIX"]))}
		},
	},
	"NextKnockUpdated": {
		required: []string{"KNOCKER_NEXT_AT_UNIX"},
		optional: []string{"KNOCKER_CADENCE_SOURCE", "KNOCKER_PROFILE", "KNOCKER_PORTS"},
		enums:    map[string][]string{"KNOCKER_CADENCE_SOURCE": {"ttl", "ttl_response", "check_interval"}},
		priority: always("6"),
		message: func(f map[string]string) []string {
			if f["KNOCKER_NEXT_AT_UNIX"] == "0" {
				return []string{"Next knock cleared"}
			}
			return []string{"Next knock at " + unixRFC3339(f["KNOCKER_NEXT_AT_UNIX"])}
		},
	},
	"KnockTriggered": {
		required: []string{"KNOCKER_TRIGGER_SOURCE", "KNOCKER_RESULT"},
		optional: []string{"KNOCKER_WHITELIST_IP", "KNOCKER_PROFILE"},
		enums:    map[string][]string{"KNOCKER_TRIGGER_SOURCE": {"schedule", "cli", "external"}, "KNOCKER_RESULT": {"success", "failure"}},
		priority: func(f map[string]string) string {
			if f["KNOCKER_RESULT"] == "success" {
				return "6"
			}
			return "3"
		},
		message: func(f map[string]string) []string {
			if f["KNOCKER_TRIGGER_SOURCE"] == "cli" && f["KNOCKER_RESULT"] == "success" {
				return []string{"Manual knock succeeded"}
			}
			if f["KNOCKER_TRIGGER_SOURCE"] == "cli" {
				return nil // "Manual knock failed: " and the error
			}
			return []string{fmt.Sprintf("Knock triggered via %s: %s", f["KNOCKER_TRIGGER_SOURCE"], f["KNOCKER_RESULT"])}
		},
	},
	"Error": {
		required: []string{"KNOCKER_ERROR_CODE", "KNOCKER_ERROR_MSG"},
		optional: []string{"KNOCKER_CONTEXT"},
		enums:    map[string][]string{"KNOCKER_ERROR_CODE": {"ip_lookup_failed", "health_check_failed", "knock_failed"}},
		priority: always("3"),
		message:  func(f map[string]string) []string { return []string{f["KNOCKER_ERROR_MSG"]} },
	},
}

// extensions are the fields this CLI adds to schema 1 on any event
// (consumers ignore fields they do not know), with their values.
var extensions = map[string][]string{"KNOCKER_FAMILY": {"ipv4", "ipv6"}}

var (
	unixField    = regexp.MustCompile(`^(0|[1-9][0-9]*)$`)
	positiveUnix = regexp.MustCompile(`^[1-9][0-9]*$`)
)

func unixRFC3339(s string) string {
	n, _ := strconv.ParseInt(s, 10, 64)
	return time.Unix(n, 0).UTC().Format(time.RFC3339)
}

// checkContract fails t unless e (one entry: KNOCKER_* fields, MESSAGE,
// PRIORITY, SYSLOG_IDENTIFIER) keeps the contract.
func checkContract(t *testing.T, e map[string]string) {
	t.Helper()
	name := e["KNOCKER_EVENT"]
	c, ok := contract[name]
	if !ok {
		t.Fatalf("unknown event %q: %v", name, e)
	}
	if e["SYSLOG_IDENTIFIER"] != "knocker" || e["KNOCKER_SCHEMA_VERSION"] != "1" {
		t.Fatalf("%s: identifier %q, schema %q: %v", name, e["SYSLOG_IDENTIFIER"], e["KNOCKER_SCHEMA_VERSION"], e)
	}
	if want := c.priority(e); e["PRIORITY"] != want {
		t.Fatalf("%s: PRIORITY %q, want %q: %v", name, e["PRIORITY"], want, e)
	}
	if e["MESSAGE"] == "" {
		t.Fatalf("%s: no MESSAGE: %v", name, e)
	}
	if c.message != nil {
		if want := c.message(e); want != nil && !slices.Contains(want, e["MESSAGE"]) {
			t.Fatalf("%s: MESSAGE %q, want one of %q", name, e["MESSAGE"], want)
		}
	}
	for _, k := range c.required {
		if e[k] == "" {
			t.Fatalf("%s: required field %s missing: %v", name, k, e)
		}
	}
	for k, v := range e {
		switch k {
		case "SYSLOG_IDENTIFIER", "KNOCKER_SCHEMA_VERSION", "KNOCKER_EVENT", "MESSAGE", "PRIORITY":
			continue
		}
		if allowed, ok := extensions[k]; ok {
			if !slices.Contains(allowed, v) {
				t.Fatalf("%s: %s=%q, want one of %q", name, k, v, allowed)
			}
			continue
		}
		if !slices.Contains(c.required, k) && !slices.Contains(c.optional, k) {
			t.Fatalf("%s: field %s is not in the contract: %v", name, k, e)
		}
		if allowed, ok := c.enums[k]; ok && !slices.Contains(allowed, v) {
			t.Fatalf("%s: %s=%q, want one of %q", name, k, v, allowed)
		}
		switch {
		case k == "KNOCKER_NEXT_AT_UNIX":
			if !unixField.MatchString(v) { // "0" clears the schedule
				t.Fatalf("%s: %s=%q is not unix seconds", name, k, v)
			}
		case strings.HasSuffix(k, "_UNIX") || strings.HasSuffix(k, "_SEC"):
			if !positiveUnix.MatchString(v) {
				t.Fatalf("%s: %s=%q is not a positive integer", name, k, v)
			}
		case k == "KNOCKER_WHITELIST_IPS_JSON":
			var ips []string
			if err := json.Unmarshal([]byte(v), &ips); err != nil || len(ips) == 0 {
				t.Fatalf("%s: %s=%q is not a JSON array of strings", name, k, v)
			}
		}
	}
}

// jsonEvents decodes --events json output: one object per line, every
// value a string.
func jsonEvents(t *testing.T, out string) []map[string]string {
	t.Helper()
	var evs []map[string]string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var raw map[string]any
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
			t.Fatalf("not a JSON line: %v\n%s", err, sc.Text())
		}
		e := map[string]string{}
		for k, v := range raw {
			s, ok := v.(string)
			if !ok {
				t.Fatalf("%s is a %T, not a string: %s", k, v, sc.Text())
			}
			e[k] = s
		}
		checkContract(t, e)
		evs = append(evs, e)
	}
	return evs
}

// describe names an event in the sequence: ServiceState by its state,
// KnockTriggered by its result.
func describe(e map[string]string) string {
	switch e["KNOCKER_EVENT"] {
	case "ServiceState":
		return e["KNOCKER_SERVICE_STATE"]
	case "KnockTriggered":
		return "KnockTriggered:" + e["KNOCKER_RESULT"]
	case "Error":
		return "Error:" + e["KNOCKER_ERROR_CODE"]
	}
	return e["KNOCKER_EVENT"]
}

func sequence(evs []map[string]string) []string {
	var s []string
	for _, e := range evs {
		s = append(s, describe(e))
	}
	return s
}

func hasEvent(evs []map[string]string, what string) bool {
	return slices.Contains(sequence(evs), what)
}

func wantFields(t *testing.T, e map[string]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		got, ok := e[k]
		if v == "" && ok {
			t.Fatalf("%s: %s=%q, want it absent: %v", describe(e), k, got, e)
		}
		if v != "" && got != v {
			t.Fatalf("%s: %s=%q, want %q: %v", describe(e), k, got, v, e)
		}
	}
}

// checkRunSession checks the events of a run session that knocked once
// over IPv4 for addr (as the server's status at via reports it) and was
// then stopped.
func checkRunSession(t *testing.T, evs []map[string]string, addr string, st statusResult) {
	t.Helper()
	want := []string{"started", "StatusSnapshot", "KnockTriggered:success", "WhitelistApplied", "StatusSnapshot",
		"NextKnockUpdated", "StatusSnapshot", "stopping", "NextKnockUpdated", "StatusSnapshot", "stopped"}
	if got := sequence(evs); !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	expires := strconv.FormatInt(*st.ExpiresAt, 10)
	wantFields(t, evs[0], map[string]string{"KNOCKER_VERSION": cliVersion()})
	wantFields(t, evs[1], map[string]string{"KNOCKER_WHITELIST_IP": "", "KNOCKER_NEXT_AT_UNIX": ""})
	wantFields(t, evs[2], map[string]string{"KNOCKER_TRIGGER_SOURCE": "schedule", "KNOCKER_WHITELIST_IP": addr, "KNOCKER_FAMILY": "ipv4"})
	wantFields(t, evs[3], map[string]string{"KNOCKER_WHITELIST_IP": addr, "KNOCKER_TTL_SEC": "3600", "KNOCKER_EXPIRES_UNIX": expires,
		"KNOCKER_SOURCE": "schedule", "KNOCKER_FAMILY": "ipv4"})
	wantFields(t, evs[4], map[string]string{"KNOCKER_WHITELIST_IP": addr, "KNOCKER_TTL_SEC": "3600", "KNOCKER_EXPIRES_UNIX": expires,
		"KNOCKER_WHITELIST_IPS_JSON": ""})
	// The re-knock is due at 90% of the hour granted: 6 minutes before
	// the server's expiry (within a second of rounding).
	next, _ := strconv.ParseInt(evs[5]["KNOCKER_NEXT_AT_UNIX"], 10, 64)
	if d := *st.ExpiresAt - 360 - next; d < -1 || d > 1 {
		t.Fatalf("next knock at %d, want about %d (expiry %d - 6m)", next, *st.ExpiresAt-360, *st.ExpiresAt)
	}
	wantFields(t, evs[5], map[string]string{"KNOCKER_CADENCE_SOURCE": "ttl_response"})
	wantFields(t, evs[6], map[string]string{"KNOCKER_WHITELIST_IP": addr, "KNOCKER_NEXT_AT_UNIX": evs[5]["KNOCKER_NEXT_AT_UNIX"], "KNOCKER_CADENCE_SOURCE": "ttl_response"})
	wantFields(t, evs[8], map[string]string{"KNOCKER_NEXT_AT_UNIX": "0"})
	// The grant outlives the service; the schedule does not.
	wantFields(t, evs[9], map[string]string{"KNOCKER_WHITELIST_IP": addr, "KNOCKER_EXPIRES_UNIX": expires, "KNOCKER_NEXT_AT_UNIX": ""})
}

// eventsRun is a `knocker run --events json` session against the shared
// Caddy through a test proxy that gives the device addr4 and addr6.
type eventsRun struct {
	p              *xffProxy
	stdout, stderr lockedBuffer
	stop           func() int
}

func startEventsRun(t *testing.T, addr4, addr6 string, args ...string) *eventsRun {
	t.Helper()
	srv := sharedCaddy(t)
	r := &eventsRun{p: startProxy(t, srv.proxied, addr4, addr6)}
	c := testCLI(t, map[string]string{"KNOCKER_KEY": userKey}, &r.stdout, &r.stderr)
	r.stop = runInBackground(t, c, append([]string{"run", "--server", r.p.url(), "--events", "json"}, args...)...)
	return r
}

// has reports whether an event named name was written.
func (r *eventsRun) has(name string) bool { return strings.Contains(r.stdout.String(), `"`+name+`"`) }

// finish stops the session and returns its events.
func (r *eventsRun) finish(t *testing.T) []map[string]string {
	t.Helper()
	if code := r.stop(); code != exitOK {
		t.Fatalf("exit code %d\n%s", code, r.stderr.String())
	}
	assertNoKey(t, r.stdout.String()+r.stderr.String())
	return jsonEvents(t, r.stdout.String())
}

// A run session against the real knock server (Caddy with the plugin,
// behind the test proxy that sets the device's address): --events json
// writes knocker-cli's event sequence on standard output, field by
// field, and the log stays on standard error.
func TestRunEventsJSON(t *testing.T) {
	r := startEventsRun(t, "198.51.100.40", "2001:db8::40", "--family", "4", "--ttl", "1h", "--check-interval", "0")
	waitFor(t, "the next knock to be scheduled", func() bool { return r.has("NextKnockUpdated") })
	st := serverStatus(t, r.p.via4())
	checkRunSession(t, r.finish(t), "198.51.100.40", st)
	wantContains(t, "log", r.stderr.String(), "whitelisted 198.51.100.40 for 1h")
}

// With --family both, each family's grant has its WhitelistApplied, and
// the snapshot lists both entries.
func TestRunEventsBothFamilies(t *testing.T) {
	r := startEventsRun(t, "198.51.100.41", "2001:db8::41", "--family", "both", "--ttl", "1h", "--check-interval", "0")
	waitFor(t, "both grants and the next knock", func() bool {
		return strings.Count(r.stdout.String(), `"WhitelistApplied"`) == 2 && r.has("NextKnockUpdated")
	})
	evs := r.finish(t)
	families := map[string]string{}
	var last map[string]string // the last snapshot
	for _, e := range evs {
		switch e["KNOCKER_EVENT"] {
		case "WhitelistApplied":
			families[e["KNOCKER_FAMILY"]] = e["KNOCKER_WHITELIST_IP"]
		case "StatusSnapshot":
			last = e
		}
	}
	if families["ipv4"] != "198.51.100.41" || families["ipv6"] != "2001:db8::41" || len(families) != 2 {
		t.Fatalf("grants by family: %v", families)
	}
	wantFields(t, last, map[string]string{"KNOCKER_WHITELIST_IP": "198.51.100.41", "KNOCKER_WHITELIST_IPS_JSON": `["198.51.100.41","2001:db8::41"]`})
	// One NextKnockUpdated while running: after both first knocks, not
	// one per family (and the cleared one when stopping).
	if n := strings.Count(strings.Join(sequence(evs), " "), "NextKnockUpdated"); n != 2 {
		t.Fatalf("%d NextKnockUpdated, want 2: %q", n, sequence(evs))
	}
}

// The server goes away after the first knock: the address checks fail
// (ip_lookup_failed), the re-knocks fail (KnockTriggered failure, then
// knock_failed), and the grant lapses (WhitelistExpired).
func TestRunEventsServerGone(t *testing.T) {
	r := startEventsRun(t, "198.51.100.42", "2001:db8::42", "--family", "4", "--ttl", "4s", "--check-interval", "100ms",
		"--retry-min", "50ms", "--retry-max", "200ms")
	waitFor(t, "the grant", func() bool { return r.has("WhitelistApplied") })
	r.p.close()
	waitFor(t, "the grant to lapse", func() bool { return r.has("WhitelistExpired") })
	evs := r.finish(t)
	var applied, expired map[string]string
	for i, e := range evs {
		switch describe(e) {
		case "WhitelistApplied":
			applied = e
		case "WhitelistExpired":
			expired = e
			wantFields(t, evs[i+1], map[string]string{"KNOCKER_EVENT": "StatusSnapshot", "KNOCKER_WHITELIST_IP": ""})
		case "KnockTriggered:failure":
			wantFields(t, e, map[string]string{"KNOCKER_TRIGGER_SOURCE": "schedule", "KNOCKER_WHITELIST_IP": "198.51.100.42"})
			wantFields(t, evs[i+1], map[string]string{"KNOCKER_EVENT": "Error", "KNOCKER_ERROR_CODE": "knock_failed", "KNOCKER_CONTEXT": "198.51.100.42"})
			wantContains(t, "error", evs[i+1]["KNOCKER_ERROR_MSG"], "Knock failed: cannot reach ", "connection refused")
		case "Error:ip_lookup_failed":
			wantFields(t, e, map[string]string{"KNOCKER_CONTEXT": r.p.url() + "/knock/status"})
			wantContains(t, "error", e["KNOCKER_ERROR_MSG"], "Error getting public IP: cannot reach ")
		}
	}
	for _, w := range []string{"Error:ip_lookup_failed", "KnockTriggered:failure", "Error:knock_failed"} {
		if !hasEvent(evs, w) {
			t.Fatalf("no %s in %q", w, sequence(evs))
		}
	}
	wantFields(t, expired, map[string]string{"KNOCKER_WHITELIST_IP": "198.51.100.42", "KNOCKER_EXPIRED_UNIX": applied["KNOCKER_EXPIRES_UNIX"]})
}

// A server that is not the knock API (it answers 404 everywhere: a real
// HTTP server, not a stand-in for Knocker): the failed knock and the
// missing /knock/status are reported as knock_failed and
// health_check_failed.
func TestRunEventsNotTheKnockAPI(t *testing.T) {
	other := httptest.NewServer(http.NotFoundHandler())
	defer other.Close()
	var stdout, stderr lockedBuffer
	c := testCLI(t, map[string]string{"KNOCKER_KEY": userKey}, &stdout, &stderr)
	stop := runInBackground(t, c, "run", "--server", other.URL, "--check-interval", "50ms", "--retry-min", "1h", "--retry-max", "1h", "--events", "json")
	waitFor(t, "the failed health check", func() bool { return strings.Contains(stdout.String(), "health_check_failed") })
	if code := stop(); code != exitOK {
		t.Fatalf("exit code %d", code)
	}
	evs := jsonEvents(t, stdout.String())
	want := []string{"started", "StatusSnapshot", "KnockTriggered:failure", "Error:knock_failed", "NextKnockUpdated", "StatusSnapshot",
		"Error:health_check_failed", "stopping", "NextKnockUpdated", "StatusSnapshot", "stopped"}
	if got := sequence(evs); !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	wantFields(t, evs[2], map[string]string{"KNOCKER_WHITELIST_IP": "", "KNOCKER_FAMILY": ""})
	wantFields(t, evs[3], map[string]string{"KNOCKER_CONTEXT": ""})
	wantFields(t, evs[4], map[string]string{"KNOCKER_CADENCE_SOURCE": ""}) // a retry, not a TTL refresh
	wantFields(t, evs[5], map[string]string{"KNOCKER_NEXT_AT_UNIX": evs[4]["KNOCKER_NEXT_AT_UNIX"], "KNOCKER_WHITELIST_IP": ""})
	wantFields(t, evs[6], map[string]string{"KNOCKER_CONTEXT": other.URL + "/knock/status"})
	wantContains(t, "error", evs[6]["KNOCKER_ERROR_MSG"], "Health check failed: server answered 404")
}

// Without --events and without a journal, run writes nothing on standard
// output, as before; a bad --events is a usage error.
func TestRunEventsOffAndBad(t *testing.T) {
	fake := httptest.NewServer(&fakeKnock{})
	defer fake.Close()
	var stdout, stderr lockedBuffer
	c := testCLI(t, map[string]string{"KNOCKER_KEY": userKey}, &stdout, &stderr)
	stop := runInBackground(t, c, "run", "--server", fake.URL, "--check-interval", "0")
	waitFor(t, "the grant", func() bool { return strings.Contains(stderr.String(), "whitelisted 127.0.0.1") })
	if code := stop(); code != exitOK {
		t.Fatalf("exit code %d", code)
	}
	if stdout.String() != "" {
		t.Fatalf("standard output without --events:\n%s", stdout.String())
	}

	r := runCLI(t, map[string]string{"KNOCKER_KEY": userKey, "KNOCKER_SERVER": fake.URL}, "run", "--events", "xml")
	wantCode(t, r, exitUsage)
	wantContains(t, "stderr", r.stderr, `invalid --events "xml": must be auto, journal, json or off`)
	r = runCLI(t, map[string]string{"KNOCKER_KEY": userKey, "KNOCKER_SERVER": fake.URL}, "run", "--events", "journal")
	wantCode(t, r, exitUsage)
	wantContains(t, "stderr", r.stderr, "--events journal: no journal here")
}

// Another knock for the same address shortens the grant (the last knock
// wins): run follows the server's expiry, and its snapshot says so.
func TestRunEventsGrantShortened(t *testing.T) {
	r := startEventsRun(t, "198.51.100.46", "2001:db8::46", "--family", "4", "--ttl", "1h", "--check-interval", "100ms")
	waitFor(t, "the grant", func() bool { return r.has("WhitelistApplied") })
	k := runCLI(t, map[string]string{"KNOCKER_KEY": userKey}, "knock", "--server", r.p.url(), "--family", "4", "--ttl", "30s")
	wantCode(t, k, exitOK)
	st := serverStatus(t, r.p.via4())
	expires := strconv.FormatInt(*st.ExpiresAt, 10)
	waitFor(t, "a snapshot with the shorter expiry", func() bool { return strings.Contains(r.stdout.String(), `"KNOCKER_EXPIRES_UNIX":"`+expires+`"`) })
	evs := r.finish(t)
	for i, e := range evs {
		if e["KNOCKER_EVENT"] == "StatusSnapshot" && e["KNOCKER_EXPIRES_UNIX"] == expires {
			wantFields(t, e, map[string]string{"KNOCKER_WHITELIST_IP": "198.51.100.46"})
			// The re-knock moves up to before the new expiry.
			next, _ := strconv.ParseInt(evs[i+1]["KNOCKER_NEXT_AT_UNIX"], 10, 64)
			if evs[i+1]["KNOCKER_EVENT"] != "NextKnockUpdated" || next >= *st.ExpiresAt {
				t.Fatalf("after the shortened grant (expiry %s): %v", expires, evs[i+1])
			}
			return
		}
	}
	t.Fatalf("no snapshot with expiry %s: %q", expires, sequence(evs))
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

const aboutKnock = `Knocks once: asks the server to whitelist this device's address (or --ip)
for --ttl, and prints what was whitelisted and until when, and whether the
server granted less time than asked. With --family both it knocks over IPv4
and over IPv6 separately, so that a dual-stack device is whitelisted on both.`

const aboutStatus = `Shows this device's address as the server sees it (GET /knock/status, no key
needed), whether it is whitelisted and for how long. With --family both, for
IPv4 and IPv6 separately. The exit code is 0 whether or not the address is
whitelisted ("whitelisted" in the --json output tells).

It also shows the state of the service written by "knocker install":
running, stopped or not installed (on standard error; "service" in the
--json output). With
--service it shows only that, asks no server, and the exit code is the
state: 0 running, 9 stopped, 10 not installed, 1 unknown (for instance
systemd is not available).`

// familyResult is the outcome for one address family, as printed with --json.
type familyResult struct {
	Family string `json:"family"`
	OK     bool   `json:"ok"`
	// knock
	Entry        string `json:"whitelisted_entry,omitempty"`
	RequestedTTL int64  `json:"requested_ttl_seconds,omitempty"`
	TTLCapped    bool   `json:"ttl_capped,omitempty"`
	// status
	IP          string  `json:"ip,omitempty"`
	Whitelisted *bool   `json:"whitelisted,omitempty"`
	StatusEntry *string `json:"entry,omitempty"`
	// both
	ExpiresAt *int64 `json:"expires_at,omitempty"`
	ExpiresIn *int64 `json:"expires_in_seconds,omitempty"`
	// failure
	Error      string `json:"error,omitempty"`
	ExitCode   int    `json:"exit_code,omitempty"`
	HTTPStatus int    `json:"http_status,omitempty"`
	RetryAfter int64  `json:"retry_after_seconds,omitempty"`

	err *cmdError
	fam family
}

func (r *familyResult) fail(e *cmdError) {
	r.err, r.Error, r.ExitCode, r.HTTPStatus = e, e.msg, e.code, e.httpStatus
	r.RetryAfter = int64(e.retryAfter / time.Second)
}

// forEachFamily runs fn for every member of s.family concurrently and
// returns the results in order (IPv4 first).
func (c *cli) forEachFamily(s *settings, fn func(*client, *familyResult)) []*familyResult {
	fams := s.family.members()
	results := make([]*familyResult, len(fams))
	var wg sync.WaitGroup
	for i, f := range fams {
		results[i] = &familyResult{Family: f.jsonName(), fam: f}
		wg.Go(func() { fn(c.newClient(s, f), results[i]) })
	}
	wg.Wait()
	return results
}

func (c *cli) cmdKnock(ctx context.Context, args []string) int {
	p, code, done := c.parseFlags("knock", "[flags]", aboutKnock,
		[]string{"server", "key", "key-file", "ttl", "ip", "family", "timeout", "config", "verbose", "json"}, args)
	if done {
		return code
	}
	s, cerr := c.resolve(p, true)
	if cerr != nil {
		return c.fatal("knock", p.bool("json"), cerr)
	}
	stdout, stderr := redacting(c.stdout, s.key), redacting(c.stderr, s.key)
	printWarnings(stderr, "knock", s)
	if p.bool("verbose") {
		fmt.Fprintf(stderr, "knocker knock: %s\n", s.describeOrigins())
	}
	results := c.forEachFamily(s, func(cl *client, r *familyResult) {
		res, err := cl.knock(ctx, s.key, s.ttl, s.ip)
		if err != nil {
			r.fail(err)
			return
		}
		r.OK, r.Entry, r.ExpiresAt, r.ExpiresIn = true, res.Entry, &res.ExpiresAt, &res.ExpiresIn
		if s.ttl > 0 {
			r.RequestedTTL = int64(s.ttl / time.Second)
			r.TTLCapped = res.ExpiresIn < r.RequestedTTL
		}
	})
	// As knocker-cli's knock command, report to the journal when there is
	// one (no --events here: --json owns standard output).
	sink, _ := c.eventSink("auto", nil, stderr)
	for _, r := range results {
		if !r.OK {
			knockEvents(sink, r.fam, nil, r.err)
			fmt.Fprintf(stderr, "knocker knock: %s%s\n", prefix(r.fam), r.Error)
			continue
		}
		knockEvents(sink, r.fam, &knockResult{Entry: r.Entry, ExpiresAt: *r.ExpiresAt, ExpiresIn: *r.ExpiresIn}, nil)
		if p.bool("json") {
			continue
		}
		fmt.Fprintf(stdout, "%s%s %s for %s, until %s\n", prefix(r.fam), capitalizeIf(r.fam, "whitelisted"),
			sanitize(r.Entry), formatDuration(time.Duration(*r.ExpiresIn)*time.Second), formatTime(*r.ExpiresAt))
		if r.TTLCapped {
			fmt.Fprintf(stdout, "%sthe server capped the TTL: asked for %s, granted %s (the key's max_ttl)\n", prefix(r.fam),
				formatDuration(time.Duration(r.RequestedTTL)*time.Second), formatDuration(time.Duration(*r.ExpiresIn)*time.Second))
		}
	}
	return c.finish(stdout, p.bool("json"), results, nil)
}

func (c *cli) cmdStatus(ctx context.Context, args []string) int {
	p, code, done := c.parseFlags("status", "[flags]", aboutStatus,
		[]string{"server", "family", "timeout", "config", "verbose", "json", "service"}, args)
	if done {
		return code
	}
	svc := c.serviceStatus(ctx)
	if p.bool("service") {
		if p.bool("json") {
			writeJSON(c.stdout, map[string]any{"service": svc, "exit_code": serviceExitCode(svc.State)})
		} else {
			fmt.Fprintf(c.stdout, "Service: %s%s: %s\n", svc.State, parenthesized(svc.Detail), svc.Location)
		}
		return serviceExitCode(svc.State)
	}
	if !p.bool("json") || p.bool("verbose") { // on stderr, as the settings: stdout stays the server's view
		fmt.Fprintf(c.stderr, "knocker status: service: %s%s\n", svc.State, parenthesized(svc.Detail))
	}
	s, cerr := c.resolve(p, false)
	if cerr != nil {
		return c.fatal("status", p.bool("json"), cerr)
	}
	printWarnings(c.stderr, "status", s)
	if !p.bool("json") || p.bool("verbose") {
		defer fmt.Fprintf(c.stderr, "knocker status: %s\n", s.describeOrigins())
	}
	results := c.forEachFamily(s, func(cl *client, r *familyResult) {
		st, err := cl.status(ctx)
		if err != nil {
			r.fail(err)
			return
		}
		w := st.Whitelisted
		r.OK, r.IP, r.Whitelisted, r.StatusEntry, r.ExpiresAt, r.ExpiresIn = true, st.IP, &w, st.Entry, st.ExpiresAt, st.ExpiresIn
	})
	for _, r := range results {
		if !r.OK {
			fmt.Fprintf(c.stderr, "knocker status: %s%s\n", prefix(r.fam), r.Error)
			continue
		}
		if p.bool("json") {
			continue
		}
		ip := sanitize(r.IP)
		if !*r.Whitelisted || r.ExpiresIn == nil || r.ExpiresAt == nil {
			fmt.Fprintf(c.stdout, "%s%s is not whitelisted\n", prefix(r.fam), ip)
			continue
		}
		as := ""
		if r.StatusEntry != nil && *r.StatusEntry != r.IP {
			as = " (as " + sanitize(*r.StatusEntry) + ")"
		}
		fmt.Fprintf(c.stdout, "%s%s is whitelisted%s for %s more, until %s\n", prefix(r.fam), ip, as,
			formatDuration(time.Duration(*r.ExpiresIn)*time.Second), formatTime(*r.ExpiresAt))
	}
	return c.finish(c.stdout, p.bool("json"), results, &svc)
}

// finish prints the JSON document if asked and returns the exit code: the
// highest of the families' codes. svc, if set, is added to the JSON.
func (c *cli) finish(stdout io.Writer, asJSON bool, results []*familyResult, svc *serviceStatus) int {
	code := exitOK
	for _, r := range results {
		if !r.OK {
			code = max(code, r.ExitCode)
		}
	}
	if asJSON {
		doc := map[string]any{"results": results, "exit_code": code}
		if svc != nil {
			doc["service"] = svc
		}
		writeJSON(stdout, doc)
	}
	return code
}

// fatal reports an error that stopped the command before any request.
func (c *cli) fatal(cmd string, asJSON bool, e *cmdError) int {
	fmt.Fprintf(c.stderr, "knocker %s: %s\n", cmd, e.msg)
	if asJSON {
		writeJSON(c.stdout, map[string]any{"results": []any{}, "error": e.msg, "exit_code": e.code})
	}
	return e.code
}

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func printWarnings(w io.Writer, cmd string, s *settings) {
	for _, m := range s.warnings {
		fmt.Fprintf(w, "knocker %s: warning: %s\n", cmd, m)
	}
}

func prefix(f family) string {
	if l := f.label(); l != "" {
		return l + ": "
	}
	return ""
}

func capitalizeIf(f family, s string) string {
	if f.label() != "" || s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func formatTime(unix int64) string {
	return time.Unix(unix, 0).Format("2006-01-02 15:04:05 MST")
}

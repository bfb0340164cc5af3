package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"
)

const aboutRun = `Stays in the foreground and keeps this device whitelisted:
  - knocks at start;
  - re-knocks before the grant expires, at about 90% of the TTL the server
    granted (at least 2s early);
  - re-knocks at once when the server sees a new address for this device
    (outside the network granted, when the server grants IPv6 networks), or
    no longer lists it: it asks GET /knock/status every --check-interval
    (no third-party IP service). Not with --ip, whose target is fixed;
  - retries failed knocks with exponential backoff: --retry-min, doubling up
    to --retry-max, with jitter (between half and all of each delay), and
    never sooner than the server's Retry-After.
With --family both, IPv4 and IPv6 are kept whitelisted independently.
SIGTERM or SIGINT stops it with exit code 0. It logs to standard error (without
timestamps under systemd, whose journal adds them). Errors while running are
retried, never fatal; only a configuration error stops it (exit code 2).
It also reports structured events, those of the original knocker-cli (journald
schema 1: KNOCKER_EVENT=ServiceState, StatusSnapshot, KnockTriggered,
WhitelistApplied, WhitelistExpired, NextKnockUpdated, Error): to the journal
when there is one, or as JSON lines on standard output with --events json.`

var runFlags = []string{"server", "key", "key-file", "ttl", "ip", "family", "timeout", "check-interval", "ip-check-url", "retry-min", "retry-max", "config", "verbose", "events"}

func (c *cli) cmdRun(ctx context.Context, args []string) int {
	p, code, done := c.parseFlags("run", "[flags]", aboutRun, runFlags, args)
	if done {
		return code
	}
	s, cerr := c.resolve(p, true)
	if cerr != nil {
		return c.fatal("run", false, cerr)
	}
	out := &syncWriter{w: redacting(c.stderr, s.key)}
	sink, cerr := c.eventSink(*p.strs["events"], &syncWriter{w: redacting(c.stdout, s.key)}, out)
	if cerr != nil {
		return c.fatal("run", false, cerr)
	}
	printWarnings(out, "run", s)
	if p.bool("verbose") {
		fmt.Fprintf(out, "knocker run: %s\n", s.describeOrigins())
	}
	if s.keyLayer == layerFlag && p.set["key"] {
		fmt.Fprintln(out, "knocker run: warning: --key is visible to other users in the process list; use --key-file or KNOCKER_KEY")
	}

	ctx, stop := c.notifyContext(ctx)
	defer stop()

	stamp := c.getenv("JOURNAL_STREAM") == "" && !c.plainLog // the journal adds its own timestamps
	logf := func(f family, format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		if l := f.label(); l != "" {
			line = "[" + l + "] " + line
		}
		if stamp {
			line = time.Now().Format("2006-01-02 15:04:05 ") + line
		}
		io.WriteString(out, line+"\n")
	}
	ttl := "the key's max_ttl"
	if s.ttl > 0 {
		ttl = formatDuration(s.ttl)
	}
	target := "this device"
	if s.ip != "" {
		target = s.ip
	}
	checks := "every " + formatDuration(s.checkInterval)
	if s.ipCheckURL != "" {
		checks += " at " + s.ipCheckURL
	}
	if s.checkInterval == 0 || s.ip != "" {
		checks = "off"
	}
	logf(familyAuto, "knocker %s: keeping %s whitelisted at %s (family %s, ttl %s, address check %s)",
		cliVersion(), target, s.server.Redacted(), s.family, ttl, checks)
	ev := newRunEvents(sink, s.family.members())
	ev.started()

	var wg sync.WaitGroup
	for _, f := range s.family.members() {
		m := &maintainer{
			cl:     c.newClient(s, f),
			s:      s,
			logf:   func(format string, args ...any) { logf(f, format, args...) },
			ev:     ev.family(f),
			random: c.random,
			now:    func() time.Time { return time.Now().Round(0) },
		}
		wg.Go(func() { m.loop(ctx) })
	}
	<-ctx.Done() // the loops end only then
	ev.serviceState(evStateStopping)
	wg.Wait()
	ev.stopped()
	logf(familyAuto, "stopped: %v", context.Cause(ctx))
	return exitOK
}

// maintainer keeps one address family whitelisted.
type maintainer struct {
	cl     *client
	s      *settings
	logf   func(format string, args ...any)
	ev     *familyEvents
	random func() float64
	// now is the wall clock without a monotonic reading: after a suspend,
	// a deadline that passed while the machine slept counts as passed.
	now func() time.Time
}

// maxSleep bounds each wait, so that the wall clock is looked at again at
// least this often (see now).
const maxSleep = 30 * time.Second

func (m *maintainer) loop(ctx context.Context) {
	s := m.s
	checking := s.checkInterval > 0 && s.ip == ""
	var (
		knockAt    = m.now() // next knock
		checkAt    time.Time // next address check
		ref        string    // this device's address as the server last saw it, or the network our grant covers (ipv6_prefix)
		entry      string    // the entry our last knock created
		expires    time.Time // when our grant ends, as far as we know
		trigger    string    // the new address that made us knock, if any
		knockFails int
		lastErr    *cmdError
		checkFails int
		lost       int    // consecutive checks that found our address not whitelisted
		looked     string // the address --ip-check-url last answered
	)
	if checking {
		checkAt = knockAt.Add(s.checkInterval)
	}
	for {
		next := knockAt
		if checking && checkAt.Before(next) {
			next = checkAt
		}
		m.ev.nextKnock(knockAt)
		if !m.sleepUntil(ctx, next) {
			return
		}
		if !m.now().Before(knockAt) {
			res, err := m.cl.knock(ctx, s.key, s.ttl, s.ip)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				knockFails++
				lastErr = err
				d := max(backoff(knockFails, s.retryMin, s.retryMax, m.random), err.retryAfter)
				m.logf("knock failed, retrying in %s: %s", formatDuration(d), err.msg)
				m.ev.knockFailed(cmp.Or(s.ip, ref), err.msg)
				knockAt = m.now().Add(d)
				continue
			}
			now := m.now()
			knockFails, lastErr = 0, nil
			granted := time.Duration(res.ExpiresIn) * time.Second
			expires = now.Add(granted)
			wait := refreshDelay(granted)
			knockAt = now.Add(wait)
			note := ""
			if s.ttl > 0 && granted < s.ttl {
				note = fmt.Sprintf(" (asked for %s: the server capped it)", formatDuration(s.ttl))
			}
			m.logf("whitelisted %s for %s%s; next knock in %s", sanitize(res.Entry), formatDuration(granted), note, formatDuration(wait))
			entry = res.Entry
			m.ev.knocked(res)
			if s.ip == "" {
				ref = res.Entry
				if trigger != "" && !covers(res.Entry, trigger) {
					m.logf("warning: the knock whitelisted %s, but /knock/status sees %s (different routes to the server?)", sanitize(res.Entry), sanitize(trigger))
					ref = trigger
				}
			}
			trigger = ""
			if checking {
				checkAt = now.Add(s.checkInterval)
			}
			continue
		}

		if s.ipCheckURL != "" {
			m.lookupAddress(ctx, &looked, &knockAt, &checkAt, &checkFails)
			continue
		}

		// Address check.
		st, err := m.cl.status(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if err.noStatus {
				m.logf("address checks off, re-knocking before expiry only: %s", err.msg)
				m.ev.failed(errHealthCheck, "Health check failed: "+err.msg, m.cl.statusURL)
				checking = false
				continue
			}
			checkFails++
			d := max(s.checkInterval, backoff(checkFails, s.retryMin, s.retryMax, m.random))
			m.logf("address check failed, next check in %s: %s", formatDuration(d), err.msg)
			m.ev.failed(errIPLookup, "Error getting public IP: "+err.msg, m.cl.statusURL)
			checkAt = m.now().Add(d)
			continue
		}
		now := m.now()
		checkFails = 0
		checkAt = now.Add(s.checkInterval)
		if lastErr != nil && lastErr.code == exitUnreachable && knockAt.After(now) {
			// The knocks failed for want of a connection, and the server
			// answers again: knock now rather than at the end of the backoff.
			m.logf("server reachable again (it sees %s); knocking now", sanitize(st.IP))
			knockAt = now
		}
		switch {
		case ref == "": // no grant yet
			ref = st.IP
		case !covers(ref, st.IP):
			m.logf("address changed: %s -> %s; knocking now", sanitize(ref), sanitize(st.IP))
			ref, trigger, knockAt, lost = st.IP, st.IP, now, 0
		case !st.Whitelisted:
			m.ev.cleared(now)
			if knockFails > 0 {
				break // already retrying
			}
			lost++
			at := now
			if lost > 1 { // it came back right after a knock: do not hammer
				at = now.Add(backoff(lost-1, s.retryMin, s.retryMax, m.random))
			}
			if at.Before(knockAt) {
				knockAt = at
				when := "now"
				if at.After(now) {
					when = "in " + formatDuration(at.Sub(now))
				}
				m.logf("the server does not list %s as whitelisted; knocking %s", sanitize(st.IP), when)
			}
		default:
			lost = 0
			if st.ExpiresIn == nil || st.Entry == nil || *st.Entry != entry {
				break // another grant covers us (a range whitelisted by an admin key)
			}
			// Another knock for this address may have shortened the grant
			// (the last knock wins): follow the server's expiry.
			server := now.Add(time.Duration(*st.ExpiresIn) * time.Second)
			if server.Before(expires.Add(-2 * time.Second)) {
				expires = server
				m.ev.shortened(st.ExpiresAt)
				if at := now.Add(refreshDelay(server.Sub(now))); at.Before(knockAt) {
					knockAt = at
					m.logf("the server's grant for %s ends in %s, sooner than expected; next knock in %s",
						sanitize(st.IP), formatDuration(server.Sub(now)), formatDuration(at.Sub(now)))
				}
			}
		}
	}
}

// covers reports whether ref, an address or a grant's network (the
// server's ipv6_prefix makes an own-address knock grant its /64), covers
// the address ip: temporary IPv6 addresses rotate within the network, and
// a grant for it needs no new knock.
func covers(ref, ip string) bool {
	if ref == ip {
		return true
	}
	p, err := netip.ParsePrefix(ref)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(ip)
	return err == nil && p.Contains(a)
}

// lookupAddress is the address check of knocker-cli's comparison mode: ask
// --ip-check-url for this device's address and knock at once when it
// differs from the last answer. The knock server's own view (/knock/status)
// is not consulted, so a lost grant is only restored by the next re-knock.
func (m *maintainer) lookupAddress(ctx context.Context, looked *string, knockAt, checkAt *time.Time, fails *int) {
	s := m.s
	ip, err := m.cl.lookupIP(ctx, s.ipCheckURL)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		*fails++
		d := max(s.checkInterval, backoff(*fails, s.retryMin, s.retryMax, m.random))
		m.logf("address lookup failed, next check in %s: %s", formatDuration(d), err.msg)
		m.ev.failed(errIPLookup, "Error getting public IP: "+err.msg, s.ipCheckURL)
		*checkAt = m.now().Add(d)
		return
	}
	now := m.now()
	*fails, *checkAt = 0, now.Add(s.checkInterval)
	if *looked != "" && ip != *looked {
		m.logf("address changed (per %s): %s -> %s; knocking now", s.ipCheckURL, sanitize(*looked), sanitize(ip))
		*knockAt = now
	}
	*looked = ip
}

// sleepUntil waits until the wall clock reaches t; false if ctx ended.
func (m *maintainer) sleepUntil(ctx context.Context, t time.Time) bool {
	for {
		now := m.now()
		d := t.Sub(now)
		if d <= 0 {
			return ctx.Err() == nil
		}
		d = min(d, maxSleep)
		// Wake when the grant lapses, to report it then.
		if lapse := m.ev.expire(now); !lapse.IsZero() {
			d = min(d, max(lapse.Sub(now), 0))
		}
		timer := time.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return false
		case <-timer.C:
		}
	}
}

// refreshDelay is when to knock again after a grant of ttl: at 90% of it,
// but at least 2s before it ends (expiry is counted in whole seconds), and
// not before half of it.
func refreshDelay(ttl time.Duration) time.Duration {
	if ttl <= 0 {
		return 5 * time.Minute
	}
	lead := max(ttl/10, 2*time.Second)
	return max(ttl-lead, ttl/2)
}

// backoff is the delay before retry n (1, 2, ...): lo doubled n-1 times,
// capped at hi, then jittered to between half and all of it.
func backoff(n int, lo, hi time.Duration, random func() float64) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	half := d / 2
	return half + time.Duration(random()*float64(d-half))
}

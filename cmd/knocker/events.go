package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Structured events, compatible with schema version 1 of knocker-cli's
// events (its docs/logging.md), which its GNOME Shell extension reads
// from the journal. Every value is a string; times are unix seconds.
const (
	eventSchemaVersion = "1"
	eventIdentifier    = "knocker" // SYSLOG_IDENTIFIER

	evServiceState     = "ServiceState"
	evStatusSnapshot   = "StatusSnapshot"
	evWhitelistApplied = "WhitelistApplied"
	evWhitelistExpired = "WhitelistExpired"
	evNextKnockUpdated = "NextKnockUpdated"
	evKnockTriggered   = "KnockTriggered"
	evError            = "Error"

	evStateStarted  = "started"
	evStateStopping = "stopping"
	evStateStopped  = "stopped"

	sourceSchedule = "schedule"
	sourceCLI      = "cli"

	cadenceTTLResponse = "ttl_response"

	errIPLookup    = "ip_lookup_failed"
	errHealthCheck = "health_check_failed"
	errKnockFailed = "knock_failed"
)

// Syslog priorities, as journald stores them.
const (
	priErr    = 3
	priNotice = 5
	priInfo   = 6
)

// event is one structured entry: name is KNOCKER_EVENT, fields the other
// KNOCKER_* fields.
type event struct {
	name     string
	message  string
	priority int
	fields   map[string]string
}

// entry is the whole entry as it is written: the fields with the common
// ones (identifier, schema version, event, MESSAGE, PRIORITY) added.
func (e event) entry() map[string]string {
	m := make(map[string]string, len(e.fields)+5)
	for k, v := range e.fields {
		m[k] = v
	}
	m["SYSLOG_IDENTIFIER"] = eventIdentifier
	m["KNOCKER_SCHEMA_VERSION"] = eventSchemaVersion
	m["KNOCKER_EVENT"] = e.name
	m["MESSAGE"] = e.message
	m["PRIORITY"] = strconv.Itoa(e.priority)
	return m
}

// eventSink is where events go: the journal, JSON lines, or nowhere.
type eventSink interface {
	emit(event)
}

// jsonSink writes each event as one JSON object on a line.
type jsonSink struct {
	mu sync.Mutex
	w  io.Writer
}

func (j *jsonSink) emit(e event) {
	b, _ := json.Marshal(e.entry()) // a map of strings always encodes
	j.mu.Lock()
	defer j.mu.Unlock()
	_, _ = j.w.Write(append(b, '\n'))
}

// eventsHelp documents --events.
const eventsHelp = "structured events (the original knocker-cli's journald schema 1): auto (the journal when there is one), journal, json (one JSON object per line on standard output) or off (default auto)"

// eventSink picks the sink for --events; nil: none. Under systemd the
// journal's socket exists (as knocker-cli detects it, whether or not
// JOURNAL_STREAM is set).
func (c *cli) eventSink(mode string, stdout io.Writer, stderr io.Writer) (eventSink, *cmdError) {
	switch mode {
	case "", "auto":
		if j := openJournal(c.goos, stderr); j != nil {
			return j, nil
		}
		return nil, nil
	case "journal":
		if j := openJournal(c.goos, stderr); j != nil {
			return j, nil
		}
		return nil, usageErr("--events journal: no journal here (no socket at %s)", journalSocket)
	case "json":
		return &jsonSink{w: stdout}, nil
	case "off", "none":
		return nil, nil
	}
	return nil, usageErr("invalid --events %q: must be auto, journal, json or off", mode)
}

func unixString(t int64) string { return strconv.FormatInt(t, 10) }

func rfc3339(unix int64) string { return time.Unix(unix, 0).UTC().Format(time.RFC3339) }

// grant is a whitelist entry that a knock created, as WhitelistApplied
// reports it.
type grant struct {
	ip        string
	expiresAt int64 // unix seconds, from the server
	ttl       int64 // seconds granted
}

// newGrant is the grant of a knock's answer; the entry comes from the
// server, so it is made safe to print (it is an address or a range).
func newGrant(res *knockResult) grant {
	return grant{ip: sanitize(res.Entry), expiresAt: res.ExpiresAt, ttl: res.ExpiresIn}
}

func (g grant) fields(source string, f family) map[string]string {
	m := map[string]string{"KNOCKER_WHITELIST_IP": g.ip}
	if g.ttl > 0 {
		m["KNOCKER_TTL_SEC"] = unixString(g.ttl)
	}
	if g.expiresAt > 0 {
		m["KNOCKER_EXPIRES_UNIX"] = unixString(g.expiresAt)
	}
	m["KNOCKER_SOURCE"] = source
	addFamily(m, f)
	return m
}

// applied is the WhitelistApplied event, with knocker-cli's message.
func (g grant) applied(source string, f family) event {
	msg := "Whitelisted " + g.ip
	if g.ttl > 0 && g.expiresAt > 0 {
		msg = fmt.Sprintf("Whitelisted %s for %ds (expires at %s)", g.ip, g.ttl, rfc3339(g.expiresAt))
	}
	return event{evWhitelistApplied, msg, priInfo, g.fields(source, f)}
}

// addFamily adds KNOCKER_FAMILY, an addition to schema 1 (whose consumers
// ignore fields they do not know): which family's grant an event is about
// when IPv4 and IPv6 are kept separately.
func addFamily(m map[string]string, f family) {
	if f == family4 || f == family6 {
		m["KNOCKER_FAMILY"] = f.jsonName()
	}
}

func knockTriggered(source string, ok bool, ip string, f family) event {
	e := event{name: evKnockTriggered, priority: priInfo, fields: map[string]string{"KNOCKER_TRIGGER_SOURCE": source, "KNOCKER_RESULT": "success"}}
	if !ok {
		e.priority, e.fields["KNOCKER_RESULT"] = priErr, "failure"
	}
	if ip != "" {
		e.fields["KNOCKER_WHITELIST_IP"] = ip
	}
	addFamily(e.fields, f)
	e.message = fmt.Sprintf("Knock triggered via %s: %s", source, e.fields["KNOCKER_RESULT"])
	return e
}

func errorEvent(code, msg, context string, f family) event {
	e := event{evError, msg, priErr, map[string]string{"KNOCKER_ERROR_CODE": code, "KNOCKER_ERROR_MSG": msg}}
	if context != "" {
		e.fields["KNOCKER_CONTEXT"] = context
	}
	addFamily(e.fields, f)
	return e
}

// runEvents tracks what `knocker run` has reported, for the snapshots:
// each family's grant and next knock.
type runEvents struct {
	sink    eventSink // nil: events are tracked but not written
	fams    []family
	mu      sync.Mutex
	grants  map[family]grant
	next    map[family]time.Time
	cadence map[family]string // why next[f] is when it is; "" unknown
	nextAt  int64             // the NEXT_AT_UNIX last reported
}

func newRunEvents(sink eventSink, fams []family) *runEvents {
	return &runEvents{sink: sink, fams: fams, grants: map[family]grant{}, next: map[family]time.Time{}, cadence: map[family]string{}}
}

// emit writes e; the caller holds r.mu, so that events keep their order.
func (r *runEvents) emit(e event) {
	if r.sink != nil {
		r.sink.emit(e)
	}
}

func (r *runEvents) serviceState(state string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.emitState(state)
}

func (r *runEvents) emitState(state string) {
	pri := priInfo
	if state == evStateStopping {
		pri = priNotice
	}
	r.emit(event{evServiceState, "Service state: " + state, pri,
		map[string]string{"KNOCKER_SERVICE_STATE": state, "KNOCKER_VERSION": cliVersion()}})
}

// started reports the start and the (empty) state.
func (r *runEvents) started() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.emitState(evStateStarted)
	r.emitSnapshot()
}

// stopped clears the next knock, as knocker-cli does on its way out, and
// reports the final state. The grants stay: they are still valid.
func (r *runEvents) stopped() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.next)
	r.reportNext()
	r.emitSnapshot()
	r.emitState(evStateStopped)
}

// emitSnapshot reports the state. With several families the first one's
// grant (IPv4) is the one described, and KNOCKER_WHITELIST_IPS_JSON lists
// every family's entry.
func (r *runEvents) emitSnapshot() {
	m := map[string]string{}
	var ips []string
	for _, f := range r.fams {
		g, ok := r.grants[f]
		if !ok {
			continue
		}
		if len(ips) == 0 {
			m["KNOCKER_WHITELIST_IP"] = g.ip
			if g.expiresAt > 0 {
				m["KNOCKER_EXPIRES_UNIX"] = unixString(g.expiresAt)
			}
			if g.ttl > 0 {
				m["KNOCKER_TTL_SEC"] = unixString(g.ttl)
			}
		}
		ips = append(ips, g.ip)
	}
	if len(r.fams) > 1 && len(ips) > 0 {
		b, _ := json.Marshal(ips)
		m["KNOCKER_WHITELIST_IPS_JSON"] = string(b)
	}
	if r.nextAt > 0 {
		m["KNOCKER_NEXT_AT_UNIX"] = unixString(r.nextAt)
		if src := r.cadence[r.nextFamily()]; src != "" {
			m["KNOCKER_CADENCE_SOURCE"] = src
		}
	}
	r.emit(event{evStatusSnapshot, "Status snapshot", priInfo, m})
}

// nextFamily is the family whose knock comes first.
func (r *runEvents) nextFamily() family {
	fams := make([]family, 0, len(r.next))
	for f := range r.next {
		fams = append(fams, f)
	}
	sort.Slice(fams, func(i, j int) bool { return r.next[fams[i]].Before(r.next[fams[j]]) })
	if len(fams) == 0 {
		return familyAuto
	}
	return fams[0]
}

// reportNext emits NextKnockUpdated when the first of the families' next
// knocks moved to another second. A knock due now is not reported: the
// knock's own events follow at once.
func (r *runEvents) reportNext() {
	var unix int64
	if len(r.next) > 0 {
		at := r.next[r.nextFamily()]
		if !at.After(time.Now()) {
			return
		}
		unix = at.Unix()
	}
	if unix == r.nextAt {
		return
	}
	r.nextAt = unix
	m := map[string]string{"KNOCKER_NEXT_AT_UNIX": unixString(unix)}
	msg := "Next knock cleared"
	if unix > 0 {
		msg = "Next knock at " + rfc3339(unix)
		if src := r.cadence[r.nextFamily()]; src != "" {
			m["KNOCKER_CADENCE_SOURCE"] = src
		}
	}
	r.emit(event{evNextKnockUpdated, msg, priInfo, m})
	if unix > 0 {
		// As knocker-cli: the snapshot after a new schedule carries it, so
		// a consumer that keeps the last snapshot as the state knows it.
		r.emitSnapshot()
	}
}

// familyEvents are the events of one family's maintainer.
type familyEvents struct {
	r *runEvents
	f family
}

func (r *runEvents) family(f family) *familyEvents { return &familyEvents{r, f} }

// nextKnock notes when this family knocks next.
func (e *familyEvents) nextKnock(at time.Time) {
	e.r.mu.Lock()
	defer e.r.mu.Unlock()
	e.r.next[e.f] = at
	e.r.reportNext()
}

// knocked reports a successful scheduled knock.
func (e *familyEvents) knocked(res *knockResult) {
	e.r.mu.Lock()
	defer e.r.mu.Unlock()
	g := newGrant(res)
	e.r.grants[e.f] = g
	e.r.cadence[e.f] = cadenceTTLResponse
	e.r.emit(knockTriggered(sourceSchedule, true, g.ip, e.f))
	e.r.emit(g.applied(sourceSchedule, e.f))
	e.r.emitSnapshot()
}

// knockFailed reports a failed scheduled knock for target ("" unknown).
func (e *familyEvents) knockFailed(target, msg string) {
	e.r.mu.Lock()
	defer e.r.mu.Unlock()
	e.r.cadence[e.f] = "" // the next knock is a retry
	e.r.emit(knockTriggered(sourceSchedule, false, target, e.f))
	e.r.emit(errorEvent(errKnockFailed, "Knock failed: "+msg, target, e.f))
}

// failed reports another error (address lookup, health check).
func (e *familyEvents) failed(code, msg, context string) {
	e.r.mu.Lock()
	defer e.r.mu.Unlock()
	e.r.emit(errorEvent(code, msg, context, e.f))
}

// expire reports the family's grant as expired once now reaches its expiry,
// and returns when that will be (zero: no grant tracked).
func (e *familyEvents) expire(now time.Time) time.Time {
	e.r.mu.Lock()
	defer e.r.mu.Unlock()
	g, ok := e.r.grants[e.f]
	if !ok || g.expiresAt <= 0 {
		return time.Time{}
	}
	if now.Unix() < g.expiresAt {
		return time.Unix(g.expiresAt, 0)
	}
	e.lapsed(g, g.expiresAt)
	return time.Time{}
}

// cleared reports the family's grant as gone before its time: the server
// no longer lists the address.
func (e *familyEvents) cleared(now time.Time) {
	e.r.mu.Lock()
	defer e.r.mu.Unlock()
	if g, ok := e.r.grants[e.f]; ok {
		e.lapsed(g, now.Unix())
	}
}

func (e *familyEvents) lapsed(g grant, at int64) {
	delete(e.r.grants, e.f)
	m := map[string]string{"KNOCKER_WHITELIST_IP": g.ip, "KNOCKER_EXPIRED_UNIX": unixString(at)}
	addFamily(m, e.f)
	e.r.emit(event{evWhitelistExpired, fmt.Sprintf("Whitelist expired for %s at %s", g.ip, rfc3339(at)), priNotice, m})
	e.r.emitSnapshot()
}

// shortened follows the server's expiry (nil: not given) when another
// knock shortened the grant.
func (e *familyEvents) shortened(expiresAt *int64) {
	e.r.mu.Lock()
	defer e.r.mu.Unlock()
	if g, ok := e.r.grants[e.f]; ok && expiresAt != nil && g.expiresAt != *expiresAt {
		g.expiresAt = *expiresAt
		e.r.grants[e.f] = g
		e.r.emitSnapshot()
	}
}

// knockEvents reports a `knocker knock` for one family, as knocker-cli's
// knock command does: KnockTriggered and WhitelistApplied (source "cli"),
// or KnockTriggered and Error.
func knockEvents(sink eventSink, f family, res *knockResult, err *cmdError) {
	if sink == nil {
		return
	}
	if err != nil {
		msg := "Manual knock failed: " + err.msg
		e := knockTriggered(sourceCLI, false, "", f)
		e.message = msg
		sink.emit(e)
		sink.emit(errorEvent(errKnockFailed, msg, sourceCLI, f))
		return
	}
	g := newGrant(res)
	e := knockTriggered(sourceCLI, true, g.ip, f)
	e.message = "Manual knock succeeded"
	sink.emit(e)
	sink.emit(g.applied(sourceCLI, f))
}

package knocker

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-knocker/knocker/store"
)

// The gate's placeholders (see docs/configuration.md#placeholders):
// {http.knocker.client_ip}, {http.knocker.entry}, {http.knocker.expires_in}
// and {http.knocker.denied_reason}.
const placeholderPrefix = "http.knocker."

// The gate's outcomes: admitted, or the reason of a denial, the values of
// {http.knocker.denied_reason}.
const (
	outcomeAdmitted      = "admitted" // a grant or always_allow
	reasonNotWhitelisted = "not_whitelisted"
	reasonNoClientIP     = "no_client_ip"
	reasonEarlyData      = "early_data"
)

// outcomeVar holds, in Caddy's vars, the outcome of the request's last
// gate, as a *gateOutcome of that gate.
const outcomeVar = "knocker.outcome"

// gateOutcome is one of a gate's outcomes. Each gate holds one per outcome
// (see Gate.outcomes), so recording one costs no allocation.
type gateOutcome struct {
	gate   *Gate
	reason string // outcomeAdmitted or the reason of a denial
}

// The indexes of Gate.outcomes.
const (
	gateAdmitted = iota
	deniedNotWhitelisted
	deniedNoClientIP
	deniedEarlyData
	numGateOutcomes
)

func (g *Gate) provisionOutcomes() {
	for i, reason := range [numGateOutcomes]string{outcomeAdmitted, reasonNotWhitelisted, reasonNoClientIP, reasonEarlyData} {
		g.outcomes[i] = gateOutcome{gate: g, reason: reason}
	}
}

// denied is the outcome of a denial for why.
func (g *Gate) denied(why error) *gateOutcome {
	switch why {
	case errNoClientIP:
		return &g.outcomes[deniedNoClientIP]
	case errEarlyData:
		return &g.outcomes[deniedEarlyData]
	}
	return &g.outcomes[deniedNotWhitelisted]
}

// notePlaceholders records a gate's outcome for r and, the first time,
// adds the provider of the placeholders to r's replacer. The values are
// computed only when a placeholder is used: an admitted request pays one
// small allocation (the provider) and a map write. The outcome is kept in
// Caddy's vars, so that a second gate on the same request updates it.
func notePlaceholders(r *http.Request, vars map[string]any, outcome *gateOutcome) {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if vars == nil || repl == nil {
		return
	}
	_, installed := vars[outcomeVar]
	vars[outcomeVar] = outcome
	if !installed {
		repl.Map(func(key string) (any, bool) { return placeholder(key, vars) })
	}
}

// placeholder answers the {http.knocker.*} placeholders of the request
// whose Caddy vars are vars.
func placeholder(key string, vars map[string]any) (any, bool) {
	name, ok := strings.CutPrefix(key, placeholderPrefix)
	if !ok {
		return nil, false
	}
	o, _ := vars[outcomeVar].(*gateOutcome)
	if o == nil {
		return nil, false
	}
	var ip netip.Addr
	if o.reason == outcomeAdmitted || o.reason == reasonNotWhitelisted {
		// The gate resolved the client from these vars (callerOf).
		s, _ := vars[caddyhttp.ClientIPVarKey].(string)
		if addr, err := netip.ParseAddr(s); err == nil {
			ip = addr.Unmap()
		}
	}
	switch name {
	case "client_ip":
		if !ip.IsValid() {
			return "", true
		}
		return ip.String(), true
	case "denied_reason":
		if o.reason == outcomeAdmitted {
			return "", true
		}
		return o.reason, true
	case "entry", "expires_in":
		if o.reason != outcomeAdmitted || !ip.IsValid() {
			return "", true
		}
		ts := now().Unix()
		e, found, err := o.gate.app.matchIn(ip, o.gate.Scope, ts)
		switch {
		case err != nil || !found: // always_allow without a grant
			return "", true
		case name == "entry":
			return store.FormatPrefix(e.Prefix), true
		default:
			return e.Expires - ts, true
		}
	}
	return nil, false
}

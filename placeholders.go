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

// outcomeVar holds, in Caddy's vars, the outcome of the request's last gate.
const outcomeVar = "knocker.outcome"

// deniedReason is the token of a denial (as an any holding a constant,
// which costs no allocation).
func deniedReason(why error) any {
	switch why {
	case errNoClientIP:
		return reasonNoClientIP
	case errEarlyData:
		return reasonEarlyData
	}
	return reasonNotWhitelisted
}

// notePlaceholders records the gate's outcome for r and, the first time,
// adds the provider of the placeholders to r's replacer. The values are
// computed only when a placeholder is used: an admitted request pays one
// small allocation (the provider) and a map write. The outcome is kept in
// Caddy's vars, so that a second gate on the same request updates it.
func (g *Gate) notePlaceholders(r *http.Request, vars map[string]any, outcome any) {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if vars == nil || repl == nil {
		return
	}
	_, installed := vars[outcomeVar]
	vars[outcomeVar] = outcome
	if !installed {
		app := g.app
		repl.Map(func(key string) (any, bool) { return app.placeholder(key, vars) })
	}
}

// placeholder answers the {http.knocker.*} placeholders of the request
// whose Caddy vars are vars.
func (a *App) placeholder(key string, vars map[string]any) (any, bool) {
	name, ok := strings.CutPrefix(key, placeholderPrefix)
	if !ok {
		return nil, false
	}
	outcome, _ := vars[outcomeVar].(string)
	var ip netip.Addr
	if outcome == outcomeAdmitted || outcome == reasonNotWhitelisted {
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
		if outcome == outcomeAdmitted {
			return "", true
		}
		return outcome, true
	case "entry", "expires_in":
		if outcome != outcomeAdmitted || !ip.IsValid() {
			return "", true
		}
		ts := now().Unix()
		e, found, err := a.match(ip, ts)
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

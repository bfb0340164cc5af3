package knocker

import (
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-knocker/knocker/internal/scope"
)

func init() {
	caddy.RegisterModule(MatchKnocked{})
}

// MatchKnocked matches requests whose client holds an active grant that
// admits Scope: the gate's decision without always_allow and exclusions,
// for routing (a landing page for strangers, the app for knocked clients)
// rather than denying.
//
// The client is Caddy's resolved client IP, judged as the gate judges it:
// no usable client IP, or a store that cannot be opened, is no match; a
// TLS 0-RTT request is no match and is answered 425, as Caddy's own IP
// matchers do, so the client retries once its address is verified.
type MatchKnocked struct {
	// Scope, when set, is the scope a grant must admit; a grant of an
	// unscoped key admits every scope. Empty: any grant of an unscoped key.
	Scope string `json:"scope,omitempty"`

	app *App
}

// CaddyModule returns the Caddy module information.
func (MatchKnocked) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.matchers.knocked",
		New: func() caddy.Module { return new(MatchKnocked) },
	}
}

// Provision checks the scope and finds the knocker app.
func (m *MatchKnocked) Provision(ctx caddy.Context) error {
	if err := scope.Check(m.Scope); err != nil {
		return fmt.Errorf("scope: %w", err)
	}
	app, err := knockerApp(ctx)
	if err != nil {
		return err
	}
	m.app = app
	return nil
}

// AppFrom returns the knocker app of ctx's config, loading it if need be,
// for modules in other packages that decide with it (the layer4 matcher);
// it fails when the config has no usable knocker app.
func AppFrom(ctx caddy.Context) (*App, error) { return knockerApp(ctx) }

// UnmarshalCaddyfile sets up the matcher from Caddyfile tokens. Syntax:
//
//	knocked [<scope>]
func (m *MatchKnocked) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	s, err := scope.ParseMatcher(d)
	m.Scope = s
	return err
}

// Match implements caddyhttp.RequestMatcher; its error, if any, is left
// where Caddy looks for matcher errors.
func (m *MatchKnocked) Match(r *http.Request) bool {
	ok, err := m.MatchWithError(r)
	if err != nil {
		caddyhttp.SetVar(r.Context(), caddyhttp.MatcherErrorVarKey, err)
	}
	return ok
}

// MatchWithError implements caddyhttp.RequestMatcherWithError.
func (m *MatchKnocked) MatchWithError(r *http.Request) (bool, error) {
	if isEarlyData(r) {
		return false, caddyhttp.Error(http.StatusTooEarly, errEarlyData)
	}
	c := m.app.resolveClient(r)
	if !c.ok {
		return false, nil
	}
	return m.app.allowedIn(c.ip, m.Scope, now().Unix()), nil
}

// Interface guards.
var (
	_ caddy.Provisioner                 = (*MatchKnocked)(nil)
	_ caddyfile.Unmarshaler             = (*MatchKnocked)(nil)
	_ caddyhttp.RequestMatcher          = (*MatchKnocked)(nil)
	_ caddyhttp.RequestMatcherWithError = (*MatchKnocked)(nil)
)

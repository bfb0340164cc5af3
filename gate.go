package knocker

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-knocker/knocker/internal/scope"
)

func init() {
	caddy.RegisterModule(Gate{})
}

// Gate is the knocker middleware: it lets a request through when its client
// IP holds an active grant, is always allowed, or its path is excluded, and
// otherwise returns an HTTP error (deny_status), which handle_errors can
// render.
//
// The client IP is Caddy's resolved client IP: configure trusted_proxies
// (and trusted_proxies_strict) in the servers global option when Caddy sits
// behind another proxy.
type Gate struct {
	AccessPolicy
	// DenyStatus is the HTTP status for a denied request. Default 401.
	DenyStatus int `json:"deny_status,omitempty"`
	// DenyRedirect, an absolute http(s) URL of the knock web app, sends
	// browsers that are not let in there instead (portal.go), with the URL
	// they asked for as ?return=. Other requests get DenyStatus.
	DenyRedirect string `json:"deny_redirect,omitempty"`
	// Scope makes the gate admit grants of keys with this scope, besides
	// those of keys without scopes (full access). Without it the gate
	// admits only the latter: giving a key scopes never opens an unscoped
	// gate to it.
	Scope string `json:"scope,omitempty"`

	app    *App
	logger *zap.Logger
	// errorRoutes: the server has handle_errors routes, which a denial
	// must reach as a Caddy error.
	errorRoutes bool
	redirect    *denyRedirect                // from DenyRedirect; nil without
	outcomes    [numGateOutcomes]gateOutcome // see placeholders.go
}

var (
	errNotWhitelisted = errors.New("client IP is not whitelisted")
	errNoClientIP     = errors.New("client IP could not be determined")
	errEarlyData      = errors.New("TLS handshake not complete (0-RTT); client IP not verified")
)

// CaddyModule returns the Caddy module information.
func (Gate) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.knocker",
		New: func() caddy.Module { return new(Gate) },
	}
}

// Provision sets up the gate.
func (g *Gate) Provision(ctx caddy.Context) error {
	g.logger = ctx.Logger()
	app, err := knockerApp(ctx)
	if err != nil {
		return err
	}
	g.app = app
	if err := g.AccessPolicy.provision(); err != nil {
		return err
	}
	g.errorRoutes = hasErrorRoutes(ctx)
	g.provisionOutcomes()
	if err := checkGateScope(g.Scope); err != nil {
		return err
	}
	if g.DenyStatus == 0 {
		g.DenyStatus = http.StatusUnauthorized
	}
	if g.DenyStatus < 400 || g.DenyStatus > 599 {
		return fmt.Errorf("deny_status: must be a 4xx or 5xx status, got %d", g.DenyStatus)
	}
	if g.DenyRedirect != "" {
		if g.redirect, err = parseDenyRedirect(g.DenyRedirect); err != nil {
			return fmt.Errorf("deny_redirect: %w", err)
		}
	}
	return nil
}

// checkGateScope reports why scope cannot name a gate's scope ("" is
// none: full-access grants only).
func checkGateScope(name string) error {
	if err := scope.Check(name); err != nil {
		return fmt.Errorf("scope: %w", err)
	}
	return nil
}

// hasErrorRoutes reports whether an error returned by a handler provisioned
// in ctx would reach error routes: the server's (handle_errors) or those of
// a subroute enclosing it. Unknown (no server) counts as yes.
func hasErrorRoutes(ctx caddy.Context) bool {
	srv, _ := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if srv == nil || srv.Errors != nil && len(srv.Errors.Routes) > 0 {
		return true
	}
	for _, m := range ctx.Modules() {
		if sr, ok := m.(*caddyhttp.Subroute); ok && sr.Errors != nil && len(sr.Errors.Routes) > 0 {
			return true
		}
	}
	return false
}

// knockerApp returns the knocker app, which handlers cannot work without.
func knockerApp(ctx caddy.Context) (*App, error) {
	v, err := ctx.App("knocker")
	if err != nil {
		return nil, fmt.Errorf("knocker app: %w", err)
	}
	app, ok := v.(*App)
	if !ok || app == nil {
		return nil, fmt.Errorf("knocker app has unexpected type %T", v)
	}
	return app, nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (g *Gate) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	r = g.app.dropKnockerKey(r) // first: every answer below may be an error
	if isEarlyData(r) {
		return g.refuse(w, r, http.StatusTooEarly, errEarlyData)
	}
	if len(g.exclude) > 0 && g.excludes(r.URL.EscapedPath()) {
		metrics.countGate(decisionExcluded)
		return g.app.passOn(w, r, next, g.logger)
	}
	c := g.app.resolveClient(r)
	if !c.ok {
		return g.refuse(w, r, g.DenyStatus, errNoClientIP)
	}
	if g.allows(c.ip) {
		metrics.countGate(decisionAlwaysAllowed)
		notePlaceholders(r, c.vars, &g.outcomes[gateAdmitted])
		return g.app.passOn(w, r, next, g.logger)
	}
	if g.app.allowedIn(c.ip, g.Scope, now().Unix()) {
		metrics.countGate(decisionAllowed)
		notePlaceholders(r, c.vars, &g.outcomes[gateAdmitted])
		return g.app.passOn(w, r, next, g.logger)
	}
	return g.refuse(w, r, g.DenyStatus, errNotWhitelisted)
}

// refuse answers r with status: as a Caddy error, so that handle_errors
// (or a subroute's errors routes) can render it, unless r carried a knocker
// key (see keyheader.go) or no error routes can see it. Then Caddy would
// only write the status and log the error (debug level, error level for a
// 5xx), after building it (an ID, a stack trace) and encoding the request
// into its error log's context. A scanner flood is this path's workload, so
// the gate does the same itself at a fraction of the cost. Unlike Caddy's
// error answer, middleware wrapping the gate sees this response. Either
// way the placeholders say why (placeholders.go). With deny_redirect, a
// browser's page navigation without a grant is redirected instead
// (portal.go): knocking cannot help a client without a usable IP.
func (g *Gate) refuse(w http.ResponseWriter, r *http.Request, status int, why error) error {
	vars, _ := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
	notePlaceholders(r, vars, g.denied(why))
	metrics.countGate(decisionDenied)
	switch {
	case carriedKnockerKey(r):
		writeStatus(w, status)
	case g.redirect != nil && why == errNotWhitelisted && g.redirect.serve(w, r):
		status = portalRedirectStatus
	case !g.errorRoutes:
		w.WriteHeader(status)
	default:
		return caddyhttp.Error(status, why)
	}
	level := zapcore.DebugLevel
	if status >= 500 {
		level = zapcore.ErrorLevel
	}
	if c := g.logger.Check(level, why.Error()); c != nil {
		client, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
		c.Write(zap.Int("status", status), zap.String("client_ip", client), zap.String("uri", r.RequestURI))
	}
	return nil
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*Gate)(nil)
	_ caddyhttp.MiddlewareHandler = (*Gate)(nil)
)

package knocker

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-knocker/knocker/firewall"
	"github.com/caddy-knocker/knocker/internal/knockapi"
	"github.com/caddy-knocker/knocker/internal/limiter"
	"github.com/caddy-knocker/knocker/internal/pathmatch"
	"github.com/caddy-knocker/knocker/internal/webapp"
	"github.com/caddy-knocker/knocker/store"
)

func init() {
	caddy.RegisterModule(Knock{})
}

// Knock serves the knock API: POST/OPTIONS /knock (wire-compatible with the
// original service and its web, CLI and Android clients), GET /verify (a
// forward-auth decision for proxies outside this Caddy), GET /health and
// GET /ready, and the web app at GET /. Requests for other paths pass to the
// next handler, so knock and the knocker gate can share a site.
type Knock struct {
	// CORSOrigin is sent as Access-Control-Allow-Origin on /knock. Default *.
	CORSOrigin string `json:"cors_origin,omitempty"`
	// AccessPolicy is whom /verify admits without a grant.
	AccessPolicy
	// ExcludeHosts maps a forwarded host (X-Forwarded-Host, from a trusted
	// proxy) to path prefixes /verify admits for that host; "*" is any host.
	ExcludeHosts map[string][]string `json:"exclude_hosts,omitempty"`
	// DisableWeb stops serving the web app (GET /, its scripts, styles,
	// manifest and icons), e.g. when knock shares a site whose / is the
	// protected application.
	DisableWeb bool `json:"disable_web,omitempty"`
	// ReturnHosts are the hosts the web app sends a browser back to after
	// a knock, from the return parameter a gate's deny_redirect adds
	// (returnhosts.go): host names, IPs, or *.<name> for subdomains.
	ReturnHosts []string `json:"return_hosts,omitempty"`

	app          *App
	excludeHosts map[string]pathmatch.Prefixes
	returnHosts  []string // normalised ReturnHosts
	logger       *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Knock) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.knock",
		New: func() caddy.Module { return new(Knock) },
	}
}

// Provision sets up the handler.
func (k *Knock) Provision(ctx caddy.Context) error {
	k.logger = ctx.Logger()
	app, err := knockerApp(ctx)
	if err != nil {
		return err
	}
	k.app = app
	if srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok {
		k.warnIfAccessLogsRecordTheKey(ctx, srv)
	}
	if k.CORSOrigin == "" {
		k.CORSOrigin = "*"
	}
	if err := k.AccessPolicy.provision(); err != nil {
		return err
	}
	k.excludeHosts = make(map[string]pathmatch.Prefixes, len(k.ExcludeHosts))
	for host, prefixes := range k.ExcludeHosts {
		h := pathmatch.NormalizeHost(host)
		if h == "" {
			return fmt.Errorf("exclude_hosts: %q is not a host name", host)
		}
		ps, err := pathmatch.ParsePrefixes(fmt.Sprintf("exclude_hosts[%s]", host), prefixes)
		if err != nil {
			return err
		}
		k.excludeHosts[h] = append(k.excludeHosts[h], ps...)
	}
	if k.returnHosts, err = parseReturnHosts(k.ReturnHosts); err != nil {
		return err
	}
	return nil
}

// endpointPath is p as the knock API matches it: repeated slashes collapsed
// and one trailing slash dropped, so that //knock and /knock/ (as clients
// and users type it) are the knock endpoint, not another path that would
// pass the key on.
func endpointPath(p string) string {
	if !strings.Contains(p, "//") && (len(p) < 2 || p[len(p)-1] != '/') {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 && p[i-1] == '/' {
			continue
		}
		b.WriteByte(p[i])
	}
	out := b.String()
	if len(out) > 1 {
		out = strings.TrimSuffix(out, "/")
	}
	return out
}

// endpoint serves one route of the knock API. presented is the request's
// X-Api-Key, which only /knock reads.
type endpoint func(k *Knock, w http.ResponseWriter, r *http.Request, presented string)

// endpoints are the knock API's routes, by endpointPath.
var endpoints = map[string]endpoint{
	"/knock":        (*Knock).serveKnock,
	"/knock/status": keyless((*Knock).serveStatus),
	"/knock/portal": keyless((*Knock).servePortal),
	"/verify":       keyless((*Knock).serveVerify),
	"/health":       keyless((*Knock).serveHealth),
	"/ready":        keyless((*Knock).serveReady),
}

func keyless(serve func(*Knock, http.ResponseWriter, *http.Request)) endpoint {
	return func(k *Knock, w http.ResponseWriter, r *http.Request, _ string) { serve(k, w, r) }
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (k *Knock) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	path := endpointPath(r.URL.Path)
	serve, ok := endpoints[path]
	if !ok && strings.HasPrefix(path, "/knock/") {
		// Answered here, never passed on: a client that sends its key to
		// a mistyped knock URL must not reach a handler whose error would
		// put the request headers in Caddy's log.
		serve, ok = (*Knock).serveUnknown, true
	}
	if !ok {
		if !k.DisableWeb && webapp.Serve(w, r) {
			return nil
		}
		return k.app.passOn(w, k.app.dropKnockerKey(r), next, k.logger)
	}
	// Read the key, then drop it from the shared header map so that
	// nothing after this handler sees it. (Access logs record the headers
	// as they arrived: see docs/configuration.md, "Logging", on their
	// filter.)
	presented := r.Header.Get("X-Api-Key")
	r.Header.Del("X-Api-Key")
	serve(k, w, r, presented)
	return nil
}

// serveUnknown answers a path under /knock/ that is no endpoint.
func (k *Knock) serveUnknown(w http.ResponseWriter, _ *http.Request, _ string) {
	w.Header().Set("Access-Control-Allow-Origin", k.CORSOrigin)
	knockapi.WriteError(w, knockapi.NewError(http.StatusNotFound, knockapi.MsgNotFound))
}

// serveKnock answers every outcome with the Python Knocker's status codes
// and JSON bodies, which its clients parse: it writes its responses rather
// than return Caddy errors (which handle_errors would render as Caddy
// pages, and whose log entry would print the request headers). Every
// answer but a CORS preflight counts in the knock metrics (metrics.go).
func (k *Knock) serveKnock(w http.ResponseWriter, r *http.Request, presented string) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", k.CORSOrigin)
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "X-Api-Key, Content-Type")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	began := time.Now()
	metrics.countKnock(k.answerKnock(w, r, presented), began)
}

// answerKnock answers a knock that is no preflight and returns the status
// written.
func (k *Knock) answerKnock(w http.ResponseWriter, r *http.Request, presented string) int {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST, OPTIONS")
		return writeError(w, knockapi.NewError(http.StatusMethodNotAllowed, knockapi.MsgMethod))
	}
	if isEarlyData(r) {
		return writeError(w, knockapi.NewError(http.StatusTooEarly, knockapi.MsgTooEarly))
	}

	ts := now().Unix()
	client := k.app.resolveClient(r)
	if presented == "" {
		// No key, so no guess: such a request must not use up the failure
		// window, or any web page the owner visits could lock the owner's
		// knocks out with keyless POSTs, which need no CORS preflight. (A
		// wrong key still counts; a restrictive cors_origin keeps other
		// pages from sending one.) The answer is the one the checks below
		// would give, and says nothing about any key.
		if !client.ok {
			return writeError(w, knockapi.NewError(http.StatusBadRequest, knockapi.MsgNoClientIP))
		}
		return writeError(w, knockapi.NewError(http.StatusUnauthorized, knockapi.MsgBadKey))
	}
	res, retry, ok := k.app.limiter.Reserve(client.actor, ts, k.app.limits)
	if !ok {
		return k.rateLimited(w, retry)
	}
	resp, apiErr := k.knock(r, presented, client, &res, ts)
	res.Settle(apiErr == nil)
	// A client's own failure that fills its window bans it on every node;
	// a server's (5xx: the engine, the disk) bans nobody elsewhere.
	if apiErr != nil && apiErr.Status < 500 && k.app.repl != nil {
		if until, full := k.app.limiter.FailuresFull(client.actor, ts, k.app.limits); full {
			k.app.banEverywhere(k.app.limiter.Key(client.actor), until)
		}
	}
	if apiErr != nil {
		if apiErr.Status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", strconv.FormatInt(apiErr.RetryAfter, 10))
		}
		return writeError(w, apiErr)
	}
	knockapi.WriteJSON(w, http.StatusOK, resp)
	return http.StatusOK
}

// writeError writes e and returns its status.
func writeError(w http.ResponseWriter, e *knockapi.Error) int {
	knockapi.WriteError(w, e)
	return e.Status
}

func (k *Knock) rateLimited(w http.ResponseWriter, retryAfter int64) int {
	w.Header().Set("Retry-After", strconv.FormatInt(retryAfter, 10))
	return writeError(w, knockapi.NewError(http.StatusTooManyRequests, knockapi.MsgRateLimited))
}

// knock runs the Python Knocker's checks in its order. Its caller
// settles res, whatever the answer.
func (k *Knock) knock(r *http.Request, presented string, client resolvedClient, res *limiter.Reservation, ts int64) (knockapi.KnockResponse, *knockapi.Error) {
	ip := client.ip
	if !client.ok {
		return knockapi.KnockResponse{}, knockapi.NewError(http.StatusBadRequest, knockapi.MsgNoClientIP)
	}
	key := k.app.keys.Authenticate(presented)
	if key == nil {
		return knockapi.KnockResponse{}, knockapi.NewError(http.StatusUnauthorized, knockapi.MsgBadKey)
	}
	body, apiErr := knockapi.ReadBody(r)
	if apiErr != nil {
		return knockapi.KnockResponse{}, apiErr
	}
	req, apiErr := knockapi.ParseBody(r.Header.Get("Content-Type"), body)
	if apiErr != nil {
		return knockapi.KnockResponse{}, apiErr
	}

	// The caller's own network may be wider than the remote-whitelist
	// limit: the key's ipv6_prefix, set by the operator, allows it.
	peer, _ := peerIP(r)
	target := knockapi.OwnPrefix(ip, peer, key.IPv6Prefix)
	if req.HasTarget {
		if !key.AllowRemote {
			return knockapi.KnockResponse{}, knockapi.NewError(http.StatusForbidden, knockapi.MsgNoRemote)
		}
		target, _ = knockapi.ParseTarget(req.Target) // validated by knockapi.ParseBody
		if knockapi.TooBroad(target) {
			return knockapi.KnockResponse{}, knockapi.NewError(http.StatusBadRequest, knockapi.MsgTooBroad)
		}
	}
	if req.TTLTooLarge {
		return knockapi.KnockResponse{}, knockapi.NewError(http.StatusBadRequest, knockapi.MsgTTLTooLarge)
	}
	ttl := int64(knockapi.MaxTTL)
	if req.TTL > 0 {
		ttl = req.TTL
	}
	ttl = min(ttl, key.MaxTTL)

	if retry, ok := res.TakeSuccess(); !ok {
		e := knockapi.NewError(http.StatusTooManyRequests, knockapi.MsgRateLimited)
		e.RetryAfter = retry
		return knockapi.KnockResponse{}, e
	}
	expires := ts + ttl
	// With firewalld, the ports open before the grant is persisted, and
	// close again if persisting fails: a 200 means both took effect.
	var undo func()
	if fw := k.app.fw; fw != nil {
		var err error
		if undo, err = fw.PrepareGrant(r.Context(), firewall.Grant{Prefix: target, Expires: expires, Scopes: key.Scopes}); err != nil {
			k.logger.Error("firewall rules not added", zap.Stringer("client_ip", ip), zap.String("entry", store.FormatPrefix(target)), zap.Error(err))
			if errors.Is(err, firewall.ErrBusy) {
				return knockapi.KnockResponse{}, knockapi.NewError(http.StatusServiceUnavailable, knockapi.MsgFirewallBusy)
			}
			return knockapi.KnockResponse{}, knockapi.NewError(http.StatusInternalServerError, knockapi.MsgInternal)
		}
	}
	granted, err := k.app.grant(r.Context(), target, expires, key, ip)
	if err != nil {
		if undo != nil {
			undo()
		}
		if clusterDown(err) {
			k.logger.Error("knock refused: the cluster engine did not acknowledge it (when_down refuse)",
				zap.Stringer("client_ip", ip), zap.String("entry", store.FormatPrefix(target)), zap.String("key", key.Name), zap.Error(err))
			return knockapi.KnockResponse{}, knockapi.NewError(http.StatusServiceUnavailable, knockapi.MsgClusterDown)
		}
		if errors.Is(err, store.ErrFull) {
			k.logger.Warn("knock refused: the whitelist is full of grants this key may not evict (see max_entries, max_grants)",
				zap.Stringer("client_ip", ip), zap.String("entry", store.FormatPrefix(target)), zap.String("key", key.Name), zap.Error(err))
			return knockapi.KnockResponse{}, knockapi.NewError(http.StatusServiceUnavailable, knockapi.MsgWhitelistFull)
		}
		k.logger.Error("knock not granted", zap.Stringer("client_ip", ip), zap.String("entry", store.FormatPrefix(target)), zap.Error(err))
		return knockapi.KnockResponse{}, knockapi.NewError(http.StatusInternalServerError, knockapi.MsgInternal)
	}
	for _, v := range granted.Evicted {
		k.logger.Info("grant evicted to make room",
			append(evictedFields(v), zap.String("entry", store.FormatPrefix(target)), zap.String("key", key.Name))...)
	}
	entry := store.FormatPrefix(target)
	k.logger.Info("knock granted",
		zap.Stringer("client_ip", ip),
		zap.String("entry", entry),
		zap.Int64("ttl", ttl),
		zap.String("key", key.Name))
	return knockapi.KnockResponse{WhitelistedEntry: entry, ExpiresAt: expires, ExpiresInSeconds: ttl}, nil
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*Knock)(nil)
	_ caddyhttp.MiddlewareHandler = (*Knock)(nil)
)

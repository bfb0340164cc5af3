package knocker

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-knocker/knocker/firewalld"
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
	// AlwaysAllow lists IPs and CIDRs that /verify always admits.
	AlwaysAllow []string `json:"always_allow,omitempty"`
	// Exclude lists path prefixes that /verify admits for any host. The path
	// comes from X-Forwarded-Uri, believed only from a trusted proxy.
	Exclude []string `json:"exclude,omitempty"`
	// ExcludeHosts maps a forwarded host (X-Forwarded-Host, from a trusted
	// proxy) to path prefixes /verify admits for that host; "*" is any host.
	ExcludeHosts map[string][]string `json:"exclude_hosts,omitempty"`
	// DisableWeb stops serving the web app (GET /, its scripts, styles,
	// manifest and icons), e.g. when knock shares a site whose / is the
	// protected application.
	DisableWeb bool `json:"disable_web,omitempty"`

	app          *App
	allow        ipRanges
	exclude      pathPrefixes
	excludeHosts map[string]pathPrefixes
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
	if k.allow, err = parseIPRanges("always_allow", k.AlwaysAllow); err != nil {
		return err
	}
	if k.exclude, err = parsePathPrefixes("exclude", k.Exclude); err != nil {
		return err
	}
	k.excludeHosts = make(map[string]pathPrefixes, len(k.ExcludeHosts))
	for host, prefixes := range k.ExcludeHosts {
		h := normalizeHost(host)
		if h == "" {
			return fmt.Errorf("exclude_hosts: %q is not a host name", host)
		}
		ps, err := parsePathPrefixes(fmt.Sprintf("exclude_hosts[%s]", host), prefixes)
		if err != nil {
			return err
		}
		k.excludeHosts[h] = append(k.excludeHosts[h], ps...)
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

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (k *Knock) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	switch endpointPath(r.URL.Path) {
	case "/knock":
		// Read the key, then drop it from the shared header map so that
		// nothing after this handler sees it. (Access logs record the
		// headers as they arrived: see docs/configuration.md, "Logging",
		// on their filter.)
		presented := r.Header.Get("X-Api-Key")
		r.Header.Del("X-Api-Key")
		k.serveKnock(w, r, presented)
		return nil
	case "/knock/status", "/verify", "/health", "/ready":
		r.Header.Del("X-Api-Key")
	default:
		if strings.HasPrefix(endpointPath(r.URL.Path), "/knock/") {
			// Answered here, never passed on: a client that sends its key
			// to a mistyped knock URL must not reach a handler whose
			// error would put the request headers in Caddy's log.
			r.Header.Del("X-Api-Key")
			w.Header().Set("Access-Control-Allow-Origin", k.CORSOrigin)
			writeJSONError(w, newAPIError(http.StatusNotFound, msgNotFound))
			return nil
		}
		if !k.DisableWeb && serveWeb(w, r) {
			return nil
		}
		return k.app.passOn(w, k.app.dropKnockerKey(r), next, k.logger)
	}
	switch endpointPath(r.URL.Path) {
	case "/knock/status":
		k.serveStatus(w, r)
	case "/verify":
		k.serveVerify(w, r)
	case "/health":
		k.serveHealth(w, r)
	case "/ready":
		k.serveReady(w, r)
	}
	return nil
}

// knockResponse is the original's success body.
type knockResponse struct {
	WhitelistedEntry string `json:"whitelisted_entry"`
	ExpiresAt        int64  `json:"expires_at"`
	ExpiresInSeconds int64  `json:"expires_in_seconds"`
}

// serveKnock writes its own responses rather than returning errors: Caddy's
// error log would print the request headers, X-Api-Key included.
func (k *Knock) serveKnock(w http.ResponseWriter, r *http.Request, presented string) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", k.CORSOrigin)
	switch r.Method {
	case http.MethodOptions:
		h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "X-Api-Key, Content-Type")
		w.WriteHeader(http.StatusNoContent)
		return
	case http.MethodPost:
	default:
		h.Set("Allow", "POST, OPTIONS")
		writeJSONError(w, newAPIError(http.StatusMethodNotAllowed, msgMethod))
		return
	}
	if isEarlyData(r) {
		writeJSONError(w, newAPIError(http.StatusTooEarly, msgTooEarly))
		return
	}

	ts := now().Unix()
	if presented == "" {
		// No key, so no guess: such a request must not use up the failure
		// window, or any web page the owner visits could lock the owner's
		// knocks out with keyless POSTs, which need no CORS preflight. (A
		// wrong key still counts; a restrictive cors_origin keeps other
		// pages from sending one.) The answer is the one the checks below
		// would give, and says nothing about any key.
		if _, ok := k.app.clientIP(r); !ok {
			writeJSONError(w, newAPIError(http.StatusBadRequest, msgNoClientIP))
		} else {
			writeJSONError(w, newAPIError(http.StatusUnauthorized, msgBadKey))
		}
		return
	}
	actor := rateLimitActor(r)
	lim, limits := k.app.limiter, k.app.limits
	// Every attempt first takes a slot in its failure window, before the key
	// is compared: a client that has used up its failures cannot learn
	// whether a key is valid from 200 versus 429, and concurrent attempts
	// cannot overshoot the limit. A success gives the slot back.
	if ok, retry := lim.record(actor, failure, ts, limits); !ok {
		k.rateLimited(w, retry)
		return
	}
	resp, apiErr := k.knock(r, presented, actor, ts)
	if apiErr == nil || apiErr.status == http.StatusTooManyRequests {
		lim.release(actor, failure, ts) // not a failure: granted, or refused by the success window
	}
	if apiErr != nil {
		if apiErr.status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", strconv.FormatInt(apiErr.retryAfter, 10))
		}
		writeJSONError(w, apiErr)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (k *Knock) rateLimited(w http.ResponseWriter, retryAfter int64) {
	w.Header().Set("Retry-After", strconv.FormatInt(retryAfter, 10))
	writeJSONError(w, newAPIError(http.StatusTooManyRequests, msgRateLimited))
}

// knock runs the original's checks in its order (behaviour spec §4.1).
func (k *Knock) knock(r *http.Request, presented string, actor netip.Addr, ts int64) (knockResponse, *apiError) {
	ip, ok := k.app.clientIP(r)
	if !ok {
		return knockResponse{}, newAPIError(http.StatusBadRequest, msgNoClientIP)
	}
	key := k.app.keys.authenticate(presented)
	if key == nil {
		return knockResponse{}, newAPIError(http.StatusUnauthorized, msgBadKey)
	}
	body, apiErr := readKnockBody(r)
	if apiErr != nil {
		return knockResponse{}, apiErr
	}
	req, apiErr := parseKnockBody(r.Header.Get("Content-Type"), body)
	if apiErr != nil {
		return knockResponse{}, apiErr
	}

	target := netip.PrefixFrom(ip, ip.BitLen())
	if req.hasTarget {
		if !key.allowRemote {
			return knockResponse{}, newAPIError(http.StatusForbidden, msgNoRemote)
		}
		target, _ = parseGrantTarget(req.target) // validated by parseKnockBody
		if tooBroad(target) {
			return knockResponse{}, newAPIError(http.StatusBadRequest, msgTooBroad)
		}
	}
	if req.ttlTooLarge {
		return knockResponse{}, newAPIError(http.StatusBadRequest, msgTTLTooLarge)
	}
	ttl := int64(maxTTL)
	if req.ttl > 0 {
		ttl = req.ttl
	}
	ttl = min(ttl, key.maxTTL)

	if ok, retry := k.app.limiter.record(actor, success, ts, k.app.limits); !ok {
		e := newAPIError(http.StatusTooManyRequests, msgRateLimited)
		e.retryAfter = retry
		return knockResponse{}, e
	}
	expires := ts + ttl
	// With firewalld, the ports open before the grant is persisted, and
	// close again if persisting fails: a 200 means both took effect.
	var undo func()
	if fw := k.app.fw; fw != nil {
		var err error
		if undo, err = fw.PrepareGrant(r.Context(), target, expires); err != nil {
			k.app.limiter.release(actor, success, ts)
			k.logger.Error("firewall rules not added", zap.Stringer("client_ip", ip), zap.String("entry", store.FormatPrefix(target)), zap.Error(err))
			if errors.Is(err, firewalld.ErrBusy) {
				return knockResponse{}, newAPIError(http.StatusServiceUnavailable, msgFirewallBusy)
			}
			return knockResponse{}, newAPIError(http.StatusInternalServerError, msgInternal)
		}
	}
	granted, err := k.app.grant(target, expires, key)
	if err != nil {
		if undo != nil {
			undo()
		}
		k.app.limiter.release(actor, success, ts)
		if errors.Is(err, store.ErrFull) {
			k.logger.Warn("knock refused: the whitelist is full of grants this key may not evict (see max_entries, max_grants)",
				zap.Stringer("client_ip", ip), zap.String("entry", store.FormatPrefix(target)), zap.String("key", key.name), zap.Error(err))
			return knockResponse{}, newAPIError(http.StatusServiceUnavailable, msgWhitelistFull)
		}
		k.logger.Error("knock not granted", zap.Stringer("client_ip", ip), zap.String("entry", store.FormatPrefix(target)), zap.Error(err))
		return knockResponse{}, newAPIError(http.StatusInternalServerError, msgInternal)
	}
	for _, v := range granted.Evicted {
		k.logger.Info("grant evicted to make room",
			zap.String("evicted_entry", store.FormatPrefix(v.Prefix)), zap.Int64("evicted_expires_at", v.Expires), zap.String("evicted_key", v.Owner),
			zap.String("entry", store.FormatPrefix(target)), zap.String("key", key.name))
	}
	entry := store.FormatPrefix(target)
	k.logger.Info("knock granted",
		zap.Stringer("client_ip", ip),
		zap.String("entry", entry),
		zap.Int64("ttl", ttl),
		zap.String("key", key.name))
	return knockResponse{WhitelistedEntry: entry, ExpiresAt: expires, ExpiresInSeconds: ttl}, nil
}

// readKnockBody reads at most maxKnockBody bytes: 413 beyond, whether the
// length is declared or streamed.
func readKnockBody(r *http.Request) ([]byte, *apiError) {
	if r.ContentLength > maxKnockBody {
		return nil, newAPIError(http.StatusRequestEntityTooLarge, msgBodyTooLarge)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxKnockBody+1))
	if err != nil {
		return nil, newAPIError(http.StatusBadRequest, msgMalformed)
	}
	if len(body) > maxKnockBody {
		return nil, newAPIError(http.StatusRequestEntityTooLarge, msgBodyTooLarge)
	}
	return body, nil
}

// serveVerify answers a forward-auth request: 200 to admit, 401 to deny,
// empty body. X-Forwarded-Host and X-Forwarded-Uri count only from a trusted
// proxy; from anyone else no exclusion applies, so a proxy missing from
// trusted_proxies cannot open excluded paths to the world.
func (k *Knock) serveVerify(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	if isEarlyData(r) {
		w.WriteHeader(http.StatusTooEarly)
		return
	}
	if isTrustedProxy(r) && k.excluded(r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Forwarded-Uri")) {
		w.WriteHeader(http.StatusOK)
		return
	}
	ip, ok := k.app.clientIP(r)
	if ok && (k.allow.contains(ip) || k.app.allowed(ip, now().Unix())) {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.WriteHeader(http.StatusUnauthorized)
}

func (k *Knock) excluded(forwardedHost, uri string) bool {
	if uri == "" {
		return false
	}
	if k.exclude.match(uri) {
		return true
	}
	host := normalizeHost(forwardedHost)
	if host == "" {
		return false
	}
	return k.excludeHosts[host].match(uri) || k.excludeHosts["*"].match(uri)
}

// statusResponse tells a client how the server sees it. It reveals no more
// than /verify does, so it needs no key; clients use it to learn their public
// address without a third-party service and to schedule re-knocks.
type statusResponse struct {
	IP               string  `json:"ip"`
	Whitelisted      bool    `json:"whitelisted"`
	Entry            *string `json:"entry"`              // the grant covering ip, if any
	ExpiresAt        *int64  `json:"expires_at"`         // null when not whitelisted
	ExpiresInSeconds *int64  `json:"expires_in_seconds"` // null when not whitelisted
}

// serveStatus answers GET /knock/status for the caller's own address.
// It sends no CORS header: the web app is same-origin, and another site must
// not read a visitor's address and grant.
func (k *Knock) serveStatus(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if !allowGet(w, r) {
		return
	}
	if isEarlyData(r) {
		writeJSONError(w, newAPIError(http.StatusTooEarly, msgTooEarly))
		return
	}
	ip, ok := k.app.clientIP(r)
	if !ok {
		writeJSONError(w, newAPIError(http.StatusBadRequest, msgNoClientIP))
		return
	}
	resp := statusResponse{IP: ip.String()}
	ts := now().Unix()
	if entry, found, err := k.app.match(ip, ts); err != nil {
		k.logger.Error("status lookup failed", zap.Error(err))
		writeJSONError(w, newAPIError(http.StatusServiceUnavailable, msgUnavailable))
		return
	} else if found {
		name, in := store.FormatPrefix(entry.Prefix), entry.Expires-ts
		resp.Whitelisted, resp.Entry, resp.ExpiresAt, resp.ExpiresInSeconds = true, &name, &entry.Expires, &in
	}
	writeJSON(w, http.StatusOK, resp)
}

type statusBody struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// serveHealth is liveness: no I/O.
func (k *Knock) serveHealth(w http.ResponseWriter, r *http.Request) {
	if allowGet(w, r) {
		writeJSON(w, http.StatusOK, statusBody{Status: "ok"})
	}
}

// serveReady is readiness: the whitelist storage must be usable.
func (k *Knock) serveReady(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	if reason, err := k.app.ready(); err != nil {
		k.logger.Warn("not ready", zap.String("reason", reason), zap.Error(err))
		writeJSON(w, http.StatusServiceUnavailable, statusBody{Status: "unhealthy", Error: reason})
		return
	}
	writeJSON(w, http.StatusOK, statusBody{Status: "ok"})
}

func allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	writeJSONError(w, newAPIError(http.StatusMethodNotAllowed, msgMethod))
	return false
}

func writeJSONError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, struct {
		Error string `json:"error"`
	}{e.msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil { // only our own fixed types are marshalled
		status, body = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*Knock)(nil)
	_ caddyhttp.MiddlewareHandler = (*Knock)(nil)
)

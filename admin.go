package knocker

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-knocker/knocker/firewall"
	"github.com/caddy-knocker/knocker/internal/keyring"
	"github.com/caddy-knocker/knocker/internal/knockapi"
	"github.com/caddy-knocker/knocker/store"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI is the admin.api.knocker module: the grants on Caddy's admin
// endpoint, for operators (list, add, revoke). Caddy loads every admin.api
// module itself; the endpoint is as protected as the rest of the admin API
// (by default a local address or socket).
//
//	GET    /knocker/grants[?key=NAME][&contains=IP]
//	POST   /knocker/grants            {"entry": "<ip or cidr>", "ttl": <seconds>[, "scopes": [...]]}
//	DELETE /knocker/grants/<entry>    (a CIDR's / escaped as %2F)
//	DELETE /knocker/grants?key=NAME
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.knocker",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes implements caddy.AdminRouter.
func (a AdminAPI) Routes() []caddy.AdminRoute {
	h := caddy.AdminHandlerFunc(a.serveGrants)
	return []caddy.AdminRoute{{Pattern: grantsPath, Handler: h}, {Pattern: grantsPath + "/", Handler: h}}
}

const grantsPath = "/knocker/grants"

// grantJSON is a grant as the admin API shows it; null where unknown (a
// grant imported from the Python Knocker's whitelist.json).
type grantJSON struct {
	Entry            string  `json:"entry"`
	ExpiresAt        int64   `json:"expires_at"`
	ExpiresInSeconds int64   `json:"expires_in_seconds"`
	Key              *string `json:"key"`
	CreatedAt        *int64  `json:"created_at"`
	RenewedAt        *int64  `json:"renewed_at"`
	ClientIP         *string `json:"client_ip"`
	// Scopes are the scopes the grant is limited to; null: full access.
	Scopes []string `json:"scopes"`
}

func grantObject(e store.Entry, now int64) grantJSON {
	g := grantJSON{Entry: store.FormatPrefix(e.Prefix), ExpiresAt: e.Expires, ExpiresInSeconds: e.Expires - now, Scopes: e.Scopes}
	if e.Owner != "" {
		g.Key = &e.Owner
	}
	if e.Created != 0 {
		g.CreatedAt = &e.Created
	}
	if e.Renewed != 0 {
		g.RenewedAt = &e.Renewed
	}
	if e.Client.IsValid() {
		c := e.Client.String()
		g.ClientIP = &c
	}
	return g
}

func (a AdminAPI) serveGrants(w http.ResponseWriter, r *http.Request) error {
	app, err := runningApp()
	if err != nil {
		return err
	}
	// Routes: grantsPath, and grantsPath/ followed by one entry.
	entry, one := strings.CutPrefix(r.URL.EscapedPath(), grantsPath+"/")
	switch {
	case one && r.Method == http.MethodDelete:
		return app.adminRevoke(w, entry)
	case one:
		w.Header().Set("Allow", http.MethodDelete)
	case r.Method == http.MethodGet:
		return app.adminList(w, r.URL.Query())
	case r.Method == http.MethodPost:
		return app.adminGrant(w, r)
	case r.Method == http.MethodDelete:
		return app.adminRevokeKey(w, r.URL.Query())
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
	}
	return apiError(http.StatusMethodNotAllowed, "method not allowed")
}

// runningApp is the knocker app of the running config.
func runningApp() (*App, error) {
	v, err := caddy.ActiveContext().AppIfConfigured("knocker")
	if err != nil || v == nil {
		return nil, apiError(http.StatusServiceUnavailable, "the knocker app is not configured")
	}
	app, ok := v.(*App)
	if !ok {
		return nil, apiError(http.StatusInternalServerError, fmt.Sprintf("knocker app has unexpected type %T", v))
	}
	return app, nil
}

func apiError(status int, msg string) error {
	return caddy.APIError{HTTPStatus: status, Err: errors.New(msg)}
}

func (a *App) adminList(w http.ResponseWriter, q url.Values) error {
	var contains netip.Addr
	if s := q.Get("contains"); s != "" {
		ip, err := netip.ParseAddr(s)
		if err != nil || ip.Zone() != "" {
			return apiError(http.StatusBadRequest, fmt.Sprintf("contains: %q is not an IP address", s))
		}
		contains = ip.Unmap()
	}
	_, byKey := q["key"]
	s, err := a.openStore()
	if err != nil {
		return apiError(http.StatusServiceUnavailable, err.Error())
	}
	ts := now().Unix()
	grants, err := s.Grants(ts)
	if err != nil {
		return apiError(http.StatusServiceUnavailable, err.Error())
	}
	out := make([]grantJSON, 0, len(grants))
	for _, g := range grants {
		if byKey && g.Owner != q.Get("key") || contains.IsValid() && !g.Prefix.Contains(contains) {
			continue
		}
		out = append(out, grantObject(g, ts))
	}
	return writeAdminJSON(w, out)
}

// adminGrantKey is the key name recorded for grants made through the
// admin API; no configured key may take it (see keyring.Reserved).
const adminGrantKey = keyring.Reserved

// adminGrant is an operator's grant: the checks of a remote knock (width,
// ten-year cap) and the same firewall-then-store order, without a key or
// a rate limit. It may evict any grant when the whitelist is full.
func (a *App) adminGrant(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Entry  string   `json:"entry"`
		TTL    int64    `json:"ttl"`
		Scopes []string `json:"scopes"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, knockapi.MaxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return apiError(http.StatusBadRequest, "want {\"entry\": \"<ip or cidr>\", \"ttl\": <seconds>}: "+err.Error())
	}
	p, err := knockapi.ParseTarget(req.Entry)
	switch {
	case err != nil:
		return apiError(http.StatusBadRequest, fmt.Sprintf("entry: %q: %v", req.Entry, err))
	case knockapi.TooBroad(p):
		return apiError(http.StatusBadRequest, "entry: "+knockapi.MsgTooBroad)
	case req.TTL <= 0:
		return apiError(http.StatusBadRequest, "ttl: want a positive number of seconds")
	case req.TTL > knockapi.MaxTTL:
		return apiError(http.StatusBadRequest, "ttl: "+knockapi.MsgTTLTooLarge)
	case a.repl != nil && req.TTL > a.clusterMaxTTL:
		return apiError(http.StatusBadRequest, fmt.Sprintf("ttl: at most %d seconds in cluster mode (the largest max_ttl of the keys: the other nodes cap grants there)", a.clusterMaxTTL))
	case req.Scopes != nil && len(req.Scopes) == 0:
		return apiError(http.StatusBadRequest, "scopes: list at least one scope, or leave scopes out for full access")
	}
	scopes, err := store.CheckScopes(req.Scopes)
	if err != nil {
		return apiError(http.StatusBadRequest, "scopes: "+err.Error())
	}
	ts := now().Unix()
	expires := ts + req.TTL
	var undo func()
	if a.fw != nil {
		if undo, err = a.fw.PrepareGrant(r.Context(), firewall.Grant{Prefix: p, Expires: expires, Scopes: scopes}); err != nil {
			if errors.Is(err, firewall.ErrBusy) {
				return apiError(http.StatusServiceUnavailable, err.Error())
			}
			return apiError(http.StatusInternalServerError, err.Error())
		}
	}
	res, err := a.storeGrant(r.Context(), p, expires, store.GrantOptions{
		MaxEntries: a.MaxEntries,
		Owner:      adminGrantKey,
		MayEvict:   func(string) bool { return true },
		Scopes:     scopes,
	})
	if err != nil {
		if undo != nil {
			undo()
		}
		if errors.Is(err, store.ErrFull) || clusterDown(err) {
			return apiError(http.StatusServiceUnavailable, err.Error())
		}
		return apiError(http.StatusInternalServerError, err.Error())
	}
	for _, v := range res.Evicted {
		a.logger.Info("grant evicted to make room", append(evictedFields(v), zap.String("entry", store.FormatPrefix(p)), zap.String("key", adminGrantKey))...)
	}
	a.logger.Info("grant added through the admin API", grantFields(res.Entry)...)
	return writeAdminJSON(w, grantObject(res.Entry, ts))
}

func (a *App) adminRevoke(w http.ResponseWriter, escaped string) error {
	raw, err := url.PathUnescape(escaped)
	if err != nil {
		return apiError(http.StatusBadRequest, fmt.Sprintf("entry %q: %v", escaped, err))
	}
	p, err := store.ParseEntryKey(raw)
	if err != nil {
		return apiError(http.StatusBadRequest, fmt.Sprintf("entry %q: %v", raw, err))
	}
	n, err := a.revoke(p)
	if errors.Is(err, store.ErrClosed) {
		return apiError(http.StatusServiceUnavailable, err.Error())
	}
	if err != nil {
		return apiError(http.StatusInternalServerError, err.Error())
	}
	if n == 0 {
		return apiError(http.StatusNotFound, fmt.Sprintf("no grant for %s", store.FormatPrefix(p)))
	}
	a.logger.Info("grant revoked through the admin API", grantFields(store.Entry{Prefix: p})...)
	return writeAdminJSON(w, map[string]int{"revoked": n})
}

func (a *App) adminRevokeKey(w http.ResponseWriter, q url.Values) error {
	name := q.Get("key")
	if name == "" {
		return apiError(http.StatusBadRequest, "want DELETE "+grantsPath+"/<entry> or "+grantsPath+"?key=NAME")
	}
	revoked, err := a.revokeOwner(name)
	if errors.Is(err, store.ErrClosed) {
		return apiError(http.StatusServiceUnavailable, err.Error())
	}
	if err != nil {
		return apiError(http.StatusInternalServerError, err.Error())
	}
	for _, e := range revoked {
		a.logger.Info("grant revoked through the admin API", grantFields(e)...)
	}
	return writeAdminJSON(w, map[string]int{"revoked": len(revoked)})
}

// evictedFields name a grant evicted to make room.
func evictedFields(v store.Entry) []zap.Field {
	return []zap.Field{zap.String("evicted_entry", store.FormatPrefix(v.Prefix)), zap.Int64("evicted_expires_at", v.Expires), zap.String("evicted_key", v.Owner)}
}

// grantFields are e's log fields.
func grantFields(e store.Entry) []zap.Field {
	f := []zap.Field{zap.String("entry", store.FormatPrefix(e.Prefix))}
	if e.Expires != 0 {
		f = append(f, zap.Int64("expires_at", e.Expires))
	}
	if e.Owner != "" {
		f = append(f, zap.String("key", e.Owner))
	}
	if len(e.Scopes) > 0 {
		f = append(f, zap.Strings("scopes", e.Scopes))
	}
	return f
}

func writeAdminJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}

// Interface guards.
var _ caddy.AdminRouter = (*AdminAPI)(nil)

package knocker

import (
	"net/http"

	"go.uber.org/zap"

	"github.com/caddy-knocker/knocker/internal/knockapi"
	"github.com/caddy-knocker/knocker/store"
)

// serveStatus answers GET /knock/status for the caller's own address: its
// grant with the latest expiry, scoped or not (a client with a scoped key
// must see its grant, or it would knock again and again), or with
// ?scope=<name> the grant that admits it to that scope.
// It sends no CORS header: the web app is same-origin, and another site must
// not read a visitor's address and grant.
func (k *Knock) serveStatus(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if !allowGet(w, r) {
		return
	}
	if isEarlyData(r) {
		knockapi.WriteError(w, knockapi.NewError(http.StatusTooEarly, knockapi.MsgTooEarly))
		return
	}
	ip, ok := k.app.client(r)
	if !ok {
		knockapi.WriteError(w, knockapi.NewError(http.StatusBadRequest, knockapi.MsgNoClientIP))
		return
	}
	scope, err := verifyScope(r)
	if err != nil {
		knockapi.WriteError(w, knockapi.NewError(http.StatusBadRequest, err.Error()))
		return
	}
	resp := knockapi.StatusResponse{IP: ip.String()}
	ts := now().Unix()
	if entry, found, err := k.app.holding(ip, scope, ts); err != nil {
		k.logger.Error("status lookup failed", zap.Error(err))
		knockapi.WriteError(w, knockapi.NewError(http.StatusServiceUnavailable, knockapi.MsgUnavailable))
		return
	} else if found {
		name, in := store.FormatPrefix(entry.Prefix), entry.Expires-ts
		resp.Whitelisted, resp.Entry, resp.ExpiresAt, resp.ExpiresInSeconds = true, &name, &entry.Expires, &in
		resp.Scopes = entry.Scopes
	}
	knockapi.WriteJSON(w, http.StatusOK, resp)
}

// serveHealth is liveness: no I/O.
func (k *Knock) serveHealth(w http.ResponseWriter, r *http.Request) {
	if allowGet(w, r) {
		knockapi.WriteJSON(w, http.StatusOK, knockapi.HealthResponse{Status: "ok"})
	}
}

// serveReady is readiness: the whitelist storage must be usable.
func (k *Knock) serveReady(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	cl := k.app.clusterStatus()
	if reason, err := k.app.ready(); err != nil {
		k.logger.Warn("not ready", zap.String("reason", reason), zap.Error(err))
		knockapi.WriteJSON(w, http.StatusServiceUnavailable, knockapi.HealthResponse{Status: "unhealthy", Error: reason, Cluster: cl})
		return
	}
	knockapi.WriteJSON(w, http.StatusOK, knockapi.HealthResponse{Status: "ok", Cluster: cl})
}

func allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	knockapi.WriteError(w, knockapi.NewError(http.StatusMethodNotAllowed, knockapi.MsgMethod))
	return false
}

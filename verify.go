package knocker

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/caddy-knocker/knocker/internal/knockapi"
	"github.com/caddy-knocker/knocker/internal/pathmatch"
)

// serveVerify answers a forward-auth request: 200 to admit, 401 to deny,
// empty body; ?scope=<name> makes it the decision of a gate with that scope
// (a malformed scope is the proxy's configuration error: 400). X-Forwarded-Host and X-Forwarded-Uri count only from a trusted
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
	scope, err := verifyScope(r)
	if err != nil {
		knockapi.WriteError(w, knockapi.NewError(http.StatusBadRequest, err.Error()))
		return
	}
	ip, ok := k.app.client(r)
	if ok && (k.allows(ip) || k.app.allowedIn(ip, scope, now().Unix())) {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.WriteHeader(http.StatusUnauthorized)
}

// verifyScope is the scope a /verify request asks about: the scope query
// parameter, once, or none.
func verifyScope(r *http.Request) (string, error) {
	if r.URL.RawQuery == "" {
		return "", nil
	}
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil { // e.g. "scope=media;x=1": not silently an unscoped check
		return "", errors.New("Malformed query string.")
	}
	values := query["scope"]
	switch {
	case len(values) == 0:
		return "", nil
	case len(values) > 1:
		return "", errors.New("Give the scope parameter at most once.")
	}
	if err := checkGateScope(values[0]); err != nil || values[0] == "" {
		return "", errors.New("Invalid scope parameter: a scope is a word of lowercase letters, digits, '-' and '_' (at most 32).")
	}
	return values[0], nil
}

func (k *Knock) excluded(forwardedHost, uri string) bool {
	if uri == "" {
		return false
	}
	if k.excludes(uri) {
		return true
	}
	host := pathmatch.NormalizeHost(forwardedHost)
	if host == "" {
		return false
	}
	return k.excludeHosts[host].Match(uri) || k.excludeHosts["*"].Match(uri)
}

package knocker

import (
	"net/http"

	"github.com/caddy-knocker/knocker/internal/pathmatch"
)

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
	ip, ok := k.app.client(r)
	if ok && (k.allows(ip) || k.app.allowed(ip, now().Unix())) {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.WriteHeader(http.StatusUnauthorized)
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

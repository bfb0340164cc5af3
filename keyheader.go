package knocker

import (
	"context"
	"net/http"
)

// A knocker key sent anywhere but the knock endpoint (a mistyped URL such
// as /knock.json or /Knock) must go no further: not to a backend, not into
// a backend's debug log. Both handlers remove it from requests they pass
// on. Other X-Api-Key values stay: backends such as Sonarr or Immich use
// that header for their own keys.
//
// Caddy's error log records a copy of the request headers taken before any
// handler ran, so removing the header cannot keep it out of that log; a
// gate denial of a request that carried a knocker key is therefore written
// directly rather than returned as an error (handle_errors does not see
// it), and no error log line is made for it.

// keyRemovedCtxKey marks a request whose knocker key a handler removed.
type keyRemovedCtxKey struct{}

// dropKnockerKey removes X-Api-Key from r if one of its values is a knocker
// key, and returns r marked so that later handlers know. Requests without
// the header cost a map lookup.
func (a *App) dropKnockerKey(r *http.Request) *http.Request {
	values := r.Header.Values("X-Api-Key")
	if len(values) == 0 {
		return r
	}
	for _, v := range values {
		if a.keys.authenticate(v) != nil {
			r.Header.Del("X-Api-Key")
			return r.WithContext(context.WithValue(r.Context(), keyRemovedCtxKey{}, true))
		}
	}
	return r
}

// carriedKnockerKey reports whether a handler removed a knocker key from r.
func carriedKnockerKey(r *http.Request) bool {
	removed, _ := r.Context().Value(keyRemovedCtxKey{}).(bool)
	return removed
}

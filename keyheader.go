package knocker

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// A knocker key sent anywhere but the knock endpoint (a mistyped URL such
// as /knock.json or /Knock) must go no further: not to a backend, not into
// a backend's debug log. Both handlers remove it from requests they pass
// on. Other X-Api-Key values stay: backends such as Sonarr or Immich use
// that header for their own keys.
//
// Caddy's error log records a copy of the request headers taken before any
// handler ran, so removing the header cannot keep it out of that log. For a
// request that carried a knocker key, no error may therefore reach Caddy:
// the gate writes its denials itself, and an error from any handler after
// knock or knocker (a backend that is down, a file server's 500) is
// written as its status and logged here, without the request. handle_errors
// does not run for such requests.

// apiKeyHeader is X-Api-Key in canonical form (textproto.CanonicalMIMEHeaderKey).
const apiKeyHeader = "X-Api-Key"

// keyRemovedCtxKey marks a request whose knocker key a handler removed.
type keyRemovedCtxKey struct{}

// dropKnockerKey removes X-Api-Key from r if one of its values is a knocker
// key, and returns r marked so that later handlers know. Requests without
// the header cost a map lookup.
func (a *App) dropKnockerKey(r *http.Request) *http.Request {
	values := r.Header[apiKeyHeader] // canonical already: no canonicalisation per request
	if len(values) == 0 {
		return r
	}
	for _, v := range values {
		if a.keys.Authenticate(v) != nil {
			delete(r.Header, apiKeyHeader)
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

// passOn serves r with next. If a knocker key was removed from r, an error
// from next is answered here instead of returned (see above), and logged
// at the level Caddy would use, without the request's headers.
func (a *App) passOn(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, log *zap.Logger) error {
	if !carriedKnockerKey(r) {
		return next.ServeHTTP(w, r)
	}
	sw := &startedWriter{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}}
	err := next.ServeHTTP(sw, r)
	if err == nil {
		return nil
	}
	status := http.StatusInternalServerError
	var he caddyhttp.HandlerError
	if errors.As(err, &he) && he.StatusCode != 0 {
		status = he.StatusCode
	}
	level := zapcore.DebugLevel
	if status >= 500 {
		level = zapcore.ErrorLevel
	}
	if c := log.Check(level, "handler error on a request whose knocker key was removed (logged without its headers)"); c != nil {
		c.Write(zap.Int("status", status), zap.String("method", r.Method), zap.String("uri", r.RequestURI), zap.Error(err))
	}
	if !sw.started { // as Caddy does, never add to a response already begun
		writeStatus(w, status)
	}
	return nil
}

// startedWriter notes whether a response has begun (final status or body).
type startedWriter struct {
	*caddyhttp.ResponseWriterWrapper
	started bool
}

func (w *startedWriter) WriteHeader(status int) {
	if status >= 200 || status == http.StatusSwitchingProtocols {
		w.started = true
	}
	w.ResponseWriterWrapper.WriteHeader(status)
}

func (w *startedWriter) Write(b []byte) (int, error) {
	w.started = true
	return w.ResponseWriterWrapper.Write(b)
}

func (w *startedWriter) ReadFrom(r io.Reader) (int64, error) {
	w.started = true
	return w.ResponseWriterWrapper.ReadFrom(r)
}

// writeStatus answers with status and its text.
func writeStatus(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(http.StatusText(status) + "\n"))
}

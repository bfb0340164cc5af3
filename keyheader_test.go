package knocker

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// passOn answers a later handler's error for a request whose knocker key
// was removed, but never adds to a response the handler already began.
func TestPassOnAfterKeyRemoval(t *testing.T) {
	app := &App{}
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	r.Header.Set("X-Api-Key", "k")
	r = r.WithContext(context.WithValue(r.Context(), keyRemovedCtxKey{}, true))
	fail := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		return caddyhttp.Error(http.StatusBadGateway, errors.New("backend down"))
	})
	w := httptest.NewRecorder()
	if err := app.passOn(w, r, fail, zap.NewNop()); err != nil || w.Code != http.StatusBadGateway || w.Body.String() != "Bad Gateway\n" {
		t.Fatalf("error before any output: %v, %d %q; want nil, 502 written here", err, w.Code, w.Body)
	}
	partial := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(`{"partial":`))
		return caddyhttp.Error(http.StatusBadGateway, errors.New("backend died"))
	})
	w = httptest.NewRecorder()
	if err := app.passOn(w, r, partial, zap.NewNop()); err != nil || w.Code != http.StatusOK || w.Body.String() != `{"partial":` {
		t.Fatalf("error after output began: %v, %d %q; want the begun response untouched", err, w.Code, w.Body)
	}
}

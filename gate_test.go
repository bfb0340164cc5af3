package knocker

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-knocker/knocker/store"
)

// newBenchGate builds a gate over a real store holding one grant for
// 203.0.113.7, without a running Caddy.
func newBenchGate(b testing.TB) *Gate {
	b.Helper()
	s, err := store.Open(store.Options{
		Path:            filepath.Join(b.TempDir(), "whitelist.json"),
		MaxEntries:      1000,
		CleanupInterval: time.Minute,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if _, err := s.Grant(netip.MustParsePrefix("203.0.113.7/32"), time.Now().Unix()+3600); err != nil {
		b.Fatal(err)
	}
	app := &App{run: new(appState)}
	app.run.st.Store(s)
	return &Gate{app: app, DenyStatus: http.StatusUnauthorized, logger: zap.NewNop(), errorRoutes: true}
}

// gateRequest is a request as Caddy hands it to handlers: client IP resolved
// into the vars, the replacer with Caddy's HTTP placeholders.
func gateRequest(clientIP string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/app/page", nil)
	r.RemoteAddr = clientIP + ":40000"
	r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{
		caddyhttp.ClientIPVarKey:     clientIP,
		caddyhttp.TrustedProxyVarKey: false,
	}))
	caddyhttp.NewTestReplacer(r)
	return r
}

var okHandler = caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })

// freshRequests hands out requests as Caddy makes them, each with its own
// replacer and vars, built in batches outside the timer: a gate that adds
// to the request's replacer must be measured on new ones, not on one
// replacer that every iteration grows.
type freshRequests struct {
	clientIP string
	batch    []*http.Request
}

func (f *freshRequests) next(b *testing.B) *http.Request {
	if len(f.batch) == 0 {
		b.StopTimer()
		f.batch = make([]*http.Request, 1024)
		for i := range f.batch {
			f.batch[i] = gateRequest(f.clientIP)
		}
		b.StartTimer()
	}
	r := f.batch[0]
	f.batch = f.batch[1:]
	return r
}

// BenchmarkGateServeHTTP is the whole per-request cost the gate adds to an
// admitted request: reading Caddy's client IP, parsing it, the lookup.
func BenchmarkGateServeHTTP(b *testing.B) {
	g := newBenchGate(b)
	r := gateRequest("203.0.113.7")
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		if err := g.ServeHTTP(w, r, okHandler); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGateServeHTTPFresh is BenchmarkGateServeHTTP on a new request
// (replacer, vars) each time, as in Caddy.
func BenchmarkGateServeHTTPFresh(b *testing.B) {
	g := newBenchGate(b)
	reqs := &freshRequests{clientIP: "203.0.113.7"}
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		if err := g.ServeHTTP(w, reqs.next(b), okHandler); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGateServeHTTPBehindProxy is BenchmarkGateServeHTTPFresh for a
// client behind a trusted proxy (X-Forwarded-For from the loopback peer,
// trusted_proxies_strict), as in the load benchmark: the resolved address
// is also checked against the server's trusted ranges.
func BenchmarkGateServeHTTPBehindProxy(b *testing.B) {
	g := newBenchGate(b)
	srv := &caddyhttp.Server{TrustedProxiesStrict: 1}
	ranges := &caddyhttp.StaticIPRange{Ranges: []string{"127.0.0.1/32", "::1/128"}}
	if err := ranges.Provision(caddy.Context{}); err != nil {
		b.Fatal(err)
	}
	g.app.run.servers.Store(srv, &serverInfo{srv: srv, ranges: ranges})
	var batch []*http.Request
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		if len(batch) == 0 {
			b.StopTimer()
			batch = make([]*http.Request, 1024)
			for i := range batch {
				r := gateRequest("203.0.113.7")
				r.RemoteAddr = "127.0.0.1:40000"
				r.Header.Set("X-Forwarded-For", "203.0.113.7")
				vars := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
				vars[caddyhttp.TrustedProxyVarKey] = true
				batch[i] = r.WithContext(context.WithValue(r.Context(), caddyhttp.ServerCtxKey, srv))
			}
			b.StartTimer()
		}
		r := batch[0]
		batch = batch[1:]
		if err := g.ServeHTTP(w, r, okHandler); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGateServeHTTPScoped is BenchmarkGateServeHTTP for a gate with a
// scope and a client whose grant is limited to that scope: the lookup
// tries the full-access grants first, then the scope's.
func BenchmarkGateServeHTTPScoped(b *testing.B) {
	g := newBenchGate(b)
	g.Scope = "media"
	s := g.app.run.st.Load()
	if _, err := s.GrantWith(netip.MustParsePrefix("203.0.113.8/32"), time.Now().Unix()+3600, store.GrantOptions{Owner: "friend", Scopes: []string{"media"}}); err != nil {
		b.Fatal(err)
	}
	r := gateRequest("203.0.113.8")
	w := httptest.NewRecorder()
	if err := g.ServeHTTP(w, r, okHandler); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := g.ServeHTTP(w, r, okHandler); err != nil {
			b.Fatal(err)
		}
	}
}

func TestGateDecisionsWithoutCaddy(t *testing.T) {
	g := newBenchGate(t)
	if err := g.ServeHTTP(httptest.NewRecorder(), gateRequest("203.0.113.7"), okHandler); err != nil {
		t.Fatalf("whitelisted client denied: %v", err)
	}
	err := g.ServeHTTP(httptest.NewRecorder(), gateRequest("203.0.113.8"), okHandler)
	if he, ok := err.(caddyhttp.HandlerError); !ok || he.StatusCode != http.StatusUnauthorized {
		t.Fatalf("other client: %v, want a 401 HandlerError", err)
	}
	r := gateRequest("203.0.113.7")
	r.TLS = &tls.ConnectionState{HandshakeComplete: false}
	err = g.ServeHTTP(httptest.NewRecorder(), r, okHandler)
	if he, ok := err.(caddyhttp.HandlerError); !ok || he.StatusCode != http.StatusTooEarly {
		t.Fatalf("0-RTT request: %v, want 425", err)
	}

	// Without handle_errors routes the gate answers as Caddy would answer
	// its error: the status, no body.
	g.errorRoutes = false
	w := httptest.NewRecorder()
	if err := g.ServeHTTP(w, gateRequest("203.0.113.8"), okHandler); err != nil || w.Code != http.StatusUnauthorized || w.Body.Len() != 0 {
		t.Fatalf("other client, no error routes: %v, %d %q; want 401 written, no body, no error", err, w.Code, w.Body)
	}
}

// BenchmarkGateDeny is the gate's cost for a client without grant, with
// handle_errors routes (a Caddy error) and without (the status written).
func BenchmarkGateDeny(b *testing.B) {
	for _, errorRoutes := range []bool{true, false} {
		name := "status"
		if errorRoutes {
			name = "caddy-error"
		}
		b.Run(name, func(b *testing.B) {
			g := newBenchGate(b)
			g.errorRoutes = errorRoutes
			r := gateRequest("203.0.113.8")
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				_ = g.ServeHTTP(w, r, okHandler)
			}
		})
	}
}

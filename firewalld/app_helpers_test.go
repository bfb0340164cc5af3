package firewalld

import (
	"context"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap/zaptest"

	"github.com/caddy-knocker/knocker/store"
)

// testSource stands in for the knocker app: it hands out the store.
type testSource struct {
	st   *store.Store
	path string
}

func (s *testSource) WhitelistStore() (*store.Store, error) { return s.st, nil }
func (s *testSource) WhitelistPath() string                 { return s.path }

// openStore opens a whitelist in a temporary directory; the sweeper runs
// often so expiries show up quickly.
func openStore(t testing.TB) *testSource {
	t.Helper()
	path := filepath.Join(t.TempDir(), "whitelist.json")
	st, err := store.Open(store.Options{Path: path, MaxEntries: 100000, CleanupInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &testSource{st: st, path: path}
}

// provision builds an App from JSON the way the knocker app hands it over.
func provision(t testing.TB, config string, src Whitelist) (*App, error) {
	t.Helper()
	ctx, cancel := newHandoffContext(config, src)
	t.Cleanup(cancel)
	a := new(App)
	err := a.Provision(ctx)
	a.logger = zaptest.NewLogger(t) // logs show with the test that made them
	return a, err
}

// newHandoffContext returns a caddy.Context carrying config as the knocker
// app's firewalld block.
func newHandoffContext(config string, src Whitelist) (caddy.Context, context.CancelFunc) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	ctx.Context = context.WithValue(ctx.Context, ConfigKey{}, &Handoff{Config: json.RawMessage(config), Source: src})
	return ctx, cancel
}

// startApp provisions and starts an App; it is stopped with the test.
func startApp(t testing.TB, config string, src Whitelist) *App {
	t.Helper()
	needSandbox(t)
	a, err := provision(t, config, src)
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if err := a.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { a.Stop() })
	return a
}

// grant does what the knock handler does: open the ports, then persist.
func grant(t testing.TB, a *App, src *testSource, p string, ttl time.Duration) {
	t.Helper()
	pfx := mustPrefix(t, p)
	expires := time.Now().Add(ttl).Unix()
	undo, err := a.PrepareGrant(context.Background(), pfx, expires)
	if err != nil {
		t.Fatalf("PrepareGrant(%s): %v", p, err)
	}
	if _, err := src.st.Grant(pfx, expires); err != nil {
		undo()
		t.Fatalf("Grant(%s): %v", p, err)
	}
}

func mustPrefix(t testing.TB, s string) netip.Prefix {
	t.Helper()
	p, err := store.ParseEntryKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// acceptText is the accept rule Knocker writes for p and port.
func acceptText(t testing.TB, p string, port Port) string {
	return acceptRules(mustPrefix(t, p), []Port{port})[0].String()
}

func tcp(n uint16) Port { return Port{Number: n, Protocol: "tcp"} }

// idle waits until the app's worker has nothing pending or queued.
func idle(t testing.TB, a *App) {
	t.Helper()
	r := a.reconciler()
	waitFor(t, 10*time.Second, func() (bool, string) {
		done := make(chan struct{})
		if err := r.submit(context.Background(), func(context.Context) error { close(done); return nil }); err != nil {
			return false, err.Error()
		}
		<-done
		r.pendMu.Lock()
		defer r.pendMu.Unlock()
		return len(r.pending) == 0 && r.resyncReason == "", "worker still busy"
	})
}

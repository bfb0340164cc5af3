package firewalld

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap/zaptest"

	"github.com/caddy-knocker/knocker/firewall"
	"github.com/caddy-knocker/knocker/store"
)

// testSource stands in for the knocker app: it hands out the store.
type testSource struct {
	st   *store.Store
	path string
}

func (s *testSource) whitelist() firewall.Whitelist {
	return firewall.Whitelist{Store: s.st, Path: s.path}
}

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

// provision builds a Backend from its JSON config as Caddy's module loader
// does (unknown fields refused).
func provision(t testing.TB, config string) (*Backend, error) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	b := new(Backend)
	if err := caddy.StrictUnmarshalJSON([]byte(config), b); err != nil {
		return nil, err
	}
	err := b.Provision(ctx)
	b.logger = zaptest.NewLogger(t) // logs show with the test that made them
	return b, err
}

// startBackend provisions and starts a Backend on src's whitelist; it is
// stopped with the test.
func startBackend(t testing.TB, config string, src *testSource) *Backend {
	t.Helper()
	needSandbox(t)
	b, err := provision(t, config)
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if err := b.Start(src.whitelist()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { b.Stop() })
	return b
}

// grant does what the knock handler does: open the ports, then persist.
func grant(t testing.TB, a *Backend, src *testSource, p string, ttl time.Duration) {
	t.Helper()
	grantAs(t, a, src, p, ttl, "")
}

// grantAs is grant by a key named owner with scopes; it returns the
// grant's expiry.
func grantAs(t testing.TB, a *Backend, src *testSource, p string, ttl time.Duration, owner string, scopes ...string) int64 {
	t.Helper()
	pfx := mustPrefix(t, p)
	expires := time.Now().Add(ttl).Unix()
	undo, err := a.PrepareGrant(context.Background(), firewall.Grant{Prefix: pfx, Expires: expires, Scopes: scopes})
	if err != nil {
		t.Fatalf("PrepareGrant(%s, %v): %v", p, scopes, err)
	}
	if _, err := src.st.GrantWith(pfx, expires, store.GrantOptions{Owner: owner, Scopes: scopes}); err != nil {
		undo()
		t.Fatalf("Grant(%s, %v): %v", p, scopes, err)
	}
	return expires
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
func idle(t testing.TB, a *Backend) {
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

package natscluster

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/caddy-knocker/knocker/cluster"
	"github.com/caddy-knocker/knocker/internal/testnats"
)

// TestExampleServerConfig runs nats-server with examples/nats-server.conf
// (its store and listener moved into the test's temp dir and loopback)
// and a node with the account it documents: the permissions there must
// be enough for everything a node does, and no more than the bucket's.
func TestExampleServerConfig(t *testing.T) {
	raw, err := os.ReadFile("../../examples/nats-server.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := string(raw)
	for from, to := range map[string]string{
		"listen: 0.0.0.0:4222":       "listen: 127.0.0.1:-1",
		"store_dir: /data/jetstream": "store_dir: " + strconv.Quote(t.TempDir()),
	} {
		if !strings.Contains(conf, from) {
			t.Fatalf("examples/nats-server.conf no longer has %q: update this test", from)
		}
		conf = strings.Replace(conf, from, to, 1)
	}
	path := filepath.Join(t.TempDir(), "nats-server.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	const password = "example-password-0123456789abcdef"
	t.Setenv("KNOCKER_NATS_PASSWORD", password)
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("examples/nats-server.conf: %v", err)
	}
	if !opts.SyncAlways {
		t.Error("examples/nats-server.conf does not set sync_interval: always")
	}
	opts.NoSigs, opts.NoLog = true, true
	url := testnats.URL(testnats.Start(t, opts))

	var nodes []*node
	for _, name := range []string{"a", "b"} {
		n := &node{t: t, name: name, url: url, path: filepath.Join(t.TempDir(), "whitelist.json"), bans: make(chan netip.Addr, 1)}
		n.auth = func(m *NATS) { m.User, m.Password = "knocker", "{env.KNOCKER_NATS_PASSWORD}" }
		n.start()
		t.Cleanup(n.stop)
		n.waitSynced()
		nodes = append(nodes, n)
	}
	a, b := nodes[0], nodes[1]
	if _, err := a.knock("192.0.2.90/32", 600); err != nil {
		t.Fatal(err)
	}
	b.waitFor("a's grant through the documented account", propagation, allowed("192.0.2.90"))
	if _, err := b.r.Revoke(netip.MustParsePrefix("192.0.2.90/32")); err != nil {
		t.Fatal(err)
	}
	a.waitFor("b's revocation", propagation, denied("192.0.2.90"))

	// The account reaches nothing beyond its bucket: a node configured
	// with another bucket cannot create or use it.
	other := &NATS{Config: cluster.Config{Secret: testSecret, Node: "x"}, URLs: []string{url}, Bucket: "other",
		User: "knocker", Password: password}
	if err := other.Provision(caddy.Context{Context: context.Background()}); err != nil {
		t.Fatal(err)
	}
	if err := other.Open(zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))); err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	deadline := time.Now().Add(5 * time.Second)
	for other.d.nc == nil || !other.d.nc.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatal("the documented account cannot connect")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := other.d.ensureBucket(ctx); err == nil {
		t.Error("the documented account could make a bucket other than knocker")
	}
}

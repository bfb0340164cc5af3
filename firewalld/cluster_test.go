package firewalld

import (
	"context"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap/zaptest"

	"github.com/caddy-knocker/knocker/cluster"
	"github.com/caddy-knocker/knocker/cluster/natscluster"
	"github.com/caddy-knocker/knocker/internal/testnats"
	"github.com/caddy-knocker/knocker/store"
)

// TestClusterGrantsOpenPorts: in cluster mode each node's firewalld follows
// the shared grants. A knock on node A (no firewalld there) opens the port
// on node B, whose grant arrives through the engine, and a revocation on
// A closes it on B.
func TestClusterGrantsOpenPorts(t *testing.T) {
	useZones(t, "dmz")
	url := testnats.URL(testnats.Start(t, testnats.Options(t)))

	join := func(name string, src *testSource) *cluster.Replicator {
		mod := &natscluster.NATS{Config: cluster.Config{Secret: "firewalld-cluster-test-secret-0123456789", Node: name}, URLs: []string{url}}
		if err := mod.Provision(caddy.Context{Context: context.Background()}); err != nil {
			t.Fatal(err)
		}
		r, err := cluster.New(cluster.Options{Config: mod.ClusterConfig(), Driver: mod, MaxTTL: 86400, Logger: zaptest.NewLogger(t).Named(name)})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(src.st, src.path); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Stop() })
		waitFor(t, 10*time.Second, func() (bool, string) { return r.Ready() == nil, "node " + name + " ready" })
		return r
	}
	b := openStore(t)
	startBackend(t, `{"zones":["dmz"],"ports":["2222/tcp"]}`, b)
	join("b", b)
	ra := join("a", openStore(t))

	p := mustPrefix(t, "198.51.100.7")
	if _, err := ra.Grant(context.Background(), p, time.Now().Add(time.Hour).Unix(), store.GrantOptions{Owner: "phone"}); err != nil {
		t.Fatal(err)
	}
	waitRules(t, 10*time.Second, "dmz", dropV4, dropV6, acceptText(t, "198.51.100.7", tcp(2222)))
	if _, err := ra.Revoke(p); err != nil {
		t.Fatal(err)
	}
	waitRules(t, 10*time.Second, "dmz", dropV4, dropV6)
}

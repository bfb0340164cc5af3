package knocker

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap/zaptest"

	"github.com/caddy-knocker/knocker/cluster"
	"github.com/caddy-knocker/knocker/cluster/natscluster"
	"github.com/caddy-knocker/knocker/internal/knockapi"
	"github.com/caddy-knocker/knocker/internal/testnats"
	"github.com/caddy-knocker/knocker/store"
)

const clusterSecret = "root-package-cluster-secret-0123456789"

// peerNode is another cluster node without Caddy: a store and its
// replicator.
type peerNode struct {
	st   *store.Store
	r    *cluster.Replicator
	bans chan netip.Addr
}

func startPeer(t *testing.T, url string) *peerNode {
	t.Helper()
	path := filepath.Join(t.TempDir(), "whitelist.json")
	st, err := store.Open(store.Options{Path: path, MaxEntries: 1000, CleanupInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	mod := &natscluster.NATS{Config: cluster.Config{Secret: clusterSecret, Node: "peer"}, URLs: []string{url}}
	if err := mod.Provision(caddy.Context{Context: context.Background()}); err != nil {
		t.Fatal(err)
	}
	p := &peerNode{st: st, bans: make(chan netip.Addr, 4)}
	p.r, err = cluster.New(cluster.Options{Config: mod.ClusterConfig(), Driver: mod, MaxTTL: 3600, Logger: zaptest.NewLogger(t).Named("peer"),
		OnBan: func(a netip.Addr, _ int64) { p.bans <- a }})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.r.Start(st, path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.r.Stop(); st.Close() })
	waitUntil(t, "the peer is ready", func() bool { return p.r.Ready() == nil })
	return p
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 15s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func clusterBlock(url string) string {
	return fmt.Sprintf("rate_limit {\n\t\t\tfailure 2\n\t\t}\n\t\tcluster nats {\n\t\t\turl %s\n\t\t\tsecret %s\n\t\t\tnode caddy\n\t\t}", url, clusterSecret)
}

// replOf is the running config's replicator.
func replOf(t *testing.T) *cluster.Replicator {
	t.Helper()
	a, err := runningApp()
	if err != nil {
		t.Fatal(err)
	}
	return a.repl
}

func TestClusterModeThroughCaddy(t *testing.T) {
	// The rate limiter outlives configs in this process: fresh addresses
	// for each run.
	subnet := rand.IntN(256)
	ip := func(host int) string { return fmt.Sprintf("198.18.%d.%d", subnet, host) }
	ns := testnats.Start(t, testnats.Options(t))
	url := testnats.URL(ns)
	peer := startPeer(t, url)
	dir := t.TempDir()
	h := startCaddyIn(t, dir, clusterBlock(url), defaultSite)
	repl := replOf(t)
	waitUntil(t, "Caddy's node is ready", func() bool { return h.do(request{path: "/ready"}).status == http.StatusOK })

	// A knock answered here is held by the peer; the peer's grant opens
	// the gate here.
	expectStatus(t, h.knock(ip(1), phoneSecret, ""), http.StatusOK, "knock")
	waitUntil(t, "the peer admits the knock", func() bool {
		return peer.st.Allowed(netip.MustParseAddr(ip(1)), time.Now().Unix())
	})
	if _, err := peer.r.Grant(context.Background(), netip.MustParsePrefix(ip(2)+"/32"), time.Now().Unix()+600, store.GrantOptions{Owner: "peer-key"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the gate admits the peer's grant", func() bool { return h.gate(ip(2)) == http.StatusOK })

	ready := h.do(request{path: "/ready"}).json(t)
	cl, _ := ready["cluster"].(map[string]any)
	if cl["node"] != "caddy" || cl["connected"] != true || cl["synced"] != true {
		t.Errorf("/ready: %v, want the cluster state (node caddy, connected, synced)", ready)
	}

	m := scrapeMetrics(t)
	for name, want := range map[string]float64{
		"caddy_knocker_cluster_connected": 1, "caddy_knocker_cluster_synced": 1, "caddy_knocker_cluster_unpublished": 0,
		"caddy_knocker_cluster_propagation_seconds_count": 1, // the peer's grant
	} {
		if got, ok := m.samples[name]; !ok || got < want || want == 0 && got != 0 {
			t.Errorf("/metrics %s = %v (present %v), want %v", name, got, ok, want)
		}
	}

	// A ban from the peer refuses the client here, with a good key.
	peer.r.Ban(netip.MustParseAddr(ip(9)), time.Now().Unix()+60)
	waitUntil(t, "the peer's ban holds here", func() bool {
		return h.knock(ip(9), phoneSecret, "").status == http.StatusTooManyRequests
	})
	// Failed knocks here fill the window (failure 2) and ban the client
	// on the peer.
	failing := netip.MustParseAddr(ip(10))
	for range 2 {
		h.knock(failing.String(), "wrong-key", "")
	}
	select {
	case a := <-peer.bans:
		if a != failing {
			t.Errorf("the peer was told to ban %v", a)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the peer never heard of the ban")
	}

	// A reload that keeps the cluster block keeps the replicator.
	startCaddyIn(t, dir, clusterBlock(url)+"\n\t\tcleanup_interval 30s", defaultSite)
	if replOf(t) != repl {
		t.Error("a reload with the same cluster config made a new replicator")
	}
	expectStatus(t, h.knock(ip(3), phoneSecret, ""), http.StatusOK, "knock after the reload")
	waitUntil(t, "the peer admits the knock after the reload", func() bool {
		return peer.st.Allowed(netip.MustParseAddr(ip(3)), time.Now().Unix())
	})

	// Revoked through the admin API here: gone on the peer.
	if r := admin(t, http.MethodDelete, "/knocker/grants/"+ip(1), ""); r.Status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.Status, r.Body)
	}
	waitUntil(t, "the peer drops the revoked grant", func() bool {
		return !peer.st.Allowed(netip.MustParseAddr(ip(1)), time.Now().Unix())
	})

	// The engine goes away: the gate keeps serving, knocks get 503 with
	// the knock API's JSON error, /ready says why.
	ns.Shutdown()
	ns.WaitForShutdown()
	waitUntil(t, "noticing the outage", func() bool { return h.do(request{path: "/ready"}).status == http.StatusServiceUnavailable })
	if h.gate(ip(2)) != http.StatusOK {
		t.Error("the gate stopped admitting a grant while the engine is down")
	}
	expectError(t, h.knock(ip(4), phoneSecret, ""), http.StatusServiceUnavailable, knockapi.MsgClusterDown)
	if h.gate(ip(4)) == http.StatusOK {
		t.Error("a refused knock was granted")
	}
	ready = h.do(request{path: "/ready"}).json(t)
	if cl, _ := ready["cluster"].(map[string]any); cl["connected"] != false {
		t.Errorf("/ready during the outage: %v", ready)
	}
}

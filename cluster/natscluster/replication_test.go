package natscluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/caddy-knocker/knocker/cluster"
	"github.com/caddy-knocker/knocker/store"
)

// Bounds for waiting on something the cluster does: generous, since the
// machine may be loaded; the figures come from the benchmarks.
const (
	propagation = 10 * time.Second
)

func threeNodes(t *testing.T, url string) (a, b, c *node) {
	a, b, c = newNode(t, "a", url), newNode(t, "b", url), newNode(t, "c", url)
	for _, n := range []*node{a, b, c} {
		n.waitSynced()
	}
	return a, b, c
}

func TestKnockReachesEveryNode(t *testing.T) {
	e := startEngine(t)
	a, b, c := threeNodes(t, e.url())

	res, err := a.knock("192.0.2.10/32", 600)
	if err != nil {
		t.Fatal(err)
	}
	if !a.st.Allowed(netip.MustParseAddr("192.0.2.10"), time.Now().Unix()) {
		t.Fatal("the answering node does not admit the grant it answered for")
	}
	for _, n := range []*node{b, c} {
		n.waitFor("grant from a", propagation, allowed("192.0.2.10"))
		g, err := n.st.Grants(time.Now().Unix())
		if err != nil || len(g) != 1 || g[0].Owner != "phone" || g[0].Expires != res.Entry.Expires {
			t.Errorf("%s holds %+v, %v; want a's grant with its key and expiry", n.name, g, err)
		}
	}
	// The remote grant fired a remote event; a's own did not come back as one.
	if evs := b.takeEvents(); len(evs) != 1 || evs[0].Kind != store.Added || !evs[0].Remote {
		t.Errorf("b's events %+v, want one remote Added", evs)
	}
	a.takeEvents()
	if _, err := a.knock("192.0.2.10/32", 900); err != nil {
		t.Fatal(err)
	}
	b.waitFor("re-knock", propagation, func(s *store.Store) bool {
		m, ok := s.Match(netip.MustParseAddr("192.0.2.10"), time.Now().Unix())
		return ok && m.Expires >= time.Now().Unix()+890
	})
	evs := a.takeEvents()
	if len(evs) != 1 || evs[0].Kind != store.Extended || evs[0].Remote {
		t.Errorf("a's events for its own re-knock: %+v, want one local Extended (its own record coming back changes nothing)", evs)
	}

	// A revocation on c reaches a and b.
	removed, err := c.r.Revoke(netip.MustParsePrefix("192.0.2.10/32"))
	if err != nil || len(removed) != 1 {
		t.Fatalf("revoke: %v %v", removed, err)
	}
	for _, n := range []*node{a, b} {
		n.waitFor("revocation from c", propagation, denied("192.0.2.10"))
	}
}

func TestScopedGrantsAndEvictionsReplicate(t *testing.T) {
	e := startEngine(t)
	a, b, _ := threeNodes(t, e.url())
	p := netip.MustParsePrefix("2001:db8:1::/64")
	exp := time.Now().Unix() + 600
	if _, err := a.r.Grant(context.Background(), p, exp, store.GrantOptions{Owner: "laptop", Scopes: []string{"ssh", "web"}}); err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("2001:db8:1::7")
	b.waitFor("scoped grant", propagation, func(s *store.Store) bool { return s.AllowedIn(ip, "ssh", time.Now().Unix()) })
	if b.st.Allowed(ip, time.Now().Unix()) || b.st.AllowedIn(ip, "git", time.Now().Unix()) {
		t.Error("a scoped grant admits beyond its scopes on another node")
	}

	// max_entries 3 on a: the fourth grant evicts the soonest-expiring,
	// and b converges to the same three.
	for i, ttl := range []int64{100, 200, 300} {
		if _, err := a.r.Grant(context.Background(), netip.MustParsePrefix(fmt.Sprintf("198.51.100.%d/32", i+1)), time.Now().Unix()+ttl,
			store.GrantOptions{Owner: "phone", MaxEntries: 4}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := a.r.Grant(context.Background(), netip.MustParsePrefix("198.51.100.9/32"), time.Now().Unix()+400,
		store.GrantOptions{Owner: "phone", MaxEntries: 4})
	if err != nil || len(res.Evicted) != 1 || res.Evicted[0].Prefix != netip.MustParsePrefix("198.51.100.1/32") {
		t.Fatalf("grant beyond max_entries: %+v %v", res, err)
	}
	b.waitFor("the same set as a", propagation, func(s *store.Store) bool { return sameEntries(a.st, s) })
}

func sameEntries(x, y *store.Store) bool {
	key := func(s *store.Store) []string {
		var out []string
		for _, e := range s.Entries(time.Now().Unix()) {
			out = append(out, fmt.Sprint(e.Prefix, e.Scopes, e.Expires))
		}
		sort.Strings(out)
		return out
	}
	return slices.Equal(key(x), key(y))
}

func TestForgedRecordAdmitsNobody(t *testing.T) {
	e := startEngine(t)
	a, b, _ := threeNodes(t, e.url())
	nc, err := nats.Connect(e.url())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(context.Background(), "knocker")
	if err != nil {
		t.Fatal(err)
	}
	p, q := netip.MustParsePrefix("203.0.113.5/32"), netip.MustParsePrefix("203.0.113.7/32")
	body := func(p netip.Prefix) []byte {
		return []byte(`{"v":1,"op":"grant","entry":"` + p.String() + `","expires":` + fmt.Sprint(time.Now().Unix()+600) + `,"node":"evil","time":1}`)
	}
	// Two keys: a second value under one key could replace the first in
	// the bucket (history 1) before a node reads it.
	for key, value := range map[string][]byte{
		cluster.GrantKey(p, nil): append([]byte("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"), body(p)...), // a wrong signature
		cluster.GrantKey(q, nil): body(q),                                                                                        // none
	} {
		if _, err := kv.Put(context.Background(), key, value); err != nil {
			t.Fatal(err)
		}
	}
	// A genuine grant after the forged ones is applied: the forged records
	// were delivered and dropped before it. (a stores its own grant
	// before its consumer need have delivered anything: a's count is
	// waited for.)
	if _, err := a.knock("203.0.113.6/32", 600); err != nil {
		t.Fatal(err)
	}
	b.waitFor("the genuine grant", propagation, allowed("203.0.113.6"))
	a.waitFor("the forged records", propagation, func(*store.Store) bool { return a.forged.Load() >= 2 })
	for _, n := range []*node{a, b} {
		if n.st.Allowed(p.Addr(), time.Now().Unix()) || n.st.Allowed(q.Addr(), time.Now().Unix()) {
			t.Errorf("%s admits a forged record's address", n.name)
		}
		if n.forged.Load() != 2 {
			t.Errorf("%s rejected %d records, want 2", n.name, n.forged.Load())
		}
	}
}

func TestEngineRestartLosesNothingAcknowledged(t *testing.T) {
	e := startEngine(t)
	a, b, _ := threeNodes(t, e.url())
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := a.knock(fmt.Sprintf("10.1.%d.%d/32", i/250, i%250+1), 600)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	e.stop()
	// The engine is down: gates keep serving, knocks are refused (503).
	if !a.st.Allowed(netip.MustParseAddr("10.1.0.1"), time.Now().Unix()) {
		t.Error("a stopped admitting while the engine is down")
	}
	if _, err := a.knock("10.9.9.9/32", 60); !errors.Is(err, cluster.ErrDown) {
		t.Errorf("knock with the engine down: %v, want ErrDown (when_down refuse)", err)
	}
	if a.r.Ready() == nil {
		t.Error("ready with the engine down and when_down refuse")
	}
	e.start()
	// Every acknowledged grant survived: a node that starts now reads them all.
	d := newNode(t, "d", e.url())
	d.waitSynced()
	if got := len(d.st.Entries(time.Now().Unix())); got != n {
		t.Errorf("a new node read %d grants after the restart, want %d", got, n)
	}
	// And b follows again, without waiting out heartbeats.
	a.waitFor("reconnect", propagation, func(*store.Store) bool { return a.r.Ready() == nil })
	if _, err := a.knock("10.9.9.9/32", 60); err != nil {
		t.Fatal(err)
	}
	b.waitFor("a grant after the restart", propagation, allowed("10.9.9.9"))
}

func TestPartitionAndHeal(t *testing.T) {
	e := startEngine(t)
	px := startProxy(t, "127.0.0.1:"+fmt.Sprint(e.port))
	a := newNode(t, "a", e.url())
	b := newNode(t, "b", px.url())
	a.waitSynced()
	b.waitSynced()
	px.partition()
	if _, err := a.knock("192.0.2.50/32", 600); err != nil {
		t.Fatal(err)
	}
	// b notices the dead link by itself (pings unanswered), with no FIN or
	// RST to tell it, and keeps gating from what it has.
	b.waitFor("noticing the partition", 3*propagation, func(*store.Store) bool { return !b.r.State().Connected })
	if b.st.Allowed(netip.MustParseAddr("192.0.2.50"), time.Now().Unix()) {
		t.Fatal("b admitted a grant it cannot have received")
	}
	if _, err := b.knock("192.0.2.51/32", 600); !errors.Is(err, cluster.ErrDown) {
		t.Errorf("knock on the partitioned node: %v, want ErrDown", err)
	}
	px.heal()
	b.waitFor("the grant made during the partition", 3*propagation, allowed("192.0.2.50"))
	if _, err := b.knock("192.0.2.51/32", 600); err != nil {
		t.Fatal(err)
	}
	a.waitFor("b's grant after healing", propagation, allowed("192.0.2.51"))
}

func TestWhenDownLocal(t *testing.T) {
	e := startEngine(t)
	a := newNode(t, "a", e.url())
	b := &node{t: t, name: "b", url: e.url(), path: filepath.Join(t.TempDir(), "whitelist.json"), bans: make(chan netip.Addr, 16), whenDown: cluster.Local}
	b.start()
	t.Cleanup(b.stop)
	a.waitSynced()
	b.waitSynced()
	e.stop()
	b.waitFor("noticing the outage", propagation, func(*store.Store) bool { return !b.r.State().Connected })
	if _, err := b.knock("192.0.2.60/32", 600); err != nil {
		t.Fatalf("knock with when_down local: %v", err)
	}
	if !b.st.Allowed(netip.MustParseAddr("192.0.2.60"), time.Now().Unix()) {
		t.Fatal("when_down local did not grant on this node")
	}
	if b.r.Ready() != nil || b.r.State().Unpublished != 1 {
		t.Errorf("ready %v, unpublished %d; want ready with one record waiting", b.r.Ready(), b.r.State().Unpublished)
	}
	e.start()
	a.waitFor("b's grant made during the outage", propagation, allowed("192.0.2.60"))
	b.waitFor("publishing", propagation, func(*store.Store) bool { return b.r.State().Unpublished == 0 })
	// The catch-up after reconnecting did not remove it from b.
	if !b.st.Allowed(netip.MustParseAddr("192.0.2.60"), time.Now().Unix()) {
		t.Error("b lost its own grant when it caught up")
	}
}

func TestJoiningPublishesAndMembersConverge(t *testing.T) {
	e := startEngine(t)
	a := newNode(t, "a", e.url())
	a.waitSynced()
	// b ran alone before: its grants move into the cluster when it joins.
	dir := t.TempDir()
	path := filepath.Join(dir, "whitelist.json")
	st, err := store.Open(store.Options{Path: path, MaxEntries: 100, CleanupInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.GrantWith(netip.MustParsePrefix("192.0.2.70/32"), time.Now().Unix()+600, store.GrantOptions{Owner: "phone"}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	b := &node{t: t, name: "b", url: e.url(), path: path, bans: make(chan netip.Addr, 16)}
	b.start()
	t.Cleanup(b.stop)
	a.waitFor("b's grant from before it joined", propagation, allowed("192.0.2.70"))
	b.waitFor("publishing", propagation, func(*store.Store) bool { return b.r.State().Unpublished == 0 })

	// Now a member: b, stopped, gets a grant the cluster never had; the
	// next catch-up removes it.
	b.stop()
	st, err = store.Open(store.Options{Path: path, MaxEntries: 100, CleanupInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Grant(netip.MustParsePrefix("192.0.2.71/32"), time.Now().Unix()+600); err != nil {
		t.Fatal(err)
	}
	st.Close()
	b.start()
	b.waitSynced()
	b.waitFor("removing what the cluster lacks", propagation, denied("192.0.2.71"))
	if !b.st.Allowed(netip.MustParseAddr("192.0.2.70"), time.Now().Unix()) {
		t.Error("b lost a grant the cluster holds")
	}
	// Leaving (a config without the cluster) makes the next join publish again.
	b.stop()
	if left, err := cluster.Leave(path); !left || err != nil {
		t.Fatalf("Leave: %v %v", left, err)
	}
}

func TestBanReachesOtherNodes(t *testing.T) {
	e := startEngine(t)
	a, b, c := threeNodes(t, e.url())
	actor := netip.MustParseAddr("2001:db8:9::")
	a.r.Ban(actor, time.Now().Unix()+60)
	for _, n := range []*node{b, c} {
		select {
		case got := <-n.bans:
			if got != actor {
				t.Errorf("%s banned %v, want %v", n.name, got, actor)
			}
		case <-time.After(propagation):
			t.Fatalf("%s never heard of the ban", n.name)
		}
	}
	select {
	case got := <-a.bans:
		t.Errorf("a was told of its own ban of %v", got)
	default:
	}
}

func TestReconnectsDoNotLeakConsumers(t *testing.T) {
	e := startEngine(t)
	px := startProxy(t, "127.0.0.1:"+fmt.Sprint(e.port))
	a := newNode(t, "a", px.url())
	a.waitSynced()
	for i := range 5 {
		px.cut()
		a.waitFor("reconnecting", propagation, func(*store.Store) bool {
			return a.mod.d.nc.Stats().Reconnects == uint64(i+1) && a.r.Ready() == nil
		})
		if _, err := a.knock("192.0.2.80/32", 600); err != nil {
			t.Fatal(err)
		}
	}
	nc, err := nats.Connect(e.url())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(context.Background(), "KV_knocker")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range s.ConsumerNames(context.Background()).Name() {
		names = append(names, name)
	}
	if len(names) > 1 {
		t.Errorf("%d consumers on the bucket after 5 reconnects of one node, want at most 1: %v", len(names), names)
	}
}

func TestCatchUpAfterDowntime(t *testing.T) {
	e := startEngine(t)
	a, _, c := threeNodes(t, e.url())
	if _, err := c.knock("192.0.2.1/32", 600); err != nil {
		t.Fatal(err)
	}
	c.stop()
	const n = 2000
	knockMany(t, a, n)
	// Revoked while c was down.
	if _, err := a.r.Revoke(netip.MustParsePrefix("192.0.2.1/32")); err != nil {
		t.Fatal(err)
	}
	c.start()
	c.waitSynced()
	c.waitFor("all grants", propagation, func(s *store.Store) bool { return s.Len() == n })
	if c.st.Allowed(netip.MustParseAddr("192.0.2.1"), time.Now().Unix()) {
		t.Error("c still admits a grant revoked while it was down")
	}
}

// knockMany makes n grants on node x, 32 at a time.
func knockMany(t testing.TB, x *node, n int) {
	t.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	var failed error
	var mu sync.Mutex
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := x.knock(fmt.Sprintf("10.%d.%d.%d/32", 100+i/65000, i/250%260, i%250+1), 3600); err != nil {
				mu.Lock()
				failed = err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if failed != nil {
		t.Fatal(failed)
	}
}

// A bucket made again (the engine lost its store) numbers its changes from
// 1 again: a node must forget the revisions of the bucket it followed
// before, or it ignores every change there to a key it knew at a higher
// revision (a revocation among them) and, after its next reconnect,
// resumes after the old bucket's last revision, missing everything before.
func TestRecreatedBucketStartsOver(t *testing.T) {
	e := startEngine(t)
	a := newNode(t, "a", e.url())
	b := newNode(t, "b", e.url())
	a.waitSynced()
	b.waitSynced()
	const knocks = 100
	for i := range knocks { // many revisions of one key
		if _, err := a.knock("192.0.2.90/32", int64(600+i)); err != nil {
			t.Fatal(err)
		}
	}
	b.waitFor("the last re-knock", propagation, func(s *store.Store) bool {
		m, ok := s.Match(netip.MustParseAddr("192.0.2.90"), time.Now().Unix())
		return ok && m.Expires >= time.Now().Unix()+600+knocks-1-5
	})
	e.stop()
	if err := os.RemoveAll(e.dir); err != nil {
		t.Fatal(err)
	}
	e.start()
	// Both publish what they hold into the new bucket (they join it).
	for _, n := range []*node{a, b} {
		n.waitFor("following the new bucket", propagation, func(*store.Store) bool {
			st := n.r.State()
			return n.r.Ready() == nil && st.Unpublished == 0 && st.Revision > 0 && st.Revision < knocks
		})
	}
	if _, err := a.r.Revoke(netip.MustParsePrefix("192.0.2.90/32")); err != nil {
		t.Fatal(err)
	}
	b.waitFor("a revocation in the new bucket", propagation, denied("192.0.2.90"))
	if _, err := a.knock("192.0.2.91/32", 600); err != nil {
		t.Fatal(err)
	}
	b.waitFor("a grant in the new bucket", propagation, allowed("192.0.2.91"))
	// b resumes after its revision in the new bucket.
	e.stop()
	e.start()
	a.waitFor("reconnecting", propagation, func(*store.Store) bool { return a.r.Ready() == nil })
	if _, err := a.knock("192.0.2.92/32", 600); err != nil {
		t.Fatal(err)
	}
	b.waitFor("a grant after resuming in the new bucket", propagation, allowed("192.0.2.92"))
}

// Records a node could not publish while the engine was down survive its
// restart (they are journaled beside the whitelist): a revocation answered
// then is published once the engine is back, and the catch-up does not
// bring the revoked grant back meanwhile; a when_down local grant is
// published and not removed as one the bucket lacks.
func TestUnpublishedRecordsSurviveRestart(t *testing.T) {
	e := startEngine(t)
	a := newNode(t, "a", e.url())
	b := &node{t: t, name: "b", url: e.url(), path: filepath.Join(t.TempDir(), "whitelist.json"), bans: make(chan netip.Addr, 16), whenDown: cluster.Local}
	b.start()
	t.Cleanup(b.stop)
	c := newNode(t, "c", e.url())
	for _, n := range []*node{a, b, c} {
		n.waitSynced()
	}
	const revoked, local = "192.0.2.100", "192.0.2.101"
	if _, err := a.knock(revoked+"/32", 600); err != nil {
		t.Fatal(err)
	}
	c.waitFor("the grant", propagation, allowed(revoked))
	b.waitFor("the grant", propagation, allowed(revoked))

	e.stop()
	for _, n := range []*node{a, b} {
		n.waitFor("noticing the outage", propagation, func(*store.Store) bool { return !n.r.State().Connected })
	}
	if removed, err := a.r.Revoke(netip.MustParsePrefix(revoked + "/32")); err != nil || len(removed) != 1 {
		t.Fatalf("revoking with the engine down: %v %v", removed, err)
	}
	if _, err := b.knock(local+"/32", 600); err != nil {
		t.Fatalf("knock with when_down local and the engine down: %v", err)
	}
	// Both restart before the engine is back.
	for _, n := range []*node{a, b} {
		n.stop()
		n.start()
		if got := n.r.State().Unpublished; got != 1 {
			t.Errorf("%s after its restart: %d records unpublished, want 1", n.name, got)
		}
	}
	a.takeEvents()
	e.start()
	for _, n := range []*node{a, b, c} {
		n.waitFor("the revocation", propagation, denied(revoked))
		n.waitFor("the when_down local grant", propagation, allowed(local))
	}
	for _, n := range []*node{a, b} {
		n.waitFor("publishing", propagation, func(*store.Store) bool { return n.r.Ready() == nil && n.r.State().Unpublished == 0 })
	}
	for _, ev := range a.takeEvents() {
		if ev.Kind != store.Removed && ev.Entry.Prefix == netip.MustParsePrefix(revoked+"/32") {
			t.Errorf("a admitted %s again while catching up: %+v", revoked, ev)
		}
	}
	// Nothing waits any more: the journals go.
	deadline := time.Now().Add(propagation)
	for _, n := range []*node{a, b} {
		for {
			_, err := os.Stat(n.path + ".cluster-pending")
			if errors.Is(err, os.ErrNotExist) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s's journal of unpublished records still there with nothing to publish: %v", n.name, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// A reload runs the new config's replicator beside the old one's for a
// moment, on the same store: they share the unpublished records, so that
// what the old one could not publish (even a record it made after the new
// one started) the new one publishes.
func TestReloadKeepsUnpublishedRecords(t *testing.T) {
	e := startEngine(t)
	a := newNode(t, "a", e.url())
	c := newNode(t, "c", e.url())
	a.waitSynced()
	c.waitSynced()
	const x, y = "192.0.2.110", "192.0.2.111"
	for _, ip := range []string{x, y} {
		if _, err := a.knock(ip+"/32", 600); err != nil {
			t.Fatal(err)
		}
		c.waitFor("the grant", propagation, allowed(ip))
	}
	e.stop()
	a.waitFor("noticing the outage", propagation, func(*store.Store) bool { return !a.r.State().Connected })
	if _, err := a.r.Revoke(netip.MustParsePrefix(x + "/32")); err != nil {
		t.Fatal(err)
	}
	// The new config's replicator starts on a's store.
	mod := &NATS{Config: cluster.Config{Secret: testSecret, Node: "a"}, URLs: []string{e.url()}}
	if err := mod.Provision(caddy.Context{Context: context.Background()}); err != nil {
		t.Fatal(err)
	}
	next, err := cluster.New(cluster.Options{Config: mod.ClusterConfig(), Driver: mod, MaxTTL: 86400,
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Named("a-next")})
	if err != nil {
		t.Fatal(err)
	}
	if err := next.Start(a.st, a.path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { next.Stop() })
	// The old one still serves a revocation, then stops.
	if _, err := a.r.Revoke(netip.MustParsePrefix(y + "/32")); err != nil {
		t.Fatal(err)
	}
	a.r.Stop()
	if got := next.State().Unpublished; got != 2 {
		t.Errorf("the new config's replicator has %d records to publish, want the old one's 2", got)
	}
	e.start()
	for _, ip := range []string{x, y} {
		c.waitFor("a revocation made before and during the reload", propagation, denied(ip))
	}
}

// A grant this node makes once the engine is back replaces its record of
// the key still waiting to be published (here a revocation made during
// the outage): the older record must not be published after it, or the
// bucket's last word on the key is the stale one (live nodes ignore it as
// older; a node catching up later applies it).
func TestGrantReplacesUnpublishedRecordOfItsKey(t *testing.T) {
	e := startEngine(t)
	a := newNode(t, "a", e.url())
	a.waitSynced()
	const k = "192.0.2.120"
	if _, err := a.knock(k+"/32", 600); err != nil {
		t.Fatal(err)
	}
	e.stop()
	a.waitFor("noticing the outage", propagation, func(*store.Store) bool { return !a.r.State().Connected })
	if _, err := a.r.Revoke(netip.MustParsePrefix(k + "/32")); err != nil {
		t.Fatal(err)
	}
	e.start()
	a.waitFor("reconnecting", propagation, func(*store.Store) bool { return a.r.Ready() == nil })
	if _, err := a.knock(k+"/32", 900); err != nil {
		t.Fatal(err)
	}
	a.waitFor("publishing", propagation, func(*store.Store) bool { return a.r.State().Unpublished == 0 })
	d := newNode(t, "d", e.url())
	d.waitSynced()
	if !d.st.Allowed(netip.MustParseAddr(k), time.Now().Unix()) {
		t.Error("a node reading the bucket denies the re-knocked grant: the revocation made before it was published after it")
	}
	if !a.st.Allowed(netip.MustParseAddr(k), time.Now().Unix()) {
		t.Error("a denies its own re-knock")
	}
}

// A whitelist with many grants joins: its catch-up ends at once (the
// records wait in one write of the pending file, not one each) and its
// grants reach the others.
func TestJoiningWithManyGrants(t *testing.T) {
	e := startEngine(t)
	a := newNode(t, "a", e.url())
	a.waitSynced()
	path := filepath.Join(t.TempDir(), "whitelist.json")
	st, err := store.Open(store.Options{Path: path, MaxEntries: 100000, CleanupInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	changes := make([]store.Change, n)
	for i := range changes {
		changes[i] = store.Change{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 7, byte(i >> 8), byte(i)}), 32),
			Expires: time.Now().Unix() + 3600, Options: store.GrantOptions{Owner: "phone"}}
	}
	if err := st.Apply(changes); err != nil {
		t.Fatal(err)
	}
	st.Close()
	b := &node{t: t, name: "b", url: e.url(), path: path, bans: make(chan netip.Addr, 1)}
	b.start()
	t.Cleanup(b.stop)
	b.waitSynced()
	a.waitFor("b's grants", 6*propagation, func(s *store.Store) bool { return s.Len() == n })
	b.waitFor("publishing", propagation, func(*store.Store) bool { return b.r.State().Unpublished == 0 })
}

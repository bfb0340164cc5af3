package natscluster

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/caddy-knocker/knocker/cluster"
	"github.com/caddy-knocker/knocker/store"
)

// A revocation made while the engine is unreachable lives only in the
// replicator's memory. A restart (or a caddy reload: a new replicator) before
// the engine is back drops it, and the next catch-up re-applies the grant
// from the bucket: the revoked client is admitted again, everywhere.
func TestRevocationSurvivesRestartDuringOutage(t *testing.T) {
	e := startEngine(t)
	px := startProxy(t, "127.0.0.1:"+fmt.Sprint(e.port))
	a := newNode(t, "a", px.url())
	b := newNode(t, "b", e.url())
	a.waitSynced()
	b.waitSynced()
	if _, err := b.knock("192.0.2.90/32", 600); err != nil {
		t.Fatal(err)
	}
	a.waitFor("b's grant", propagation, allowed("192.0.2.90"))

	px.partition()
	a.waitFor("noticing the partition", 3*propagation, func(*store.Store) bool { return !a.r.State().Connected })
	if removed, err := a.r.Revoke(netip.MustParsePrefix("192.0.2.90/32")); err != nil || len(removed) != 1 {
		t.Fatalf("revoke: %v %v", removed, err) // "never refused: published when the engine is back"
	}
	a.stop() // a restart or a reload while the engine is still unreachable
	a.start()
	px.heal()
	a.waitSynced()
	a.waitFor("publishing the revocation", 3*propagation, func(*store.Store) bool { return a.r.State().Unpublished == 0 })
	a.waitFor("the revocation staying in force here", propagation, denied("192.0.2.90"))
	b.waitFor("the revocation reaching b", propagation, denied("192.0.2.90"))
}

// The bucket is deleted and made again (by an operator, or a node that
// starts against a fresh NATS deployment) while nodes run. A running node
// keeps its cached bucket id (cleared only on a disconnect), so it resumes
// in the new stream after its old revision, and its applier still holds the
// old revisions per key: grants in the new bucket never reach it.
func TestRecreatedBucketIsFollowed(t *testing.T) {
	e := startEngine(t)
	a := newNode(t, "a", e.url())
	a.waitSynced()
	for i := range 20 {
		if _, err := a.knock(fmt.Sprintf("198.51.100.%d/32", i+1), 600); err != nil {
			t.Fatal(err)
		}
	}
	nc, err := nats.Connect(e.url())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := js.DeleteKeyValue(context.Background(), "knocker"); err != nil {
		t.Fatal(err)
	}
	c := newNode(t, "c", e.url()) // makes the bucket again
	c.waitSynced()
	if _, err := c.knock("203.0.113.77/32", 600); err != nil {
		t.Fatal(err)
	}
	a.waitFor("c's grant in the new bucket", propagation, allowed("203.0.113.77"))
}

// A NATS URL with credentials (nats://user:password@host, the form NATS
// tools print) is refused: they would show in errors, logs and /ready. The
// error itself does not repeat the password.
func TestURLCredentialsRefused(t *testing.T) {
	n := &NATS{Config: cluster.Config{Secret: testSecret, Node: "a"}, URLs: []string{"nats://knocker:hunter2-nats-password@127.0.0.1:4222"}}
	err := n.Provision(caddy.Context{Context: context.Background()})
	if err == nil || !strings.Contains(err.Error(), "use user and password") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("Provision: %v, want a refusal that names the fields to use and not the password", err)
	}
}

func TestStaleTombstoneRealEngine(t *testing.T) {
	e := startEngine(t)
	px := startProxy(t, "127.0.0.1:"+fmt.Sprint(e.port))
	a := newNode(t, "a", px.url())
	b := newNode(t, "b", e.url())
	a.waitSynced()
	b.waitSynced()
	if _, err := b.knock("192.0.2.91/32", 600); err != nil {
		t.Fatal(err)
	}
	a.waitFor("b's grant", propagation, allowed("192.0.2.91"))
	px.partition()
	a.waitFor("noticing the partition", 3*propagation, func(*store.Store) bool { return !a.r.State().Connected })
	if _, err := a.r.Revoke(netip.MustParsePrefix("192.0.2.91/32")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)                        // the re-knock's record is made later by the clocks too
	if _, err := b.knock("192.0.2.91/32", 900); err != nil { // the client knocks again after the revocation: 200
		t.Fatal(err)
	}
	px.heal()
	a.waitFor("publishing", 3*propagation, func(*store.Store) bool { return a.r.State().Connected && a.r.State().Unpublished == 0 })
	c := newNode(t, "c", e.url())
	c.waitSynced()
	b.waitFor("reaching the bucket's revision", propagation, func(*store.Store) bool { return b.r.State().Revision >= c.r.State().Revision })
	ip := netip.MustParseAddr("192.0.2.91")
	now := time.Now().Unix()
	t.Logf("a admits %v, b admits %v, c admits %v", a.st.Allowed(ip, now), b.st.Allowed(ip, now), c.st.Allowed(ip, now))
	if b.st.Allowed(ip, now) != c.st.Allowed(ip, now) {
		t.Fatal("b and a node that starts now disagree about the same key")
	}
	if !c.st.Allowed(ip, now) {
		t.Error("the revocation made during the outage won over the knock made after it")
	}
}

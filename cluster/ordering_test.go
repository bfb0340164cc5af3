package cluster

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/caddy-knocker/knocker/store"
)

// A member node restarts; its first snapshot is interrupted (a missed
// heartbeat, a reconnect, a sequence gap: Follow starts again from
// Resume, which still says 0) and the second snapshot delivers the same
// records. They are skipped as "already applied" before being marked
// seen, and the reconcile then removes them from the local whitelist.
func TestResnapshotAfterInterruptedSnapshotKeepsGrants(t *testing.T) {
	b := newFakeBucket()
	key, value := grantRecord("b", "192.0.2.10/32", 600)
	b.kv[key] = fakeValue{value: value, rev: 7}
	b.rev = 7
	a := newFakeNode(t, b, "a", true, "", func(n *fakeNode) { n.d.manual = true; n.markJoined() })
	f := <-a.d.followed
	u := Update{Key: key, Value: value, Revision: 7}

	f.Snapshot(fakeBucketID)
	f.Change(u)
	// ... interrupted; Follow starts again by asking Resume:
	if bucket, rev := f.Resume(); bucket != "" || rev != 0 {
		t.Fatalf("Resume after an interrupted first snapshot: %q %d", bucket, rev)
	}
	f.Snapshot(fakeBucketID)
	f.Change(u)
	f.Synced()
	a.waitSynced()
	a.settle()
	if !a.admits("192.0.2.10") {
		t.Fatal("a member's grant the bucket holds was removed by the catch-up after an interrupted snapshot")
	}
}

// A knock acknowledged by the engine after the driver checked the bucket
// but before the snapshot began (its record is in the snapshot, its local
// apply was not "touched" because no snapshot was running yet) is removed
// by the reconcile of a member node: the snapshot's copy is skipped as
// already applied, so the key is neither seen nor touched.
func TestKnockJustBeforeSnapshotSurvivesReconcile(t *testing.T) {
	b := newFakeBucket()
	a := newFakeNode(t, b, "a", true, "", func(n *fakeNode) { n.d.manual = true; n.markJoined() })
	f := <-a.d.followed
	if err := a.grant("192.0.2.20/32", 600); err != nil {
		t.Fatal(err) // answered 200
	}
	if !a.admits("192.0.2.20") {
		t.Fatal("not stored after a 200")
	}
	// The consumer is created now: the snapshot holds the knock's record.
	f.Snapshot(fakeBucketID)
	for _, u := range b.since(0, true) {
		f.Change(u)
	}
	f.Synced()
	a.waitSynced()
	a.settle()
	if !a.admits("192.0.2.20") {
		t.Fatal("a knock answered 200 was removed by the first catch-up although the bucket holds it")
	}
}

// Calls racing with (or following) Stop can be queued after the applier
// has exited: send's select picks r.in or r.stop at random when both are
// ready, and nothing answers an item queued after drainClosed. With a
// revocation (or a when_down local knock) the caller then waits forever.
func TestCallsAfterStopDoNotHang(t *testing.T) {
	b := newFakeBucket()
	a := newFakeNode(t, b, "a", true, "", nil)
	a.waitSynced()
	if err := a.r.Stop(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	hung := make(chan struct{}, 64)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			done := make(chan error, 1)
			go func() {
				_, err := a.r.Revoke(netip.MustParsePrefix("192.0.2.30/32"))
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, store.ErrClosed) {
					t.Errorf("Revoke after Stop: %v, want ErrClosed", err)
				}
			case <-time.After(2 * time.Second):
				hung <- struct{}{}
			}
		}()
	}
	wg.Wait()
	if n := len(hung); n > 0 {
		t.Fatalf("%d of 64 revocations after Stop never returned", n)
	}
}

// A revocation made while the engine is unreachable waits in pending with
// the time it was made. Meanwhile the client knocks again on another node
// (newer). When the engine is back the stale tombstone is published last,
// unconditionally: the bucket now says "removed" while every running node
// (which ignores the older record) admits. A node that starts, or any node
// that restarts, follows the bucket: the grant answered 200 is lost there.
func TestStaleTombstoneDoesNotOverwriteNewerGrant(t *testing.T) {
	bk := newFakeBucket()
	a := newFakeNode(t, bk, "a", true, "", nil)
	b := newFakeNode(t, bk, "b", true, "", nil)
	a.waitSynced()
	b.waitSynced()
	if err := b.grant("192.0.2.40/32", 600); err != nil {
		t.Fatal(err)
	}
	a.eventually("b's grant", func() bool { return a.admits("192.0.2.40") })

	a.d.setUp(false)
	if _, err := a.r.Revoke(netip.MustParsePrefix("192.0.2.40/32")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if err := b.grant("192.0.2.40/32", 900); err != nil { // the client knocks again, after the revocation
		t.Fatal(err)
	}
	a.d.setUp(true)
	a.eventually("publishing", func() bool { return a.r.State().Unpublished == 0 })
	a.settle()
	b.settle()

	c := newFakeNode(t, bk, "c", true, "", nil)
	c.waitSynced()
	c.settle()
	t.Logf("a admits %v, b admits %v, c admits %v", a.admits("192.0.2.40"), b.admits("192.0.2.40"), c.admits("192.0.2.40"))
	if b.admits("192.0.2.40") != c.admits("192.0.2.40") || a.admits("192.0.2.40") != c.admits("192.0.2.40") {
		t.Fatal("the nodes disagree: the bucket's latest record for the key is older than the one the running nodes applied")
	}
}

// The mirror image, with when_down local: a node re-knocks while the
// engine is unreachable (a local grant, pending); an operator revokes the
// entry on another node afterwards. When the engine is back the stale
// grant is published over the newer tombstone: running nodes ignore it,
// but a node that starts or restarts admits the revoked client again.
func TestStaleLocalGrantDoesNotResurrectRevocation(t *testing.T) {
	bk := newFakeBucket()
	a := newFakeNode(t, bk, "a", true, Local, nil)
	b := newFakeNode(t, bk, "b", true, "", nil)
	a.waitSynced()
	b.waitSynced()
	if err := b.grant("192.0.2.50/32", 600); err != nil {
		t.Fatal(err)
	}
	a.eventually("b's grant", func() bool { return a.admits("192.0.2.50") })

	a.d.setUp(false)
	if err := a.grant("192.0.2.50/32", 600); err != nil { // when_down local: granted here, pending
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if _, err := b.r.Revoke(netip.MustParsePrefix("192.0.2.50/32")); err != nil { // revoked afterwards
		t.Fatal(err)
	}
	b.eventually("publishing the tombstone", func() bool { return b.r.State().Unpublished == 0 })
	a.d.setUp(true)
	a.eventually("publishing", func() bool { return a.r.State().Unpublished == 0 })
	a.settle()
	b.settle()

	c := newFakeNode(t, bk, "c", true, "", nil)
	c.waitSynced()
	c.settle()
	t.Logf("a admits %v, b admits %v, c admits %v", a.admits("192.0.2.50"), b.admits("192.0.2.50"), c.admits("192.0.2.50"))
	if c.admits("192.0.2.50") {
		t.Fatal("a revocation made after the local grant is undone on a node that (re)starts")
	}
}

// Records of one key from different nodes are ordered by their makers'
// wall clocks, not by the engine's revisions. With b's clock 5 s ahead
// (well inside the 60 s the docs allow), an operator's revocation on a,
// made after b's knock, is older than the knock by the clocks: every node
// that applied the knock ignores the revocation ("replayed?"), while the
// bucket holds the tombstone.
func TestRevocationAfterKnockWithSmallClockSkew(t *testing.T) {
	bk := newFakeBucket()
	a := newFakeNode(t, bk, "a", true, "", nil)
	b := newFakeNode(t, bk, "b", true, "", func(n *fakeNode) {
		n.now = func() time.Time { return time.Now().Add(5 * time.Second) }
	})
	a.waitSynced()
	b.waitSynced()
	if err := b.grant("192.0.2.60/32", 600); err != nil {
		t.Fatal(err)
	}
	a.eventually("b's grant", func() bool { return a.admits("192.0.2.60") })
	time.Sleep(100 * time.Millisecond)
	if _, err := a.r.Revoke(netip.MustParsePrefix("192.0.2.60/32")); err != nil {
		t.Fatal(err)
	}
	a.eventually("publishing", func() bool { return a.r.State().Unpublished == 0 })
	b.settle()
	if b.admits("192.0.2.60") {
		t.Fatal("b ignores a revocation made after its knock because its clock is 5 s ahead")
	}
}

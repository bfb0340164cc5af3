package cluster

// A deterministic in-memory driver for testing the replicator's ordering:
// one shared bucket (latest value per key, like a KV bucket with history 1),
// drivers that can be taken down and brought back (a resume after the last
// revision their follower applied, or a full snapshot), and live delivery
// of every put to each driver that is up.

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/caddy-knocker/knocker/store"
)

const fakeBucketID = "knocker@1"

type fakeValue struct {
	value   []byte
	rev     uint64
	deleted bool
}

type fakeBucket struct {
	mu      sync.Mutex
	rev     uint64
	kv      map[string]fakeValue
	drivers []*fakeDriver
}

func newFakeBucket() *fakeBucket { return &fakeBucket{kv: map[string]fakeValue{}} }

// latest returns key's current value.
func (b *fakeBucket) latest(key string) (fakeValue, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.kv[key]
	return v, ok
}

type fakeDriver struct {
	b        *fakeBucket
	mu       sync.Mutex
	up       bool
	f        Follower
	deliver  sync.Mutex // one delivery at a time per driver, as the contract says
	closed   chan struct{}
	once     sync.Once
	manual   bool // Follow only records the follower: the test drives it
	followed chan Follower
}

func (b *fakeBucket) driver(up bool) *fakeDriver {
	d := &fakeDriver{b: b, up: up, closed: make(chan struct{}), followed: make(chan Follower, 1)}
	b.mu.Lock()
	b.drivers = append(b.drivers, d)
	b.mu.Unlock()
	return d
}

func (d *fakeDriver) Open(*zap.Logger) error { return nil }

func (d *fakeDriver) Put(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	return d.put(key, value, nil)
}

func (d *fakeDriver) PutIfLast(ctx context.Context, key string, value []byte, ttl time.Duration, last uint64) (uint64, error) {
	return d.put(key, value, &last)
}

func (d *fakeDriver) Latest(ctx context.Context, key string) ([]byte, uint64, error) {
	if !d.Status().Connected {
		return nil, 0, ErrDown
	}
	v, ok := d.b.latest(key)
	if !ok {
		return nil, 0, nil
	}
	if v.deleted {
		return nil, v.rev, nil
	}
	return v.value, v.rev, nil
}

func (d *fakeDriver) put(key string, value []byte, last *uint64) (uint64, error) {
	d.mu.Lock()
	up := d.up
	d.mu.Unlock()
	if !up {
		return 0, ErrDown
	}
	b := d.b
	b.mu.Lock()
	if last != nil && b.kv[key].rev != *last {
		b.mu.Unlock()
		return 0, ErrConflict
	}
	b.rev++
	rev := b.rev
	b.kv[key] = fakeValue{value: value, rev: rev}
	drivers := append([]*fakeDriver(nil), b.drivers...)
	b.mu.Unlock()
	u := Update{Key: key, Value: value, Revision: rev}
	for _, o := range drivers {
		o.live(u)
	}
	return rev, nil
}

// live delivers u to d's follower if d is up and following.
func (d *fakeDriver) live(u Update) {
	d.mu.Lock()
	f, up, manual := d.f, d.up, d.manual
	d.mu.Unlock()
	if f == nil || !up || manual {
		return
	}
	d.deliver.Lock()
	f.Change(u)
	d.deliver.Unlock()
}

// catchUp resumes (or snapshots) d's follower from the bucket.
func (d *fakeDriver) catchUp() {
	d.mu.Lock()
	f := d.f
	d.mu.Unlock()
	if f == nil {
		return
	}
	d.deliver.Lock()
	defer d.deliver.Unlock()
	bucket, from := f.Resume()
	snapshot := from == 0 || bucket != fakeBucketID
	if snapshot {
		f.Snapshot(fakeBucketID)
	}
	for _, u := range d.b.since(from, snapshot) {
		f.Change(u)
	}
	f.Synced()
}

// since is the bucket's latest values after revision from, in revision order.
func (b *fakeBucket) since(from uint64, all bool) []Update {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Update
	for k, v := range b.kv {
		if all || v.rev > from {
			out = append(out, Update{Key: k, Value: v.value, Revision: v.rev, Deleted: v.deleted})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Revision < out[j].Revision })
	return out
}

func (d *fakeDriver) Follow(f Follower) {
	d.mu.Lock()
	d.f = f
	up, manual := d.up, d.manual
	d.mu.Unlock()
	d.followed <- f
	if up && !manual {
		d.catchUp()
	}
	<-d.closed
}

func (d *fakeDriver) setUp(up bool) {
	d.mu.Lock()
	d.up = up
	d.mu.Unlock()
	if up {
		d.catchUp()
	}
}

func (d *fakeDriver) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Status{Connected: d.up}
}

func (d *fakeDriver) Close() error {
	d.once.Do(func() { close(d.closed) })
	return nil
}

// fakeNode is a store and its replicator on a fake driver.
type fakeNode struct {
	t    *testing.T
	name string
	path string
	st   *store.Store
	d    *fakeDriver
	r    *Replicator
	now  func() time.Time // nil: time.Now
}

func newFakeNode(t *testing.T, b *fakeBucket, name string, up bool, whenDown string, prepare func(n *fakeNode)) *fakeNode {
	t.Helper()
	n := &fakeNode{t: t, name: name, path: filepath.Join(t.TempDir(), "whitelist.json")}
	st, err := store.Open(store.Options{Path: n.path, MaxEntries: 1000, CleanupInterval: time.Hour,
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))})
	if err != nil {
		t.Fatal(err)
	}
	n.st = st
	n.d = b.driver(up)
	if prepare != nil {
		prepare(n)
	}
	if whenDown == "" {
		whenDown = Refuse
	}
	n.r, err = New(Options{
		Config: Resolved{Secret: secret, Node: name, WhenDown: whenDown, Timeout: time.Second},
		Driver: n.d, MaxTTL: 86400, Now: n.now,
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)).Named(name),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.r.Start(st, n.path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.r.Stop()
		n.st.Close()
	})
	return n
}

// markJoined writes the file that says n's whitelist joined the fake bucket
// before (a member node restarting).
func (n *fakeNode) markJoined() {
	if err := os.WriteFile(n.path+stateSuffix, []byte(`{"bucket":"`+fakeBucketID+`"}`+"\n"), 0o600); err != nil {
		n.t.Fatal(err)
	}
}

func (n *fakeNode) waitSynced() {
	n.t.Helper()
	n.eventually("synced", func() bool { return n.r.State().Synced })
}

func (n *fakeNode) eventually(what string, cond func() bool) {
	n.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			n.t.Fatalf("%s: %s: not within 5s", n.name, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// settle waits until n's applier has handled everything sent so far.
func (n *fakeNode) settle() {
	n.t.Helper()
	it := item{kind: itemExec, exec: func(*store.Store) ([]store.Entry, error) { return nil, nil }, done: make(chan struct{})}
	if err := n.r.send(&it); err != nil {
		n.t.Fatal(err)
	}
	<-it.done
}

func (n *fakeNode) admits(ip string) bool {
	return n.st.Allowed(netip.MustParseAddr(ip), time.Now().Unix())
}

func (n *fakeNode) grant(prefix string, ttl int64) error {
	_, err := n.r.Grant(context.Background(), netip.MustParsePrefix(prefix), time.Now().Unix()+ttl, store.GrantOptions{Owner: "phone"})
	return err
}

// grantRecord is a peer's signed grant of prefix, as the bucket holds it.
func grantRecord(node, prefix string, ttl int64) (string, []byte) {
	p := netip.MustParsePrefix(prefix)
	rec := &Record{Op: OpGrant, Entry: store.FormatPrefix(p), Expires: time.Now().Unix() + ttl, KeyName: "phone", Node: node, Time: time.Now().UnixMilli()}
	k := GrantKey(p, nil)
	return k, seal(secret, k, rec)
}

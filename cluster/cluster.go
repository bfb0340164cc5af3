// Package cluster shares one whitelist among several Caddy nodes. The
// knocker app hosts a guest module in the knocker.cluster namespace,
// configured in the app's "cluster" object, whose "driver" field names it
// (knocker.cluster.nats ships with Knocker; see the natscluster package).
// A driver is only the transport: a key-value bucket with revisions. The
// Replicator here does the rest, the same for every driver: it signs and
// checks records, publishes this node's grants and revocations, applies
// the others' to the local store in revision order, catches up after an
// outage and decides what a knock gets while the engine is down.
//
// Each node still gates from its own in-memory store: nothing on the
// request path waits for the network. A knock waits for the engine's
// acknowledgement and the local store's fsync before it is answered, so
// that a 200 is honoured by every node even if the answering node dies.
package cluster

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"
)

// Driver is a cluster engine's transport, implemented by knocker.cluster
// modules (with Module). Keys match [-/_=.a-zA-Z0-9]+; values are opaque.
type Driver interface {
	// Open starts connecting and returns without waiting for the engine:
	// a node must start, and gate, while the engine is down. It fails only
	// for what retrying cannot fix (a bad URL, unreadable credentials).
	Open(log *zap.Logger) error
	// Put stores value under key, to be dropped by the engine after ttl,
	// and returns the change's revision once the engine has acknowledged
	// it durably. It fails at once, wrapping ErrDown, when the engine is
	// unreachable, and when ctx ends first.
	Put(ctx context.Context, key string, value []byte, ttl time.Duration) (revision uint64, err error)
	// PutIfLast is Put while key's newest revision is last (0: the key
	// holds nothing); otherwise it fails wrapping ErrConflict.
	PutIfLast(ctx context.Context, key string, value []byte, ttl time.Duration, last uint64) (revision uint64, err error)
	// Latest returns key's newest value and its revision (nil and 0 when
	// it holds nothing; a nil value with a revision for a delete marker).
	Latest(ctx context.Context, key string) (value []byte, revision uint64, err error)
	// Follow delivers the bucket to f until Close, from f.Resume(): a
	// full snapshot (Snapshot, one Change per live key, Synced) when it
	// returns 0 or the bucket is not the one it names, else every change
	// after that revision, then Synced. Changes come in revision order,
	// one call at a time. After any interruption Follow starts again by
	// asking f.Resume.
	Follow(f Follower)
	// Status is the engine connection's state, for /ready and metrics.
	Status() Status
	// Close stops following and disconnects.
	Close() error
}

// Module is a knocker.cluster guest module: a Driver with the settings
// every driver shares (a Config it embeds, resolved in its Provision).
type Module interface {
	Driver
	ClusterConfig() Resolved
}

// Follower receives a bucket's changes (see Driver.Follow).
type Follower interface {
	// Resume returns the bucket and the revision after which to resume;
	// revision 0 asks for a full snapshot.
	Resume() (bucketID string, revision uint64)
	// Snapshot says a full snapshot of bucket bucketID follows.
	Snapshot(bucketID string)
	// Change is one change of the bucket.
	Change(u Update)
	// Synced says the snapshot or the resumed changes have caught up with
	// the bucket as it was when following began.
	Synced()
}

// Update is one change of a bucket's key.
type Update struct {
	Key      string
	Value    []byte
	Revision uint64
	// Deleted is a delete or purge marker (an operator's, or the engine's
	// when a key's TTL ran out): the key holds nothing any more.
	Deleted bool
}

// Status is an engine connection's state.
type Status struct {
	Connected bool
	// Server names the engine server connected to, when connected.
	Server string
	// Pending is how many changes the engine holds that this node has
	// not received yet, as the engine last said.
	Pending uint64
	// Err is why the node is not connected or not following, if it is not.
	Err error
}

var (
	// ErrDown is wrapped by Put when the engine is unreachable.
	ErrDown = errors.New("cluster engine unreachable")
	// ErrConflict is wrapped by PutIfLast when the key changed meanwhile.
	ErrConflict = errors.New("cluster: the key changed meanwhile")
)

package natscluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/caddy-knocker/knocker/cluster"
)

// Following uses a plain ephemeral consumer this package manages, not the
// client's KV watcher or ordered consumer: those wait for two missed 5s
// heartbeats after a server restart and back off up to 10s after a
// partition. Here a reconnect, a missed 1s heartbeat or a sequence gap
// ends the consumer at once; the next one resumes after the last revision
// delivered, after a bounded backoff, and the old one is deleted (the
// server also drops it after inactiveThreshold), so reconnect storms do
// not pile consumers up.
const (
	heartbeat         = time.Second
	pullExpiry        = 5 * time.Second
	inactiveThreshold = 30 * time.Second
	healthyAfter      = 5 * time.Second // a consumer that lived this long resets the backoff
)

// Follow delivers the bucket to f until Close.
func (n *NATS) Follow(f cluster.Follower) {
	d := n.d
	d.following.Store(true)
	defer close(d.followDone)
	attempt := 0
	for {
		began := time.Now()
		err := d.followOnce(f)
		select {
		case <-d.closed:
			return
		default:
		}
		if time.Since(began) > healthyAfter {
			attempt = 0
		}
		d.setErr(err)
		d.mu.Lock()
		d.bucketID = "" // look at the stream again: it may have been made anew
		d.mu.Unlock()
		if attempt == 0 || attempt%20 == 0 {
			d.log.Warn("following the cluster bucket stopped; resuming", zap.Error(err), zap.Int("attempt", attempt+1))
		}
		wait := time.NewTimer(backoff(attempt))
		attempt++
		select {
		case <-d.closed:
			wait.Stop()
			return
		case <-d.reconnected:
		case <-wait.C:
		}
		wait.Stop()
	}
}

func (d *driver) setErr(err error) {
	d.mu.Lock()
	if err != nil && d.nc != nil && d.nc.IsConnected() {
		d.err = err
	}
	d.mu.Unlock()
}

// errResubscribe ends a consumer so that a new one resumes.
var errResubscribe = errors.New("re-subscribing")

// followOnce runs one consumer until it fails or the driver closes.
func (d *driver) followOnce(f cluster.Follower) error {
	select { // a reconnect before this consumer exists needs no new one
	case <-d.reconnected:
	default:
	}
	if err := d.waitConnected(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-d.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	id, err := d.ensureBucket(ctx)
	if err != nil {
		return err
	}
	d.mu.Lock()
	js := d.js
	d.mu.Unlock()
	bucket, from := f.Resume()
	snapshot := from == 0 || bucket != id
	cfg := jetstream.ConsumerConfig{
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		InactiveThreshold: inactiveThreshold,
		FilterSubject:     d.subject + ">",
		Replicas:          1,
		DeliverPolicy:     jetstream.DeliverLastPerSubjectPolicy,
	}
	if !snapshot {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from+1
	}
	if snapshot {
		// Before the consumer exists: every knock acknowledged from here
		// on is either in the snapshot or known to the follower as made
		// during it.
		f.Snapshot(id)
	}
	cctx, ccancel := context.WithTimeout(ctx, connectTimeout)
	cons, err := js.CreateConsumer(cctx, d.stream, cfg)
	ccancel()
	if err != nil {
		return fmt.Errorf("creating the bucket's consumer: %v", err)
	}
	name := cons.CachedInfo().Name
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), time.Second)
		defer dcancel()
		js.DeleteConsumer(dctx, d.stream, name) // best effort: the server drops it when inactive anyway
	}()

	// Caught up once the changes pending when the consumer was made are
	// delivered (under constant writes, pending may never reach 0).
	initial := cons.CachedInfo().NumPending
	synced := false
	if initial == 0 {
		synced = true
		f.Synced()
	}
	d.pending.Store(initial)
	errc := make(chan error, 1)
	fail := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	// Once this consumer is given up, its handler may still run (Stop does
	// not wait for it, and deliveries may be buffered): it must deliver
	// nothing more, so that the next consumer's changes are the only ones.
	var active atomic.Bool
	active.Store(true)
	var lastSeq, delivered uint64
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if !active.Load() {
			return
		}
		md, err := m.Metadata()
		if err != nil {
			fail(err)
			return
		}
		if md.Sequence.Consumer != lastSeq+1 {
			fail(fmt.Errorf("delivery gap: consumer sequence %d after %d", md.Sequence.Consumer, lastSeq))
			return
		}
		lastSeq = md.Sequence.Consumer
		f.Change(cluster.Update{
			Key:      strings.TrimPrefix(m.Subject(), d.subject),
			Value:    m.Data(),
			Revision: md.Sequence.Stream,
			Deleted:  isMarker(m.Headers()),
		})
		d.pending.Store(md.NumPending)
		if delivered++; !synced && (md.NumPending == 0 || delivered >= initial) {
			synced = true
			f.Synced()
		}
	}, jetstream.PullHeartbeat(heartbeat), jetstream.PullExpiry(pullExpiry),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) { fail(err) }))
	if err != nil {
		return fmt.Errorf("consuming the bucket: %v", err)
	}
	defer func() {
		active.Store(false)
		cc.Stop()
		select { // let a handler in progress return (it may be waiting on the applier)
		case <-cc.Closed():
		case <-time.After(time.Second):
		}
	}()
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	case <-d.reconnected:
		return errResubscribe
	}
}

// waitConnected returns once connected, or an error once closed.
func (d *driver) waitConnected() error {
	for {
		d.mu.Lock()
		nc := d.nc
		d.mu.Unlock()
		if nc.IsConnected() {
			return nil
		}
		select {
		case <-d.closed:
			return errors.New("closed")
		case <-d.up:
		case <-time.After(maxBackoff):
		}
	}
}

// isMarker reports a delete or purge marker: an operator's, or the one
// the engine leaves when a key's TTL runs out.
func isMarker(h nats.Header) bool {
	if len(h) == 0 {
		return false
	}
	switch h.Get("KV-Operation") {
	case "DEL", "PURGE":
		return true
	}
	return h.Get(jetstream.MarkerReasonHeader) != ""
}

package natscluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/caddy-knocker/knocker/cluster"
)

// Connection tuning. The client's defaults suit long-lived services that
// may lag; a gate must notice a dead link in seconds: ping every 2s and
// give up after two unanswered pings, and retry forever with a short,
// bounded backoff.
const (
	pingInterval   = 2 * time.Second
	maxPingsOut    = 2
	connectTimeout = 2 * time.Second
	minBackoff     = 50 * time.Millisecond
	maxBackoff     = 2 * time.Second
)

// Open starts connecting; it does not wait for a server.
func (n *NATS) Open(l *zap.Logger) error {
	d := n.d
	d.log = l.Named("nats")
	opts := []nats.Option{
		nats.Name("knocker " + n.cfg.Node),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.CustomReconnectDelay(backoff),
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(maxPingsOut),
		nats.Timeout(connectTimeout),
		nats.ReconnectBufSize(-1), // a publish while disconnected fails at once: when_down decides
		nats.ConnectHandler(func(c *nats.Conn) { d.connected(c, false) }),
		nats.ReconnectHandler(func(c *nats.Conn) { d.connected(c, true) }),
		nats.DisconnectErrHandler(func(c *nats.Conn, err error) { d.disconnected(err) }),
		// Asynchronous errors (a permissions violation, a slow consumer)
		// go to Caddy's log, not to standard error.
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			d.log.Error("NATS error", zap.Error(err))
		}),
	}
	f := n.files
	switch {
	case f.creds != "":
		opts = append(opts, nats.UserCredentials(f.creds))
	case f.user != "":
		opts = append(opts, nats.UserInfo(f.user, n.password))
	case n.token != "":
		opts = append(opts, nats.Token(n.token))
	case f.nkey != "":
		o, err := nats.NkeyOptionFromSeed(f.nkey)
		if err != nil {
			return fmt.Errorf("nkey: %v", err)
		}
		opts = append(opts, o)
	}
	if n.TLS != nil {
		if f.ca != "" {
			opts = append(opts, nats.RootCAs(f.ca))
		}
		if f.cert != "" {
			opts = append(opts, nats.ClientCert(f.cert, f.key))
		}
		if f.ca == "" && f.cert == "" {
			opts = append(opts, nats.Secure())
		}
	}
	nc, err := nats.Connect(strings.Join(n.urls, ","), opts...)
	if err != nil {
		return fmt.Errorf("nats: %v", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("nats: %v", err)
	}
	d.mu.Lock()
	d.nc, d.js = nc, js
	d.stream, d.subject = "KV_"+n.Bucket, "$KV."+n.Bucket+"."
	if !nc.IsConnected() {
		d.err = errors.New("connecting") // no URL: it is shown on the public /ready
	}
	d.mu.Unlock()
	return nil
}

// backoff is the reconnect delay: doubling from 50ms to 2s, with jitter so
// that nodes do not reconnect in step.
func backoff(attempts int) time.Duration {
	d := minBackoff << min(attempts, 6)
	d = min(d, maxBackoff)
	return d/2 + rand.N(d/2+1)
}

// connected wakes Follow: waiting for a connection, or, after a
// reconnect, to replace a consumer that may have died with the old one.
func (d *driver) connected(c *nats.Conn, again bool) {
	what := "NATS connected"
	ch := d.up
	if again {
		what, ch = "NATS reconnected", d.reconnected
	}
	d.log.Info(what, zap.String("server", c.ConnectedUrlRedacted()), zap.String("server_version", c.ConnectedServerVersion()))
	for _, c := range []chan struct{}{d.up, ch} {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

func (d *driver) disconnected(err error) {
	d.mu.Lock()
	d.bucketID = "" // check it again after reconnecting: the server may be another
	if err != nil {
		d.err = fmt.Errorf("disconnected: %v", err)
	} else {
		d.err = errors.New("disconnected")
	}
	d.mu.Unlock()
	select {
	case <-d.closed:
	default:
		d.log.Warn("NATS disconnected: gates keep serving the last known grants", zap.Error(err))
	}
}

// Put publishes value under key with a per-message TTL: a plain KV put
// would drop a key's TTL, so a re-knock would never expire in the bucket.
func (n *NATS) Put(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	return n.put(ctx, key, value, ttl)
}

func (n *NATS) put(ctx context.Context, key string, value []byte, ttl time.Duration, opts ...jetstream.PublishOpt) (uint64, error) {
	d := n.d
	d.mu.Lock()
	nc, js, ready := d.nc, d.js, d.bucketID != ""
	d.mu.Unlock()
	if nc == nil || !nc.IsConnected() || !ready {
		return 0, cluster.ErrDown
	}
	ttl = max(ttl.Round(time.Second), time.Second)
	opts = append(opts, jetstream.WithMsgTTL(ttl), jetstream.WithExpectStream(d.stream))
	ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: d.subject + key, Data: value}, opts...)
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// PutIfLast is Put while key's newest revision is last.
func (n *NATS) PutIfLast(ctx context.Context, key string, value []byte, ttl time.Duration, last uint64) (uint64, error) {
	rev, err := n.put(ctx, key, value, ttl, jetstream.WithExpectLastSequencePerSubject(last))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return 0, fmt.Errorf("%w: %v", cluster.ErrConflict, err)
	}
	return rev, err
}

// Latest returns key's newest value and revision.
func (n *NATS) Latest(ctx context.Context, key string) ([]byte, uint64, error) {
	d := n.d
	d.mu.Lock()
	js, ready := d.js, d.bucketID != ""
	d.mu.Unlock()
	if !ready {
		return nil, 0, cluster.ErrDown
	}
	s, err := js.Stream(ctx, d.stream)
	if err != nil {
		return nil, 0, err
	}
	m, err := s.GetLastMsgForSubject(ctx, d.subject+key)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return nil, 0, nil
	case err != nil:
		return nil, 0, err
	case isMarker(m.Header):
		return nil, m.Sequence, nil
	}
	return m.Data, m.Sequence, nil
}

// Status reports the connection.
func (n *NATS) Status() cluster.Status {
	d := n.d
	d.mu.Lock()
	defer d.mu.Unlock()
	st := cluster.Status{Pending: d.pending.Load(), Err: d.err}
	if d.nc != nil && d.nc.IsConnected() && d.bucketID != "" {
		st.Connected, st.Server, st.Err = true, d.nc.ConnectedUrlRedacted(), nil
	}
	return st
}

// Close stops following and disconnects. It waits (a bounded time) for
// Follow to end first, so that its consumer is deleted while the
// connection is still up.
func (n *NATS) Close() error {
	d := n.d
	d.closeOnce.Do(func() {
		close(d.closed)
		if d.following.Load() {
			select {
			case <-d.followDone:
			case <-time.After(2 * connectTimeout):
			}
		}
		d.mu.Lock()
		nc := d.nc
		d.mu.Unlock()
		if nc != nil {
			nc.Close()
		}
	})
	return nil
}

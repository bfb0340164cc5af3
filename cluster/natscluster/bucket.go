package natscluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// markerTTL is how long the engine keeps the marker it leaves when a
// key's TTL runs out; the bucket must be made with one for per-message
// TTLs to be allowed at all.
const markerTTL = 15 * time.Minute

// minServer is the first nats-server with per-message TTLs (2.11).
var minServer = [3]int{2, 11, 0}

// ensureBucket checks the server and opens (or makes) the bucket. Its
// result is kept until the next disconnect.
func (d *driver) ensureBucket(ctx context.Context) (string, error) {
	d.mu.Lock()
	id, nc, js := d.bucketID, d.nc, d.js
	d.mu.Unlock()
	if id != "" {
		return id, nil
	}
	if v := nc.ConnectedServerVersion(); !atLeast(v, minServer) {
		return "", fmt.Errorf("nats-server %s is too old: cluster mode needs nats-server 2.11 or later (per-key TTLs)", v)
	}
	n := d.n
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := js.KeyValue(ctx, n.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		_, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:         n.Bucket,
			Description:    "Knocker's shared whitelist",
			History:        1,
			Replicas:       n.Replicas,
			Storage:        jetstream.FileStorage,
			LimitMarkerTTL: markerTTL,
		})
		if errors.Is(err, jetstream.ErrBucketExists) { // another node made it first
			err = nil
		} else if err == nil {
			d.log.Info("created the cluster bucket", zap.String("bucket", n.Bucket), zap.Int("replicas", n.Replicas))
		}
	}
	if err != nil {
		return "", fmt.Errorf("bucket %q: %v", n.Bucket, err)
	}
	s, err := js.Stream(ctx, d.stream)
	if err != nil {
		return "", fmt.Errorf("bucket %q: %v", n.Bucket, err)
	}
	info := s.CachedInfo()
	if !info.Config.AllowMsgTTL {
		return "", fmt.Errorf("bucket %q does not allow per-key TTLs (it was made without a limit marker TTL): delete it or name another bucket", n.Bucket)
	}
	if info.Config.Replicas != n.Replicas {
		d.log.Warn("the cluster bucket's replica count differs from the config's; the bucket's stays",
			zap.String("bucket", n.Bucket), zap.Int("bucket_replicas", info.Config.Replicas), zap.Int("replicas", n.Replicas))
	}
	// The stream's creation time tells a recreated bucket from the one a
	// node followed before: resuming by revision is only valid in the same.
	id = n.Bucket + "@" + strconv.FormatInt(info.Created.UnixNano(), 10)
	d.mu.Lock()
	d.bucketID, d.err = id, nil
	d.mu.Unlock()
	return id, nil
}

// atLeast reports whether version v (2.15.2, or 2.12.0-beta) is min or later.
func atLeast(v string, min [3]int) bool {
	v, _, _ = strings.Cut(strings.TrimPrefix(v, "v"), "-")
	parts := strings.Split(v, ".")
	for i := range 3 {
		n := 0
		if i < len(parts) {
			var err error
			if n, err = strconv.Atoi(parts[i]); err != nil {
				return false
			}
		}
		if n != min[i] {
			return n > min[i]
		}
	}
	return true
}

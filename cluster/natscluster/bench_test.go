package natscluster

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-knocker/knocker/store"
)

// BenchmarkClusterGrant is a knock's storing step through the cluster (the
// engine's acknowledgement, then the local store's fsync) against the
// store alone, one at a time and 32 at once. The engine fsyncs every record
// (sync_interval: always).
func BenchmarkClusterGrant(b *testing.B) {
	e := startEngine(b)
	n := newNode(b, "a", e.url())
	n.waitSynced()
	peer := newNode(b, "b", e.url()) // a watcher, as in a real cluster
	peer.waitSynced()
	var seq atomic.Uint32
	addr := func() netip.Prefix {
		i := seq.Add(1)
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
	}
	for _, c := range []int{1, 32} {
		b.Run(fmt.Sprintf("cluster/c=%d", c), func(b *testing.B) {
			b.SetParallelism(c)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					p := addr()
					if _, err := n.r.Grant(b.Context(), p, time.Now().Unix()+3600, store.GrantOptions{Owner: "bench"}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
		b.Run(fmt.Sprintf("store/c=%d", c), func(b *testing.B) {
			b.SetParallelism(c)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := n.st.GrantWith(addr(), time.Now().Unix()+3600, store.GrantOptions{Owner: "bench"}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkClusterGrantNoSync is BenchmarkClusterGrant with the engine's
// default sync_interval (fsync every two minutes): how much of a clustered
// knock is the engine's fsync.
func BenchmarkClusterGrantNoSync(b *testing.B) {
	syncAlways = false
	defer func() { syncAlways = true }()
	BenchmarkClusterGrant(b)
}

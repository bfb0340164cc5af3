package knocker

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-knocker/knocker/cluster"
	_ "github.com/caddy-knocker/knocker/cluster/natscluster" // knocker.cluster.nats
	"github.com/caddy-knocker/knocker/internal/knockapi"
	"github.com/caddy-knocker/knocker/store"
)

// Cluster mode (see the cluster package): with a cluster module, grants
// and revocations go through a Replicator, which publishes them and keeps
// the store in step with every other node's; gates still read the local
// store only.

// provisionCluster loads the cluster module, if one is configured. It
// connects to nothing: Start does.
func (a *App) provisionCluster(ctx caddy.Context) error {
	if a.ClusterRaw == nil {
		return nil
	}
	raw, err := ctx.LoadModule(a, "ClusterRaw")
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	mod, ok := raw.(cluster.Module)
	if !ok {
		return fmt.Errorf("cluster: module %T is not a cluster driver", raw)
	}
	var maxTTL int64
	for i := range a.keys {
		maxTTL = max(maxTTL, a.keys[i].MaxTTL)
	}
	a.clusterMaxTTL = maxTTL
	// A reload that keeps the cluster config keeps its replicator: one
	// connection, no second catch-up, one writer of the store. The key
	// holds what the replicator was made from; the secret is in it as
	// configured (a placeholder, as a rule), and never leaves the process.
	a.replKey = fmt.Sprintf("%s\x00%d\x00%s", store.ResolvePath(a.path), maxTTL, a.ClusterRaw)
	limiter := a.limiter
	v, _, err := replicators.LoadOrNew(a.replKey, func() (caddy.Destructor, error) {
		r, err := cluster.New(cluster.Options{
			Config:   mod.ClusterConfig(),
			Driver:   mod,
			Logger:   a.logger.Named("cluster"),
			MaxTTL:   maxTTL,
			OnBan:    limiter.Ban,
			Observer: clusterObserver,
		})
		return pooledReplicator{r}, err
	})
	if err != nil {
		a.replKey = ""
		return fmt.Errorf("cluster: %w", err)
	}
	a.repl = v.(pooledReplicator).Replicator
	if err := a.registerClusterMetrics(ctx); err != nil {
		return fmt.Errorf("cluster: metrics: %w", err)
	}
	return nil
}

// replicators holds the running replicators, shared by the configs of one
// whitelist and cluster config across reloads; the last config to let go
// stops it.
var replicators = caddy.NewUsagePool()

type pooledReplicator struct{ *cluster.Replicator }

func (p pooledReplicator) Destruct() error { return p.Stop() }

// releaseCluster lets go of this config's replicator (Cleanup).
func (a *App) releaseCluster() error {
	if a.replKey == "" {
		return nil
	}
	key := a.replKey
	a.replKey = ""
	_, err := replicators.Delete(key)
	return err
}

// startCluster starts replicating s; without a cluster it forgets any
// cluster the whitelist joined before (cluster.Leave).
func (a *App) startCluster(s *store.Store) error {
	if a.repl == nil {
		left, err := cluster.Leave(a.path)
		if err != nil {
			return fmt.Errorf("leaving the cluster: %v", err)
		}
		if left {
			a.logger.Info("cluster mode is off: this whitelist no longer follows the cluster; re-joining will publish its grants")
		}
		return nil
	}
	if err := a.repl.Start(s, a.path); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	a.logger.Info("cluster mode", zap.String("node", a.repl.Node()), zap.String("when_down", a.repl.WhenDown()))
	return nil
}

// storeGrant stores a grant: through the cluster when there is one.
func (a *App) storeGrant(ctx context.Context, p netip.Prefix, expires int64, opts store.GrantOptions) (store.GrantResult, error) {
	if a.repl != nil {
		// A client that hangs up does not cut a grant in two (published
		// but not stored here): the replicator's own timeout bounds it.
		return a.repl.Grant(context.WithoutCancel(ctx), p, expires, opts)
	}
	s, err := a.openStore()
	if err != nil {
		return store.GrantResult{}, err
	}
	return s.GrantWith(p, expires, opts)
}

// revoke removes every entry of p, everywhere, and says how many it removed.
func (a *App) revoke(p netip.Prefix) (int, error) {
	if a.repl != nil {
		removed, err := a.repl.Revoke(p)
		return len(removed), err
	}
	s, err := a.openStore()
	if err != nil {
		return 0, err
	}
	return s.Revoke(p)
}

// revokeOwner removes every entry of the key named owner, everywhere.
func (a *App) revokeOwner(owner string) ([]store.Entry, error) {
	if a.repl != nil {
		return a.repl.RevokeOwner(owner)
	}
	s, err := a.openStore()
	if err != nil {
		return nil, err
	}
	return s.RevokeOwner(owner)
}

// banEverywhere tells the other nodes that actor filled its failure
// window here, until it frees.
func (a *App) banEverywhere(actor netip.Addr, until int64) {
	if a.repl != nil {
		a.repl.Ban(actor, until)
	}
}

// clusterDown answers a knock the cluster could not take (when_down refuse).
func clusterDown(err error) bool { return errors.Is(err, cluster.ErrDown) }

// clusterStatus is /ready's view of the cluster.
func (a *App) clusterStatus() *knockapi.ClusterStatus {
	if a.repl == nil {
		return nil
	}
	st := a.repl.State()
	return &knockapi.ClusterStatus{
		Node:        a.repl.Node(),
		Connected:   st.Connected,
		Synced:      st.Synced,
		Revision:    st.Revision,
		Lag:         st.Pending,
		Unpublished: st.Unpublished,
	}
}

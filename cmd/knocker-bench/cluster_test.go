//go:build linux

package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// The nats-server configuration the cluster part writes must mean what it
// says to the nats-server go.mod pins: loopback only, JetStream on, every
// write fsynced, the store where it was asked.
func TestNATSConfig(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "a dir", "jetstream")
	cf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(cf, []byte(natsConfig(18408, store)), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(cf)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Host != "127.0.0.1" || opts.Port != 18408 || !opts.JetStream || !opts.SyncAlways || opts.StoreDir != store ||
		opts.HTTPPort != 0 || opts.Cluster.Port != 0 || opts.LeafNode.Port != 0 || opts.Websocket.Port != 0 {
		t.Fatalf("parsed: host %q port %d jetstream %v sync always %v store %q; monitor %d cluster %d leaf %d websocket %d",
			opts.Host, opts.Port, opts.JetStream, opts.SyncAlways, opts.StoreDir, opts.HTTPPort, opts.Cluster.Port, opts.LeafNode.Port, opts.Websocket.Port)
	}
}

func TestParseReady(t *testing.T) {
	cs, err := parseReady(`{"status":"ok","cluster":{"node":"a","connected":true,"synced":true,"revision":100000,"lag":0,"unpublished":3}}`)
	if err != nil || cs != (clusterState{Node: "a", Connected: true, Synced: true, Revision: 100000, Unpublished: 3}) {
		t.Fatalf("%+v, %v", cs, err)
	}
	if _, err := parseReady(`{"status":"ok"}`); err == nil {
		t.Fatal("an answer without cluster accepted")
	}
	if _, err := parseReady(`<html>`); err == nil {
		t.Fatal("not JSON accepted")
	}
}

func TestPct(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 1000; i++ {
		d = append(d, time.Duration(i))
	}
	for q, want := range map[float64]time.Duration{50: 500, 90: 900, 99: 990, 100: 1000, 0: 1} {
		if got := pct(d, q); got != want {
			t.Errorf("pct(%v) = %d, want %d", q, got, want)
		}
	}
	if pct(nil, 99) != 0 || pct(d[:1], 99) != 1 {
		t.Fatal("short inputs")
	}
}

// The cluster part's addresses stay apart from the generated grants and
// from each other.
func TestClusterAddresses(t *testing.T) {
	if got := netAddr(propNet, 1); got != "30.0.0.1" {
		t.Fatalf("netAddr = %s", got)
	}
	if got := netAddr(catchupNet, 1<<24-1); got != "31.255.255.255" {
		t.Fatalf("netAddr = %s", got)
	}
	for _, n := range []int{propNet, catchupNet, knockNet0, knockNet0 + 20} {
		a := netip.MustParseAddr(netAddr(n, 12345))
		for _, i := range []int{0, 4, 1_000_000 - 6} {
			if grantPrefix(i).Contains(a) {
				t.Fatalf("generated grant %s covers %s", grantPrefix(i), a)
			}
		}
	}
	if portSet(18400, 0) != (ports{18400, 18401, 18402, 18403, 18409}) || portSet(18400, 3).admin != 18439 || natsPort(18400) != 18408 {
		t.Fatal("port layout")
	}
}

func TestParseHistogram(t *testing.T) {
	text := `# HELP caddy_knocker_cluster_propagation_seconds Time ...
# TYPE caddy_knocker_cluster_propagation_seconds histogram
caddy_knocker_cluster_propagation_seconds_bucket{le="0.001"} 3
caddy_knocker_cluster_propagation_seconds_bucket{le="0.005"} 9
caddy_knocker_cluster_propagation_seconds_bucket{le="+Inf"} 10
caddy_knocker_cluster_propagation_seconds_sum 0.2
caddy_knocker_store_fsync_duration_seconds_bucket{le="0.005"} 7
`
	h := parseHistogram(text, metricPropagation)
	if len(h) != 3 || h["0.005"] != 9 || h["+Inf"] != 10 || within(h, "0.005") != 0.9 {
		t.Fatalf("%v", h)
	}
	d := histDiff(h, map[string]int64{"0.001": 1, "0.005": 1, "+Inf": 2})
	if d["0.001"] != 2 || d["+Inf"] != 8 {
		t.Fatalf("diff %v", d)
	}
	if f := parseHistogram(text, metricFsync); len(f) != 1 || f["0.005"] != 7 {
		t.Fatalf("%v", f)
	}
}

// The cluster section renders from a result without a formatting error.
func TestClusterMarkdown(t *testing.T) {
	o := &options{repo: "../..", portBase: 18400, duration: 10 * time.Second, rounds: 3, starts: 3, knockConns: []int{1, 32},
		grantsOther: 100_000, grantsSmall: 100, grantsBig: 1_000_000, catchup: 10_000, propKnocks: 3}
	b := &bench{o: o, res: results{Rounds: map[string][]*wrkResult{}, ErrorLogs: map[string]int{}}}
	for _, id := range []string{"b-plain", "b-cluster"} {
		b.res.Rounds[id] = []*wrkResult{{Requests: 1000, Seconds: 1, RPS: 1000, P50: time.Millisecond, CaddyCPU: 0.5, WrkCPU: 0.2}}
	}
	hist := map[string]int64{"0.001": 2, "0.005": 3, "0.05": 3, "+Inf": 3}
	b.res.Cluster = &clusterResult{NATSVersion: "2.15.2", NATSConfig: natsConfig(18408, "<temp dir>/jetstream"), Block: "cluster nats {\n\t\t}",
		Grants: 100_001, Join: time.Minute, JoinRevision: 100_001,
		Knocks: []clusterKnock{{false, 1, &wrkResult{Requests: 10, RPS: 10}}, {true, 1, &wrkResult{Requests: 5, RPS: 5}}},
		Prop:   []time.Duration{time.Millisecond, 2 * time.Millisecond, 60 * time.Millisecond}, PropKnock: []time.Duration{1, 2, 3},
		Applied: hist, Fsyncs: hist, CatchGrants: 10_000, CatchMake: 5 * time.Second, CFirstEntries: 100_000, CEntries: 110_001,
		CStart: startTimes{Health: 50 * time.Millisecond, Ready: time.Second}, CAll: time.Millisecond}
	var out strings.Builder
	b.clusterMarkdown(func(format string, args ...any) { fmt.Fprintf(&out, format+"\n", args...) })
	md := out.String()
	if strings.Contains(md, "%!") || !strings.Contains(md, "## Cluster mode") || !strings.Contains(md, "| 110001 (+10001) |") {
		t.Fatalf("%s", md)
	}
	if full := b.markdown(b.goals()); strings.Contains(full, "%!") || !strings.Contains(full, "## Cluster mode") || !strings.Contains(full, "cluster propagation") {
		t.Fatal("BENCHMARKS.md: the cluster section or goals missing, or a formatting error")
	}
	g := b.clusterGoals()
	if len(g) != 3 || !g[0].Met || g[1].Met || !g[2].Met {
		t.Fatalf("goals %+v", g)
	}
	b.res.Cluster = nil
	if b.clusterGoals() != nil {
		t.Fatal("cluster goals without a cluster run")
	}
}

//go:build linux

package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// The cluster part's goals, summary and BENCHMARKS.md section.

const propGoal = 50 * time.Millisecond

// clusterGoals are the cluster part's goals; none when it did not run.
func (b *bench) clusterGoals() []goal {
	cr := b.res.Cluster
	if cr == nil {
		return nil
	}
	r := b.ratio("b-cluster", "b-plain")
	p99 := pct(cr.Prop, 99)
	return []goal{
		{"(b) with cluster mode on / off, requests/s: gates read the local store only",
			fmt.Sprintf("%.3f (ratio of the medians %.3f; by Caddy CPU per request %.3f)", r,
				safeDiv(b.median("b-cluster").RPS, b.median("b-plain").RPS), safeDiv(b.usPerReq("b-plain"), b.usPerReq("b-cluster"))),
			"≥ 0.97", r >= 0.97},
		{fmt.Sprintf("cluster propagation: from a knock's 200 on node A to node B's gate admitting the client, p99 of %s knocks", fmtCount(len(cr.Prop))),
			fmt.Sprintf("%s (p50 %s, max %s)", fmtDur(p99), fmtDur(pct(cr.Prop, 50)), fmtDur(pct(cr.Prop, 100))),
			"≤ 50 ms", len(cr.Prop) > 0 && p99 <= propGoal},
		{fmt.Sprintf("cluster catch-up: a node stopped while %s grants were made admits them all, from its first /ready 200", fmtCount(cr.CatchGrants)),
			fmt.Sprintf("%s (/ready %.3f s after its start)", fmtDur(cr.CAll), cr.CStart.Ready.Seconds()),
			"≤ 1 s", cr.CAll <= time.Second},
	}
}

func (b *bench) clusterKnock(on bool, conns int) *wrkResult {
	for _, k := range b.res.Cluster.Knocks {
		if k.Cluster == on && k.Conns == conns {
			return k.Res
		}
	}
	return &wrkResult{}
}

// clusterSummary prints the cluster part's figures with the others.
func (b *bench) clusterSummary() {
	cr := b.res.Cluster
	if cr == nil {
		return
	}
	for _, c := range []struct{ id, title string }{{"b-plain", "cluster off (plain Caddy)"}, {"b-cluster", "cluster on (node A)"}} {
		m := b.median(c.id)
		fmt.Printf("(b) %-26s %9.0f req/s  p50 %-9s p99 %-9s non-2xx %-8d socket errors %-4d Caddy %.1f µs CPU/req\n",
			c.title, m.RPS, fmtDur(m.P50), fmtDur(m.P99), m.Non2xx, m.socketErrors(), b.usPerReq(c.id))
	}
	for _, k := range cr.Knocks {
		fmt.Printf("knocks, cluster %-3s concurrency %2d: %7.0f knocks/s  p50 %-9s p99 %-9s non-2xx %d\n",
			map[bool]string{true: "on,", false: "off,"}[k.Cluster], k.Conns, k.Res.RPS, fmtDur(k.Res.P50), fmtDur(k.Res.P99), k.Res.Non2xx)
	}
	fmt.Printf("cluster: b_cluster/b %.3f; propagation A → B (%d knocks) p50 %s, p99 %s, max %s; catch-up of %d grants: /ready %.3f s after the start, all admitted %s after /ready; node A's join with %d grants %.1f s\n",
		b.ratio("b-cluster", "b-plain"), len(cr.Prop), fmtDur(pct(cr.Prop, 50)), fmtDur(pct(cr.Prop, 99)), fmtDur(pct(cr.Prop, 100)),
		cr.CatchGrants, cr.CStart.Ready.Seconds(), fmtDur(cr.CAll), cr.Grants, cr.Join.Seconds())
}

// clusterMarkdown writes the cluster section of BENCHMARKS.md.
func (b *bench) clusterMarkdown(p func(format string, args ...any)) {
	cr, o := b.res.Cluster, b.o
	if cr == nil {
		return
	}
	p("## Cluster mode")
	p("")
	p("One nats-server %s (built by `scripts/bench.sh` from the version `go.mod` pins, `-trimpath`) on 127.0.0.1:%d: JetStream with file storage and `sync_interval: always`, so the engine's acknowledgement of a record means it is on disk. Nodes A, B and C are Caddys with the configuration above plus a `cluster nats` block (one bucket, the same secret, their own ports); the plain Caddy has the configuration above. All four have the key's `max_ttl %s` instead of 1h: above the generated grants' 7-8 days, which a node receiving them would cap at max_ttl (logging a warning). The plain Caddy and node A start with the store of (b): %s generated grants and the client's. Node B starts empty; node A, joining the bucket, publishes its grants (16 at a time, as a store joining a bucket does) and node B receives them: that took **%.1f s** from node A's /ready (bucket revision %d), before any measurement. Gates read only the local in-memory store; a knock's 200 waits for the engine's acknowledgement and the local store's fsync.",
		cr.NATSVersion, natsPort(o.portBase), clusterMaxTTL, fmtCount(o.grantsOther), cr.Join.Seconds(), cr.JoinRevision)
	p("")
	p("| Goal | Measured | Target | |")
	p("|---|---|---|---|")
	for _, g := range b.clusterGoals() {
		p("| %s | %s | %s | %s |", g.What, g.Measured, g.Target, metStr(g.Met))
	}
	p("")

	p("### Gate: case (b) with the cluster off and on")
	p("")
	p("| Case | Requests | Requests/s | p50 | p75 | p90 | p99 | Non-2xx | Socket errors | Caddy CPU/req | Caddy CPU | wrk CPU |")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, c := range []struct{ id, title string }{{"b-plain", "(b), cluster off: the plain Caddy"}, {"b-cluster", "(b), cluster on: node A (node B follows the bucket)"}} {
		x := b.median(c.id)
		p("| %s | %d | **%.0f** | %s | %s | %s | **%s** | %d | %d | %.1f µs | %.0f%% | %.0f%% |",
			c.title, x.Requests, x.RPS, fmtDur(x.P50), fmtDur(x.P75), fmtDur(x.P90), fmtDur(x.P99), x.Non2xx, x.socketErrors(), b.usPerReq(c.id), 100*x.CaddyCPU, 100*x.WrkCPU)
	}
	p("")
	p("- **b_cluster/b = %.3f** (goal ≥ 0.97: %s): the median over %d rounds of the ratio within a round; the two run back to back in alternating order, with the wrk settings of (a)-(d). Ratio of the medians %.3f; by Caddy CPU per request %.3f.",
		b.ratio("b-cluster", "b-plain"), metStr(b.ratio("b-cluster", "b-plain") >= 0.97), o.rounds,
		safeDiv(b.median("b-cluster").RPS, b.median("b-plain").RPS), safeDiv(b.usPerReq("b-plain"), b.usPerReq("b-cluster")))
	p("")
	p("<details><summary>Every round</summary>")
	p("")
	p("| Case | Round | Requests/s | p50 | p99 | Non-2xx | Caddy CPU/req | Caddy CPU | wrk CPU | raw output |")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, id := range []string{"b-plain", "b-cluster"} {
		for i, x := range b.res.Rounds[id] {
			p("| %s | %d | %.0f | %s | %s | %d | %.1f µs | %.0f%% | %.0f%% | `%s` |", id, i+1, x.RPS, fmtDur(x.P50), fmtDur(x.P99), x.Non2xx, x.caddyUsPerReq(), 100*x.CaddyCPU/x.Seconds, 100*x.WrkCPU/x.Seconds, filepath.Base(x.RawPath))
		}
	}
	p("")
	p("Round r runs b-plain first when r is odd, b-cluster first when it is even.")
	p("")
	p("</details>")
	p("")

	p("### Knocks with the cluster off and on")
	p("")
	p("As the durable knocks above (wrk, the same Lua script, every knock a new address, every answer 200), on the plain Caddy and on node A, each run on addresses of its own /8; both Caddys keep running between runs. With the cluster on, node B applies every knock as well; its CPU time and nats-server's are not in `Caddy CPU/knock`.")
	p("")
	p("| Cluster | Concurrency | Knocks | Knocks/s | p50 | p90 | p99 | Non-2xx | Socket errors | Caddy CPU/knock |")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, k := range cr.Knocks {
		x := k.Res
		p("| %s | %d | %d | **%.0f** | %s | %s | **%s** | %d | %d | %.0f µs |", map[bool]string{true: "on (node A)", false: "off"}[k.Cluster], k.Conns, x.Requests, x.RPS, fmtDur(x.P50), fmtDur(x.P90), fmtDur(x.P99), x.Non2xx, x.socketErrors(), x.caddyUsPerReq())
	}
	p("")
	var rs []string
	for _, c := range o.knockConns {
		on, off := b.clusterKnock(true, c), b.clusterKnock(false, c)
		rs = append(rs, fmt.Sprintf("concurrency %d: %.2f (p50 %s vs. %s)", c, safeDiv(on.RPS, off.RPS), fmtDur(on.P50), fmtDur(off.P50)))
	}
	p("- Knocks/s with the cluster on / off: %s.", strings.Join(rs, "; "))
	p("")

	p("### Propagation and catch-up")
	p("")
	p("Propagation: %s knocks on node A, one at a time, each for a new address; for each, node B's gate first denies the client (checked), then, from the knock's 200, is polled (one request after the other over a kept-alive connection, %s a poll on average) until it admits the client.", fmtCount(len(cr.Prop)), fmtDur(cr.PollRTT))
	p("")
	p("| Knocks | Propagation p50 | p90 | **p99** | max | The knock on A: p50 | p99 |")
	p("|---:|---:|---:|---:|---:|---:|---:|")
	p("| %d | %s | %s | **%s** | %s | %s | %s |", len(cr.Prop), fmtDur(pct(cr.Prop, 50)), fmtDur(pct(cr.Prop, 90)), fmtDur(pct(cr.Prop, 99)), fmtDur(pct(cr.Prop, 100)), fmtDur(pct(cr.PropKnock, 50)), fmtDur(pct(cr.PropKnock, 99)))
	p("")
	p("Node B's own figures over the same knocks (the difference of its metrics before and after): `caddy_knocker_cluster_propagation_seconds`, from a record's making on node A (before it is published) to node B's applier decoding it, before B's store commits it (%d records): %.1f%% within 1 ms, %.1f%% within 5 ms, %.1f%% within 50 ms; `caddy_knocker_store_fsync_duration_seconds`, B's store's fsyncs, each before the grants they commit are visible to its gates (%d fsyncs): %.1f%% within 1 ms, %.1f%% within 5 ms, %.1f%% within 50 ms. Each knock's figures, in order: `cluster-propagation.csv` in the raw outputs.",
		cr.Applied["+Inf"], 100*within(cr.Applied, "0.001"), 100*within(cr.Applied, "0.005"), 100*within(cr.Applied, "0.05"),
		cr.Fsyncs["+Inf"], 100*within(cr.Fsyncs, "0.001"), 100*within(cr.Fsyncs, "0.005"), 100*within(cr.Fsyncs, "0.05"))
	p("")
	p("Catch-up: node C joins the bucket with an empty store (/ready %.3f s after its start; it caught up at revision %d with %d entries) and stops (SIGTERM). Then %s grants are made through node A (knocks, %d at a time: %s, %.0f knocks/s) and one more, the last record. Node C starts again on its whitelist. A new process follows the bucket from a snapshot of every live key (resuming after a known revision is for reconnects within a process) and reconciles its store with it: it caught up at revision %d with %d entries, %d more than when it stopped. From its first /ready 200 its gate is polled for the last grant; records are applied in revision order, so once that one is admitted every earlier one is; then each of the %s grants is checked on C's gate (%d not admitted at their first check; the check took %s).",
		cr.CFirst.Ready.Seconds(), cr.CFirstRev, cr.CFirstEntries, fmtCount(cr.CatchGrants), catchupWorkers, cr.CatchMake.Round(time.Millisecond), float64(cr.CatchGrants)/cr.CatchMake.Seconds(),
		cr.CRev, cr.CEntries, cr.CEntries-cr.CFirstEntries, fmtCount(cr.CatchGrants), cr.CLate, cr.CVerify.Round(time.Millisecond))
	p("")
	p("| Grants made while stopped | Entries after the catch-up | Start to /health | Start to /ready | **/ready to all admitted** |")
	p("|---:|---:|---:|---:|---:|")
	p("| %s | %d (+%d) | %.3f s | %.3f s | **%s** |", fmtCount(cr.CatchGrants), cr.CEntries, cr.CEntries-cr.CFirstEntries, cr.CStart.Health.Seconds(), cr.CStart.Ready.Seconds(), fmtDur(cr.CAll))
	p("")
	p("/ready answers 200 on a cluster node only once it is connected and caught up with the bucket (`when_down refuse`), so the catch-up itself is within start to /ready.")
	p("")
	p("<details><summary>nats-server configuration and node A's cluster block</summary>")
	p("")
	p("```")
	p("%s", strings.TrimRight(cr.NATSConfig, "\n"))
	p("```")
	p("")
	p("```caddyfile")
	p("\t\t%s", cr.Block)
	p("```")
	p("")
	p("</details>")
	p("")
}

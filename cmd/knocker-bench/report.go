//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

type goal struct {
	What, Measured, Target string
	Met                    bool
}

func metStr(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

type startSummary struct {
	Health, Ready, Stop time.Duration
	RSS, HWM, Heap      int64
}

// startMedian returns the medians of the starts with one store size.
func (b *bench) startMedian(n int) startSummary {
	var he, re, st []time.Duration
	var r, hw, hp []float64
	for _, s := range b.res.Starts {
		if s.Grants == n {
			he = append(he, s.Startup.Health)
			re = append(re, s.Startup.Ready)
			st = append(st, s.Stop)
			r = append(r, float64(s.RSS))
			hw = append(hw, float64(s.HWM))
			hp = append(hp, float64(s.HeapInGC))
		}
	}
	return startSummary{medianD(he), medianD(re), medianD(st), int64(medianF(r)), int64(medianF(hw)), int64(medianF(hp))}
}

func (b *bench) knock(grants, conns int) *wrkResult {
	for _, k := range b.res.Knocks {
		if k.Grants == grants && k.Conns == conns {
			return k.Res
		}
	}
	return &wrkResult{}
}

func (b *bench) goals() []goal {
	o := b.o
	ra, rb, rc, rd := b.median("a").RPS, b.median("b").RPS, b.median("c").RPS, b.median("d").RPS
	ba, bd, ca := b.ratio("b", "a"), b.ratio("b", "d"), b.ratio("c", "a")
	// Only the goals of the parts that ran (-phases): a part not run
	// would read as missed, or as met with zeros.
	var g []goal
	if o.phase("request") {
		g = append(g, b.requestGoals(ra, rb, rc, rd, ba, bd, ca)...)
	}
	if o.phase("knock") {
		g = append(g, b.knockGoals()...)
	}
	if o.phase("startup") {
		g = append(g, b.startupGoals()...)
	}
	return append(g, b.clusterGoals()...)
}

func (b *bench) requestGoals(ra, rb, rc, rd, ba, bd, ca float64) []goal {
	return []goal{
		{"(b)/(a) requests/s: the gate costs almost nothing", fmt.Sprintf("%.3f (ratio of the medians %.3f; by Caddy CPU per request %.3f)", ba, safeDiv(rb, ra), safeDiv(b.usPerReq("a"), b.usPerReq("b"))), "≥ 0.97", ba >= 0.97},
		{"(c)/(a) requests/s: denying a scanner costs no more than serving the page", fmt.Sprintf("%.3f (ratio of the medians %.3f; by Caddy CPU per request %.3f)", ca, safeDiv(rc, ra), safeDiv(b.usPerReq("a"), b.usPerReq("c"))), "≥ 0.9", ca >= 0.9},
		{"(b)/(d) requests/s: in-process vs. forward_auth", fmt.Sprintf("%.2f (ratio of the medians %.2f; by Caddy CPU per request %.2f)", bd, safeDiv(rb, rd), safeDiv(b.usPerReq("d"), b.usPerReq("b"))), "≥ 2.5", bd >= 2.5},
	}
}

func (b *bench) knockGoals() []goal {
	o := b.o
	var g []goal
	for _, c := range o.knockConns {
		small, big := b.knock(o.grantsSmall, c).RPS, b.knock(o.grantsOther, c).RPS
		slow := safeDiv(small, big)
		g = append(g, goal{fmt.Sprintf("durable knocks, concurrency %d: slowdown with %s vs. %s grants", c, fmtCount(o.grantsOther), fmtCount(o.grantsSmall)),
			fmt.Sprintf("%.2f× (%.0f vs. %.0f knocks/s)", slow, big, small), "≤ 1.5×", big > 0 && slow <= 1.5})
	}
	return g
}

func (b *bench) startupGoals() []goal {
	o := b.o
	big, zero := b.startMedian(o.grantsBig), b.startMedian(0)
	per := float64(big.RSS-zero.RSS) / float64(o.grantsBig)
	su := max(big.Health, big.Ready)
	return []goal{
		{fmt.Sprintf("resident memory per grant at %s grants, (RSS − RSS with 0 grants) / %s", fmtCount(o.grantsBig), fmtCount(o.grantsBig)),
			fmt.Sprintf("%.0f bytes (Go heap in use after GC: %.0f bytes)", per, float64(big.Heap-zero.Heap)/float64(o.grantsBig)), "≤ 200 bytes", per <= 200},
		{fmt.Sprintf("start-up with %s grants: process start to the first 200 on /ready (grants loaded; /health: %.3f s)", fmtCount(o.grantsBig), big.Health.Seconds()),
			fmt.Sprintf("%.3f s", su.Seconds()), "≤ 1 s", su <= time.Second},
	}
}

func (b *bench) report() error {
	goals := b.goals()
	fmt.Println()
	fmt.Println("==== results ====")
	for _, c := range cases {
		m := b.median(c.ID)
		fmt.Printf("(%s) %-26s %9.0f req/s  p50 %-9s p99 %-9s non-2xx %-8d socket errors %-4d Caddy %.1f µs CPU/req\n",
			c.ID, c.Title, m.RPS, fmtDur(m.P50), fmtDur(m.P99), m.Non2xx, m.socketErrors(), b.usPerReq(c.ID))
	}
	for _, k := range b.res.Knocks {
		fmt.Printf("durable knocks, %7d grants, concurrency %2d: %7.0f knocks/s  p50 %-9s p99 %-9s non-2xx %d\n",
			k.Grants, k.Conns, k.Res.RPS, fmtDur(k.Res.P50), fmtDur(k.Res.P99), k.Res.Non2xx)
	}
	for _, n := range []int{0, b.o.grantsOther, b.o.grantsBig} {
		x := b.startMedian(n)
		fmt.Printf("start-up with %7d grants: /health %.3f s, /ready %.3f s, VmRSS %.1f MiB, Go heap after GC %.1f MiB\n", n, x.Health.Seconds(), x.Ready.Seconds(), mib(x.RSS), mib(x.Heap))
	}
	fmt.Printf("reload with %d grants: median %s\n", b.o.grantsBig+1, fmtDur(medianD(b.res.Reloads)))
	b.clusterSummary()
	fmt.Println("goals:")
	for _, g := range goals {
		fmt.Printf("  %-8s %s: %s (goal %s)\n", strings.Trim(metStr(g.Met), "*"), g.What, g.Measured, g.Target)
	}
	for _, pr := range b.res.Profiles {
		fmt.Printf("CPU profile of case (%s): %s\n", pr.Case, pr.TopPath)
	}

	if !b.o.writeDoc {
		fmt.Printf("\nraw outputs: %s (BENCHMARKS.md not written: -write=false)\n", b.out)
		return nil
	}
	svgPath := filepath.Join(b.o.repo, "BENCHMARKS.svg")
	if err := os.WriteFile(svgPath, []byte(b.chartSVG()), 0o644); err != nil {
		return err
	}
	mdPath := filepath.Join(b.o.repo, "BENCHMARKS.md")
	if err := os.WriteFile(mdPath, []byte(b.markdown(goals)), 0o644); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s and %s\nraw wrk outputs, Caddy logs and profiles: %s\n", mdPath, svgPath, b.out)
	return nil
}

func (b *bench) markdown(goals []goal) string {
	o, m, r := b.o, b.m, &b.res
	var s strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&s, format+"\n", args...) }

	p("# Benchmarks")
	p("")
	p("Generated by `scripts/bench.sh` (`cmd/knocker-bench`) on %s; do not edit by hand, run it again.", r.Finished.UTC().Format("2006-01-02 15:04 UTC"))
	p("Every figure below comes from that one run; the chart is drawn by the program from the same numbers.")
	p("")
	if o.duration < 10*time.Second || o.rounds < 3 {
		p("> **Short run** (%s per case, %d round(s)): a validation of the tooling, not a measurement. Run `make bench` on a quiet machine for figures.", o.duration, o.rounds)
		p("")
	}
	p("![requests/s and latency of (a)-(d), durable knocks/s vs. grants](BENCHMARKS.svg)")
	p("")

	p("## Goals")
	p("")
	p("| Goal | Measured | Target | |")
	p("|---|---|---|---|")
	for _, g := range goals {
		p("| %s | %s | %s | %s |", g.What, g.Measured, g.Target, metStr(g.Met))
	}
	p("")

	p("## Machine")
	p("")
	p("| | |")
	p("|---|---|")
	vm := ""
	if m.Hypervisor {
		vm = " (virtual machine)"
	}
	p("| CPU | %s%s |", m.CPUModel, vm)
	p("| Cores (logical) | %d |", m.Cores)
	p("| Memory | %.1f GiB |", float64(m.MemTotal)/(1<<30))
	p("| OS, kernel | %s, Linux %s |", m.OS, m.Kernel)
	p("| Go | %s |", m.GoVersion)
	p("| Caddy | %s (`cmd/caddy` of this repository, built with `-trimpath`) |", m.Caddy)
	p("| Load generator | %s |", m.Wrk)
	p("| File system of the whitelists (temp dir) | %s |", m.TmpFS)
	p("| Load average at start / end | %s / %s |", m.LoadStart, m.LoadEnd)
	p("| Duration of the whole run | %s |", r.Finished.Sub(r.Started).Round(time.Second))
	p("")

	p("## Command and settings")
	p("")
	cmd := o.command
	if cmd == "" {
		cmd = "go run ./cmd/knocker-bench " + strings.Join(os.Args[1:], " ")
	}
	p("```sh")
	p("%s", cmd)
	p("```")
	p("")
	p("- wrk `-t%d -c%d -d%s --timeout %s --latency`, the same for (a)-(d); each measured run follows a %s warm-up run with the same settings (discarded).", o.threads, o.conns, o.duration, o.wrkTimeout, o.warmup)
	p("- (a)-(d) run in %d interleaved rounds (the order rotates each round, so drift and order effects spread evenly); the tables give the median round per metric, and `Caddy CPU/req` is Caddy's user+system CPU time (from `/proc/<pid>/stat`) divided by the requests of the run.", o.rounds)
	p("- wrk and Caddy share the machine's %d cores. wrk needs far less CPU per request than Caddy (compare the CPU columns), so with `-t%d` it can drive Caddy without taking a whole core, and Caddy keeps the rest; %d connections keep Caddy busy without queueing so deep that p99 measures only the queue (more connections raise Caddy's CPU per request, most of all for forward_auth's upstream pool). Effect on the ratios: when wrk nears 100%% of a core the client limits every case alike and the ratios are compressed towards 1 (flattering b/a, understating b/d); when Caddy and wrk together use well under %d00%%, the machine was not saturated by them (other load, or the loopback round trip bounds each connection) and requests/s partly measures latency. `Caddy CPU/req` (Caddy's CPU time over its requests) depends on neither and is the figure to compare on a noisy machine.", m.Cores, o.threads, o.conns, m.Cores)
	if a := b.median("a"); a.RPS > 0 {
		verdict := "Caddy had most of the machine"
		switch {
		case a.WrkCPU >= 0.9*float64(o.threads):
			verdict = "**wrk was near its limit: the request-path ratios are compressed towards 1**"
		case a.CaddyCPU+a.WrkCPU < 0.8*float64(m.Cores):
			verdict = "the two did not saturate the machine"
		}
		p("- In this run, during (a) Caddy used %.0f%% and wrk %.0f%% of one core (of %d00%%): %s.", 100*a.CaddyCPU, 100*a.WrkCPU, m.Cores, verdict)
	}
	p("- Client addresses come through `X-Forwarded-For` (wrk `-H`) from the loopback peer, which the servers trust (`trusted_proxies static 127.0.0.1/32 ::1/128`, `trusted_proxies_strict`). Whitelisted client: `%s`; client without grant: `%s`.", clientAllowed, clientDenied)
	p("- The store of (b)-(d) holds %s other grants (%s) and the client's, written to the whitelist file (the Python Knocker's format) before Caddy starts.", fmtCount(o.grantsOther), grantMix)
	p("- (d) is the Python Knocker's architecture at its best: Go instead of Python, `/verify` served by the same Caddy on another loopback port, over forward_auth's kept-alive upstream connections. The Python Knocker also paid a container network hop and a Python service, so the real gain over it is larger than b/d.")
	p("")
	p("<details><summary>Caddyfile of the run (ports, admin API and whitelist file chosen by the benchmark)</summary>")
	p("")
	p("```caddyfile")
	s.WriteString(r.MainCaddy)
	p("```")
	p("")
	p("</details>")
	p("")

	p("## Request path: (a)-(d)")
	p("")
	p("| Case | | Requests | Requests/s | p50 | p75 | p90 | p99 | Non-2xx | Socket errors | Caddy CPU/req | Caddy CPU | wrk CPU |")
	p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, c := range cases {
		x := b.median(c.ID)
		p("| (%s) | %s | %d | **%.0f** | %s | %s | %s | **%s** | %d | %d | %.1f µs | %.0f%% | %.0f%% |",
			c.ID, c.Title, x.Requests, x.RPS, fmtDur(x.P50), fmtDur(x.P75), fmtDur(x.P90), fmtDur(x.P99), x.Non2xx, x.socketErrors(), b.usPerReq(c.ID), 100*x.CaddyCPU, 100*x.WrkCPU)
	}
	p("")
	ra, rb, rc, rd := b.median("a").RPS, b.median("b").RPS, b.median("c").RPS, b.median("d").RPS
	p("- **b/a = %.3f** (goal ≥ 0.97: %s), **b/d = %.2f** (goal ≥ 2.5: %s), **c/a = %.3f** (goal ≥ 0.9: %s): each the median over the rounds of the ratio within a round (the cases of a round run back to back, so a busy stretch of a shared machine lowers both sides of a ratio). Ratios of the medians in the table: b/a = %.3f, b/d = %.2f, c/a = %.3f.",
		b.ratio("b", "a"), metStr(b.ratio("b", "a") >= 0.97), b.ratio("b", "d"), metStr(b.ratio("b", "d") >= 2.5), b.ratio("c", "a"), metStr(b.ratio("c", "a") >= 0.9), safeDiv(rb, ra), safeDiv(rb, rd), safeDiv(rc, ra))
	p("- By Caddy CPU per request: b/a = %.3f, c/a = %.3f, d/b = %.2f (the same ratios, measured as cost instead of throughput).", safeDiv(b.usPerReq("a"), b.usPerReq("b")), safeDiv(b.usPerReq("a"), b.usPerReq("c")), safeDiv(b.usPerReq("d"), b.usPerReq("b")))
	p("- (c) is the deny path: all its answers are 401 (checked before each run, and wrk's `Non-2xx` count equals its request count); they are the expected answers, not errors. The site has no `handle_errors`, so the gate writes the status itself, as Caddy would; with `handle_errors` a denial is a Caddy error and costs what Caddy's error handling costs (the micro-benchmark `BenchmarkGateDeny` shows both).")
	p("- Requests: the sum over the rounds; the other columns: medians over rounds (CPU as a share of one core).")
	p("")
	p("<details><summary>Every round</summary>")
	p("")
	p("| Case | Round | Requests/s | p50 | p99 | Non-2xx | Caddy CPU/req | Caddy CPU | wrk CPU | raw output |")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, c := range cases {
		for i, x := range r.Rounds[c.ID] {
			p("| (%s) | %d | %.0f | %s | %s | %d | %.1f µs | %.0f%% | %.0f%% | `%s` |", c.ID, i+1, x.RPS, fmtDur(x.P50), fmtDur(x.P99), x.Non2xx, x.caddyUsPerReq(), 100*x.CaddyCPU/x.Seconds, 100*x.WrkCPU/x.Seconds, filepath.Base(x.RawPath))
		}
	}
	p("")
	p("Order of the cases in round r: a, b, c, d rotated left by r−1 (round 2: b, c, d, a).")
	p("")
	p("</details>")
	p("")

	p("## Durable knocks")
	p("")
	p("`POST /knock` with an admin key and no body, so each knock whitelists its own client address; wrk's Lua script gives every request a distinct `X-Forwarded-For` in 10.0.0.0/8, so each knock adds a grant, appended to the journal and fsynced before its 200. Rate limits are off (`rate_limit { success 0 failure 0 }`) and `max_entries` is above every store size. Each case runs on a fresh Caddy with the stated number of grants; the warm-up re-knocks a few addresses only (extending grants), so it does not grow the store. Every answer must be 200 (any other status fails the run).")
	p("")
	p("| Grants stored | Concurrency | Knocks | Knocks/s | p50 | p90 | p99 | Non-2xx | Socket errors | Caddy CPU/knock |")
	p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, k := range r.Knocks {
		x := k.Res
		p("| %s | %d | %d | **%.0f** | %s | %s | %s | %d | %d | %.0f µs |", fmtCount(k.Grants), k.Conns, x.Requests, x.RPS, fmtDur(x.P50), fmtDur(x.P90), fmtDur(x.P99), x.Non2xx, x.socketErrors(), x.caddyUsPerReq())
	}
	p("")

	p("## Start-up, memory, reload")
	p("")
	p("Start-up: from the process start (`caddy run --config <Caddyfile>`, the same config) to the first 200 on `GET /health` (liveness), and then on `GET /ready`, median of %d starts, each on a fresh copy of the whitelist file. Caddy starts its apps in random order, so `/health` may answer before the knocker app has loaded the whitelist; `/ready` answers once the store is open, i.e. every grant is loaded and enforced, so the goal is judged on it. Memory: `VmRSS` from `/proc/<pid>/status` %s after start-up (median); `VmHWM` is the peak; the Go heap is `HeapInuse` after a forced GC (admin API `/debug/pprof/heap?gc=1`), i.e. the live data without garbage the runtime has not yet handed back to the OS.", o.starts, o.settle)
	p("")
	p("| Grants | Start-up: /health | Start-up: /ready | VmRSS | VmHWM (peak) | Go heap in use after GC | Stop (SIGTERM to exit) |")
	p("|---:|---:|---:|---:|---:|---:|---:|")
	for _, n := range []int{0, o.grantsOther, o.grantsBig} {
		x := b.startMedian(n)
		p("| %s | %.3f s | **%.3f s** | %.1f MiB | %.1f MiB | %.1f MiB | %.2f s |", fmtCount(n), x.Health.Seconds(), x.Ready.Seconds(), mib(x.RSS), mib(x.HWM), mib(x.Heap), x.Stop.Seconds())
	}
	z, ot, bg := b.startMedian(0), b.startMedian(o.grantsOther), b.startMedian(o.grantsBig)
	rss0, heap0, rssO, heapO, rssB, heapB := z.RSS, z.Heap, ot.RSS, ot.Heap, bg.RSS, bg.Heap
	p("")
	p("- Bytes per grant, (RSS − RSS with 0 grants) / grants: %.0f at %s, **%.0f at %s** (goal ≤ 200). From the Go heap after GC: %.0f and %.0f.",
		float64(rssO-rss0)/float64(max(1, o.grantsOther)), fmtCount(o.grantsOther), float64(rssB-rss0)/float64(o.grantsBig), fmtCount(o.grantsBig),
		float64(heapO-heap0)/float64(max(1, o.grantsOther)), float64(heapB-heap0)/float64(o.grantsBig))
	var rl []string
	for _, d := range r.Reloads {
		rl = append(rl, fmtDur(d))
	}
	p("- **Reload with %s grants (%s generated and the client's)**: median %s (%s), from POSTing a changed config (adapted beforehand, as `caddy reload` does) to the admin API `/load` to its 200. For comparison, this Caddy took %.3f s from its start to /ready. A reload does not read the whitelist file: the store carries over. After each reload, checked: the new config serves, the whitelisted client and generated grants (exact and CIDR, IPv4 and IPv6) are admitted, a client without grant is denied, forward_auth still admits.",
		fmt.Sprint(o.grantsBig+1), fmtCount(o.grantsBig), fmtDur(medianD(r.Reloads)), strings.Join(rl, ", "), r.ReloadStart.Ready.Seconds())
	p("")

	b.clusterMarkdown(p)

	for _, pr := range r.Profiles {
		p("## CPU profile of Caddy under case (%s)", pr.Case)
		p("")
		p("Taken after the measurements (so the profiler's overhead is in no figure above) from the admin API, `/debug/pprof/profile?seconds=%d`, while wrk ran case (%s) (%.0f requests/s while profiled). Profile: `%s`.", o.pprofSecs, pr.Case, pr.RPS, pr.Path)
		if pr.GateShare >= 0 {
			p("")
			p("**The gate itself** (`Gate.ServeHTTP` minus the next handler it calls; on the deny path including `caddyhttp.Error`) **took %.2f%% of Caddy's CPU time.**", 100*pr.GateShare)
		}
		p("")
		p("`go tool pprof -top <caddy> <profile>`:")
		p("")
		p("```")
		for _, l := range pr.Top {
			p("%s", l)
		}
		p("```")
		p("")
		p("<details><summary>Cumulative</summary>")
		p("")
		p("```")
		for _, l := range pr.Cum {
			p("%s", l)
		}
		p("```")
		p("")
		p("</details>")
		p("")
		if len(pr.Peek) > 0 {
			p("<details><summary>The gate: <code>go tool pprof -peek 'knocker\\.\\(\\*Gate\\)\\.ServeHTTP$'</code></summary>")
			p("")
			p("```")
			for _, l := range pr.Peek {
				p("%s", l)
			}
			p("```")
			p("")
			p("</details>")
			p("")
		}
	}

	p("## Go micro-benchmarks")
	p("")
	p("The repository's micro-benchmarks of the store and the gate (figures for 1k/100k/1M entries, serial and parallel; durable knocks at 100 and 100k entries):")
	p("")
	p("```sh")
	p("go test -run '^$' -bench . -benchtime 300ms ./store/ .")
	p("```")
	p("")
	listed := listBenchmarks(o.repo)
	if mr := r.Micro; mr != nil {
		listed = mr.Listed
	}
	for _, f := range listed {
		p("- `%s` (`%s`)", f.Name, f.File)
	}
	p("")
	if mr := r.Micro; mr == nil {
		p("Not run in this benchmark run (`-micro=false`, `BENCH_MICRO=0`).")
	} else {
		p("Run by this benchmark: `%s` (%s)%s.", mr.Command, mr.Took.Round(time.Second), map[bool]string{true: "; **it failed**: " + mr.Err + " (output: `" + mr.RawPath + "`)", false: ""}[mr.Err != ""])
		p("")
		if len(mr.Rows) > 0 {
			p("| Package | Benchmark | Iterations | Results |")
			p("|---|---|---:|---|")
			for _, row := range mr.Rows {
				var ms []string
				for _, mm := range row.Metrics {
					ms = append(ms, mm[0]+" "+mm[1])
				}
				p("| %s | `%s` | %s | %s |", strings.TrimPrefix(row.Pkg, "github.com/caddy-knocker/"), row.Name, row.N, strings.Join(ms, ", "))
			}
			p("")
		}
	}

	p("## Functional checks")
	p("")
	p("Before measuring, the run checked with real requests (a failure stops the run):")
	p("")
	seen := map[string]bool{}
	for _, c := range r.Checks {
		if seen[c] || strings.Contains(c, "before round") || strings.HasPrefix(c, "after reload") || strings.HasPrefix(c, "before the reloads") {
			continue
		}
		seen[c] = true
		p("- %s", c)
	}
	if len(r.ReloadChecks) > 0 {
		p("- with %s grants, before the reloads and after each of the %d reloads: %s", fmtCount(o.grantsBig+1), len(r.Reloads), strings.Join(r.ReloadChecks, "; "))
	}
	p("- one real request before every measured run (200 `ok` for a/b/d, 401 for c), and every wrk run's answers: no non-2xx (a, b, d, knocks) or only non-2xx (c), no socket errors, beyond 0.01%% (requests cut off when wrk stops)")
	var errLogs []string
	for name, n := range r.ErrorLogs {
		if n > 0 {
			errLogs = append(errLogs, fmt.Sprintf("%s: %d", name, n))
		}
	}
	if len(errLogs) > 0 {
		p("- Caddy logged errors (see the logs in the raw output directory): %s", strings.Join(errLogs, ", "))
	} else {
		p("- no Caddy run logged an error")
	}
	p("")
	p("## Reproduce")
	p("")
	p("```sh")
	p("make bench            # = scripts/bench.sh")
	p("BENCH_DURATION=3s BENCH_ROUNDS=1 scripts/bench.sh   # a quick check of the tooling")
	p("```")
	p("")
	p("`scripts/bench.sh` installs wrk when run as root, builds `cmd/caddy` and nats-server (the version `go.mod` pins, for the cluster part) with `-trimpath`, runs `cmd/knocker-bench` and rewrites this file and `BENCHMARKS.svg`. Knobs (environment): `BENCH_DURATION`, `BENCH_WARMUP`, `BENCH_THREADS`, `BENCH_CONNECTIONS`, `BENCH_ROUNDS`, `BENCH_STARTS`, `BENCH_RELOADS`, `BENCH_MICRO` (0 skips the Go micro-benchmarks), `BENCH_MICRO_BENCHTIME`, `BENCH_PPROF` (on/off/auto), `BENCH_PORT_BASE`, `BENCH_OUT`; extra arguments go to `knocker-bench` (`-h` lists them). Raw wrk outputs, Caddy logs and profiles of this run were kept in `%s` on the machine that ran it. All traffic stays on 127.0.0.1; timings are never asserted in tests, this report only reports.", b.out)
	return s.String()
}

//go:build linux

// Command knocker-bench is the load benchmark of Knocker for Caddy.
//
// It starts a Caddy binary built with the plugin on loopback only, drives it
// with wrk, and writes BENCHMARKS.md and BENCHMARKS.svg at the repository
// root. Run it through scripts/bench.sh (or `make bench`), which installs wrk,
// builds Caddy and nats-server and passes the binaries:
//
//	go run ./cmd/knocker-bench -caddy /path/to/caddy -nats-server /path/to/nats-server
//
// What it measures, in one run and with the same wrk settings:
//
//   - requests/s and p50/p99 latency of one route (respond "ok") served
//     (a) unprotected, (b) behind the knocker gate for a whitelisted client
//     with 100,000 other grants stored, (c) behind the gate for a client
//     that is not whitelisted (401s), (d) behind forward_auth to the
//     plugin's own GET /verify (the Python Knocker's architecture);
//   - durable knocks/s with 100 and 100,000 grants stored, at concurrency 1
//     and 32;
//   - start-up time and resident memory with 0, 100,000 and 1,000,000 grants;
//   - the time of a config reload (admin API /load) with 1,000,000 grants;
//   - cluster mode, against a nats-server process (-nats-server) on
//     loopback: case (b) with the cluster on vs. off, knock latency and
//     throughput with and without it, how long a knock on one node takes to
//     admit the client on another, and the catch-up of a node that was
//     stopped while 10,000 grants were made.
//
// Every child process is killed on exit (also on Ctrl-C), every wait has a
// deadline, and every server binds 127.0.0.1 only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

type options struct {
	caddyBin    string
	natsBin     string
	repo        string
	outDir      string
	tmpParent   string
	command     string
	portBase    int
	duration    time.Duration
	warmup      time.Duration
	threads     int
	conns       int
	rounds      int
	wrkTimeout  time.Duration
	knockConns  []int
	grantsOther int
	grantsSmall int
	grantsBig   int
	starts      int
	settle      time.Duration
	reloads     int
	micro       bool
	microTime   string
	pprofMode   string
	pprofSecs   int
	timeout     time.Duration
	writeDoc    bool
	phases      map[string]bool
	propKnocks  int
	catchup     int
}

// phase reports whether a part of the benchmark is to run.
func (o *options) phase(name string) bool { return o.phases["all"] || o.phases[name] }

func parseFlags() *options {
	o := &options{}
	flag.StringVar(&o.caddyBin, "caddy", "", "Caddy binary built with the plugin (required; scripts/bench.sh builds it)")
	flag.StringVar(&o.natsBin, "nats-server", "", "nats-server binary for the cluster part (scripts/bench.sh builds it from the module go.mod pins)")
	flag.StringVar(&o.repo, "repo", ".", "repository root: BENCHMARKS.md/.svg are written there and the micro-benchmarks run there")
	flag.StringVar(&o.outDir, "out", "", "directory for raw outputs (wrk, Caddy logs, profiles); default: a new directory under $TMPDIR, kept")
	flag.StringVar(&o.tmpParent, "tmp", "", "parent of the work dir (whitelists, journals, Caddy data; removed at exit); default $TMPDIR. Its file system decides what an fsync costs")
	flag.StringVar(&o.command, "command", "", "the command line to record in BENCHMARKS.md (scripts/bench.sh passes its own)")
	flag.IntVar(&o.portBase, "port-base", 18400, "first loopback port: sites use base..base+3, the admin API base+9; the cluster part also base+8 (NATS) and base+10..base+39 (three more Caddy nodes)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured duration of each wrk run")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "warm-up wrk run before each measured run (same settings, discarded); 0 disables")
	flag.IntVar(&o.threads, "threads", 1, "wrk threads (-t) for the request-path cases (a)-(d)")
	flag.IntVar(&o.conns, "connections", 32, "wrk connections (-c) for the request-path cases (a)-(d)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of (a)-(d), interleaved in rotating order; the median round is reported")
	flag.DurationVar(&o.wrkTimeout, "wrk-timeout", 5*time.Second, "wrk --timeout (a response slower than this counts as a timeout error)")
	knockConns := flag.String("knock-connections", "1,32", "concurrency levels of the durable knock runs")
	flag.IntVar(&o.grantsOther, "grants", 100_000, "other grants in the store for (b)-(d) and the large durable-knock case")
	flag.IntVar(&o.grantsSmall, "grants-small", 100, "grants in the store for the small durable-knock case")
	flag.IntVar(&o.grantsBig, "grants-big", 1_000_000, "grants for the start-up, memory and reload measurements")
	flag.IntVar(&o.starts, "starts", 3, "Caddy starts per grant count for start-up time and memory (median reported)")
	flag.DurationVar(&o.settle, "settle", 2*time.Second, "wait after start-up before reading VmRSS")
	flag.IntVar(&o.reloads, "reloads", 3, "config reloads with the big store (median reported)")
	flag.BoolVar(&o.micro, "micro", true, "also run the Go micro-benchmarks (go test -bench) and include their table")
	flag.StringVar(&o.microTime, "micro-benchtime", "300ms", "-benchtime of the micro-benchmarks")
	flag.StringVar(&o.pprofMode, "pprof", "auto", "CPU profile of Caddy during case (b): on, off, or auto (only when a request-path goal is missed)")
	flag.IntVar(&o.pprofSecs, "pprof-seconds", 10, "length of the CPU profile")
	flag.DurationVar(&o.timeout, "timeout", 45*time.Minute, "deadline of the whole run")
	flag.IntVar(&o.propKnocks, "cluster-knocks", 1000, "knocks on one cluster node whose propagation to another is timed, one at a time")
	flag.IntVar(&o.catchup, "cluster-catchup", 10_000, "grants made while a cluster node is stopped, for its catch-up")
	flag.BoolVar(&o.writeDoc, "write", true, "write BENCHMARKS.md and BENCHMARKS.svg at -repo")
	phases := flag.String("phases", "all", "comma-separated parts to run, for developing the benchmark: request, knock, startup, reload, cluster, micro (anything but all implies -write=false)")
	flag.Parse()
	o.phases = map[string]bool{}
	for _, p := range strings.Split(*phases, ",") {
		switch p = strings.TrimSpace(p); p {
		case "all", "request", "knock", "startup", "reload", "cluster", "micro":
			o.phases[p] = true
		default:
			fatalf("-phases: unknown part %q", p)
		}
	}
	if !o.phases["all"] && o.writeDoc {
		fmt.Fprintln(os.Stderr, "knocker-bench: -phases given: BENCHMARKS.md is written only by a complete run (-write=false)")
		o.writeDoc = false
	}
	for _, s := range strings.Split(*knockConns, ",") {
		var n int
		if _, err := fmt.Sscanf(strings.TrimSpace(s), "%d", &n); err != nil || n < 1 {
			fatalf("-knock-connections: bad value %q", s)
		}
		o.knockConns = append(o.knockConns, n)
	}
	switch {
	case o.caddyBin == "":
		fatalf("-caddy is required (scripts/bench.sh builds cmd/caddy and passes it)")
	case o.duration < time.Second:
		fatalf("-duration must be at least 1s")
	case o.threads < 1 || o.conns < o.threads:
		fatalf("-threads must be >= 1 and -connections >= -threads")
	case o.rounds < 1 || o.starts < 1 || o.reloads < 1:
		fatalf("-rounds, -starts and -reloads must be >= 1")
	case o.portBase < 1024 || o.portBase > 65000:
		fatalf("-port-base must be within 1024..65000")
	case o.pprofMode != "on" && o.pprofMode != "off" && o.pprofMode != "auto":
		fatalf("-pprof must be on, off or auto")
	case o.propKnocks < 1 || o.catchup < 1:
		fatalf("-cluster-knocks and -cluster-catchup must be >= 1")
	case o.propKnocks > 1<<24-2 || o.catchup > 1<<24-2:
		fatalf("-cluster-knocks and -cluster-catchup: at most %d (their addresses come from one /8 each)", 1<<24-2)
	case o.phase("cluster") && o.natsBin == "":
		fatalf("-nats-server is required for the cluster part (scripts/bench.sh builds it); or leave the part out: -phases request,knock,startup,reload,micro")
	}
	return o
}

// outDir is where the raw outputs go, for the Ctrl-C message.
var outDir atomic.Pointer[string]

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "knocker-bench: "+format+"\n", args...)
	cleanupAll()
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Printf("[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func main() {
	o := parseFlags()
	var err error
	if o.caddyBin, err = filepath.Abs(o.caddyBin); err != nil {
		fatalf("%v", err)
	}
	if st, err := os.Stat(o.caddyBin); err != nil || st.IsDir() {
		fatalf("caddy binary %s: not a file (%v)", o.caddyBin, err)
	}
	if o.natsBin != "" {
		if o.natsBin, err = filepath.Abs(o.natsBin); err != nil {
			fatalf("%v", err)
		}
		if st, err := os.Stat(o.natsBin); err != nil || st.IsDir() {
			fatalf("nats-server binary %s: not a file (%v)", o.natsBin, err)
		}
	}
	if o.repo, err = filepath.Abs(o.repo); err != nil {
		fatalf("%v", err)
	}
	if _, err := os.Stat(filepath.Join(o.repo, "go.mod")); err != nil {
		fatalf("-repo %s is not the repository root (no go.mod)", o.repo)
	}

	// Ctrl-C / SIGTERM: kill every child, remove temp dirs, exit.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "\nknocker-bench: %v: stopping every child process and removing temp dirs\n", s)
		cleanupAll()
		if d := outDir.Load(); d != nil {
			fmt.Fprintf(os.Stderr, "knocker-bench: raw outputs so far: %s\n", *d)
		}
		os.Exit(130)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()

	b, err := newBench(ctx, o)
	if err != nil {
		fatalf("%v", err)
	}
	outDir.Store(&b.out)
	runErr := b.run(ctx)
	cleanupAll()
	if runErr != nil {
		if errors.Is(runErr, context.DeadlineExceeded) {
			runErr = fmt.Errorf("%w (the whole run has a deadline of %s: -timeout)", runErr, o.timeout)
		}
		fmt.Fprintf(os.Stderr, "\nknocker-bench: FAILED: %v\nraw outputs and Caddy logs: %s\n", runErr, b.out)
		os.Exit(1)
	}
}

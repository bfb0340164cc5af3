#!/usr/bin/env bash
# bench.sh - the load benchmark, one command:
#   installs wrk (as root, from Debian's packages), builds cmd/caddy and
#   nats-server (the version go.mod pins) with -trimpath, runs
#   cmd/knocker-bench, which starts Caddy (and nats-server) on 127.0.0.1 only,
#   measures (a) unprotected, (b) knocker whitelisted, (c) knocker deny path,
#   (d) forward_auth -> /verify, durable knocks, start-up, memory, reload and
#   cluster mode, and writes BENCHMARKS.md and BENCHMARKS.svg at the
#   repository root.
#
# Knobs (environment; defaults in brackets):
#   BENCH_DURATION [10s]  measured time of each wrk run (whole seconds)
#   BENCH_WARMUP [2s]     warm-up before each measured run (0 disables)
#   BENCH_THREADS [1]     wrk -t        BENCH_CONNECTIONS [32]  wrk -c
#   BENCH_ROUNDS [3]      interleaved rounds of (a)-(d), median reported
#   BENCH_STARTS [3]      Caddy starts per store size (start-up, memory)
#   BENCH_RELOADS [3]     config reloads with 1M grants
#   BENCH_MICRO [1]       0 skips the Go micro-benchmarks
#   BENCH_MICRO_BENCHTIME [300ms]
#   BENCH_PPROF [auto]    CPU profile during case (b): on, off, auto (if a goal is missed)
#   BENCH_PORT_BASE [18400]  loopback ports base..base+3 and base+9; the
#                         cluster part also base+8 and base+10..base+39
#   BENCH_OUT             keep raw outputs there (default: a new dir under $TMPDIR)
# Extra arguments are passed to knocker-bench (scripts/bench.sh -h lists them).
# Quick check of the tooling:  BENCH_DURATION=3s BENCH_ROUNDS=1 scripts/bench.sh
# One part only (no BENCHMARKS.md written):  scripts/bench.sh -phases cluster
set -euo pipefail
cd "$(dirname "$0")/.."

command -v go >/dev/null || { echo "bench.sh: Go is required (version: see go.mod)" >&2; exit 1; }
if ! command -v wrk >/dev/null; then
	if [ "$(id -u)" = 0 ]; then
		echo "bench.sh: installing wrk (Debian package)"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
	else
		echo "bench.sh: wrk is missing: install it (sudo apt-get install -y wrk) or run this script as root" >&2
		exit 1
	fi
fi

build=$(mktemp -d "${TMPDIR:-/tmp}/knocker-bench-build-XXXXXX")
trap 'rm -rf "$build"' EXIT

echo "bench.sh: building cmd/caddy, nats-server and cmd/knocker-bench (-trimpath) into $build"
go build -trimpath -o "$build/caddy" ./cmd/caddy
# The cluster part's engine: the nats-server module go.mod pins.
go build -trimpath -o "$build/nats-server" github.com/nats-io/nats-server/v2
go build -trimpath -o "$build/knocker-bench" ./cmd/knocker-bench

# The invocation, as BENCHMARKS.md records it.
cmdline="scripts/bench.sh"
for v in BENCH_DURATION BENCH_WARMUP BENCH_THREADS BENCH_CONNECTIONS BENCH_ROUNDS BENCH_STARTS \
	BENCH_RELOADS BENCH_MICRO BENCH_MICRO_BENCHTIME BENCH_PPROF BENCH_PORT_BASE; do
	if [ -n "${!v:-}" ]; then cmdline="$v=${!v} $cmdline"; fi
done
if [ $# -gt 0 ]; then cmdline="$cmdline $*"; fi

micro=true
case "${BENCH_MICRO:-1}" in 0|false|no|off) micro=false ;; esac

args=(
	-caddy "$build/caddy"
	-nats-server "$build/nats-server"
	-repo "$PWD"
	-command "$cmdline"
	-tmp "$build"
	-duration "${BENCH_DURATION:-10s}"
	-warmup "${BENCH_WARMUP:-2s}"
	-threads "${BENCH_THREADS:-1}"
	-connections "${BENCH_CONNECTIONS:-32}"
	-rounds "${BENCH_ROUNDS:-3}"
	-starts "${BENCH_STARTS:-3}"
	-reloads "${BENCH_RELOADS:-3}"
	-micro="$micro"
	-micro-benchtime "${BENCH_MICRO_BENCHTIME:-300ms}"
	-pprof "${BENCH_PPROF:-auto}"
	-port-base "${BENCH_PORT_BASE:-18400}"
)
if [ -n "${BENCH_OUT:-}" ]; then args+=(-out "$BENCH_OUT"); fi

# Not exec: the EXIT trap removes the build dir. On Ctrl-C, knocker-bench
# stops its children and removes its own temp dirs.
"$build/knocker-bench" "${args[@]}" "$@"

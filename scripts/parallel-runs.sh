#!/usr/bin/env bash
# parallel-runs.sh - check that two test runs on one machine do not meet:
# two fresh clones of the committed HEAD run `go test -race -count=1 ./...`
# at the same moment, ROUNDS times (default 5); every run must pass.
#
#   scripts/parallel-runs.sh [ROUNDS]      (make test-parallel)
#
# Run it as root, after scripts/test.sh has installed the prerequisites once,
# so that the firewalld and browser tests run (they are made mandatory here,
# as in CI). Logs: $PARALLEL_DIR (default: a new temp dir), kept on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-5}
work=${PARALLEL_DIR:-$(mktemp -d /tmp/knocker-parallel-XXXXXX)}
mkdir -p "$work"
if [ "$(id -u)" = 0 ]; then
	export KNOCKER_REQUIRE_BROWSER=1 KNOCKER_REQUIRE_FIREWALLD=1 KNOCKER_REQUIRE_JOURNALD=1
else
	echo "not root: the firewalld tests skip, so this checks less than CI runs" >&2
fi

for c in a b; do
	rm -rf "$work/$c"
	git clone -q . "$work/$c"
done

failed=0
for round in $(seq 1 "$rounds"); do
	pids=()
	for c in a b; do
		(
			cd "$work/$c"
			start=$(date +%s)
			if go test -race -count=1 ./... >"$work/$c.round$round.log" 2>&1; then r=pass; else r=FAIL; fi
			echo "$r $(($(date +%s) - start))" >"$work/$c.round$round.result"
		) &
		pids+=($!)
	done
	wait "${pids[@]}"
	line="round $round:"
	for c in a b; do
		read -r r secs <"$work/$c.round$round.result"
		line+=" clone $c $r in ${secs}s;"
		if [ "$r" != pass ]; then
			failed=1
			grep -E -- '--- FAIL|^(FAIL|panic)|_test\.go:[0-9]+:' "$work/$c.round$round.log" | head -40 || true
		fi
	done
	echo "$line"
done

if [ "$failed" = 0 ]; then
	echo "all $((2 * rounds)) runs passed ($rounds rounds of two at once)"
	rm -rf "$work"
else
	echo "some runs failed; logs in $work" >&2
	exit 1
fi

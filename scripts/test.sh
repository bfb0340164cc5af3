#!/usr/bin/env bash
# test.sh - run every test of the project, as CI does:
#   formatting and vet; the xcaddy build users run; all unit, integration and
#   end-to-end tests under the race detector; the end-to-end test again on
#   the xcaddy-built binary; one pass of every benchmark so none can rot.
# Needs Go (see go.mod) and a C compiler for the race detector. Tests that
# need root or a service they cannot start skip with a message saying why.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step "gofmt"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

step "go vet"
go vet ./...

step "xcaddy build (scripts/xcaddy-build.sh, as in the Dockerfile)"
scripts/xcaddy-build.sh "$work/caddy"
modules=$("$work/caddy" list-modules)
for m in knocker http.handlers.knock http.handlers.knocker; do
	grep -qx "$m" <<<"$modules" || { echo "xcaddy build lacks module $m"; exit 1; }
done
echo "xcaddy build lists knocker, http.handlers.knock, http.handlers.knocker"

step "unit, integration and end-to-end tests (race detector)"
go test -race -count=1 ./...

step "end-to-end test on the xcaddy-built binary"
KNOCKER_E2E_CADDY="$work/caddy" go test -count=1 -run TestQuickstartEndToEnd ./cmd/caddy/

step "benchmarks, one iteration each (figures: see README)"
go test -run '^$' -bench . -benchtime 1x ./... >"$work/bench.txt" || { cat "$work/bench.txt"; exit 1; }
grep -c '^Benchmark' "$work/bench.txt" | xargs printf '%s benchmarks ran\n'

step "all tests passed"

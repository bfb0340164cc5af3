#!/usr/bin/env bash
# test.sh - run every test of the project, as CI does:
#   formatting and vet; cross-builds for Windows, macOS, Linux/arm64,
#   FreeBSD, OpenBSD, illumos and DragonFly; the xcaddy builds users run (plain, with caddy-l4); all unit, integration and
#   end-to-end tests under the race detector (the cluster ones against a
#   nats-server process built from the version go.mod pins); the end-to-end test again on
#   the xcaddy-built binary; one pass of every benchmark so none can rot.
# Needs Go (see go.mod). As root (as CI runs it) it installs the Debian
# packages the tests use and makes the tests that need them mandatory;
# otherwise those tests skip with a message saying why.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
artifacts="$PWD/test-artifacts"

command -v go >/dev/null || { echo "Go is required (version: see go.mod)" >&2; exit 1; }

# install PACKAGE... : install missing Debian packages (root only).
apt_ready=
install() {
	local missing=()
	for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ -z "$apt_ready" ] && { apt-get update -qq; apt_ready=1; }
	echo "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

step "prerequisites"
if [ "$(id -u)" = 0 ]; then
	# systemd: its journald (run in a private mount namespace) and journalctl
	# check the CLI's journal events; nothing else of systemd is started.
	install gcc libc6-dev chromium iproute2 dbus-daemon systemd util-linux
	# firewalld 2.x (Debian 12 ships 1.3.3; both work): the firewalld tests
	# run it in their own network namespace on a private D-Bus bus.
	scripts/install-firewalld.sh
	# What CI has installed must also run: no silent skips.
	export KNOCKER_REQUIRE_BROWSER=1 KNOCKER_REQUIRE_FIREWALLD=1 KNOCKER_REQUIRE_JOURNALD=1
else
	echo "not root: the firewalld and real-journald tests skip, and the browser test runs only if chromium is installed"
	command -v gcc >/dev/null || { echo "gcc is required for the race detector (apt-get install gcc)" >&2; exit 1; }
fi

step "gofmt"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

step "go vet"
go vet ./...

step "cross-builds: the plugin builds wherever Caddy does"
for target in windows/amd64 darwin/arm64 linux/arm64 freebsd/amd64; do
	GOOS=${target%/*} GOARCH=${target#*/} go build ./... || { echo "go build ./... for $target failed"; exit 1; }
	GOOS=${target%/*} GOARCH=${target#*/} go vet ./... || { echo "go vet ./... (tests too) for $target failed"; exit 1; }
	echo "$target: go build ./... and go vet ./... pass"
done
# Where the D-Bus client does not build, the firewalld backend is a stub that
# refuses to start; its tests (which drive a real firewalld) do not build.
for target in openbsd/amd64 illumos/amd64 dragonfly/amd64; do
	GOOS=${target%/*} GOARCH=${target#*/} go build ./... || { echo "go build ./... for $target failed"; exit 1; }
	echo "$target: go build ./... passes"
done

step "release builds of the CLI (make release)"
go run ./cmd/knocker-release -out "$work/release" -version "v0.0.0-citest"
(cd "$work/release" && sha256sum -c SHA256SUMS)
if [ "$(go env GOARCH)" = amd64 ]; then
	tar -xzf "$work/release/knocker_v0.0.0-citest_linux_amd64.tar.gz" -C "$work/release"
	stamped=$("$work/release/knocker_v0.0.0-citest_linux_amd64/knocker" version)
	[ "$stamped" = "knocker v0.0.0-citest" ] || { echo "release binary says \"$stamped\", want the stamped version"; exit 1; }
	echo "the linux/amd64 release binary reports: $stamped"
fi

step "xcaddy builds, plain and with caddy-l4 (scripts/xcaddy-build.sh, as in the Dockerfile)"
scripts/xcaddy-build.sh "$work/caddy"
modules=$("$work/caddy" list-modules)
for m in knocker http.handlers.knock http.handlers.knocker knocker.firewall.firewalld knocker.cluster.nats admin.api.knocker; do
	grep -qx "$m" <<<"$modules" || { echo "xcaddy build lacks module $m"; exit 1; }
done
echo "xcaddy build lists knocker, http.handlers.knock, http.handlers.knocker, knocker.firewall.firewalld, knocker.cluster.nats, admin.api.knocker"
if grep -q '^layer4' <<<"$modules"; then echo "the plain xcaddy build includes caddy-l4 modules"; exit 1; fi
scripts/xcaddy-build.sh "$work/caddy-l4" l4
modules=$("$work/caddy-l4" list-modules)
for m in knocker http.matchers.knocked layer4 layer4.matchers.knocked; do
	grep -qx "$m" <<<"$modules" || { echo "xcaddy build with caddy-l4 lacks module $m"; exit 1; }
done
echo "xcaddy build with caddy-l4 lists layer4, layer4.matchers.knocked; the plain one no caddy-l4 module"

step "nats-server for the cluster tests (the version go.mod pins)"
go build -o "$work/nats-server" github.com/nats-io/nats-server/v2
"$work/nats-server" --version
export KNOCKER_NATS_SERVER="$work/nats-server"

step "unit, integration, browser and end-to-end tests (race detector)"
rm -rf "$artifacts" && mkdir -p "$artifacts"
# Verbose into a log: the summary shows each package's result and the
# figures the reliability and security tests report; a failure shows all.
if ! go test -race -count=1 -v -artifacts -outputdir "$artifacts" ./... >"$work/test.log" 2>&1; then
	grep -E -- '--- FAIL|^(FAIL|panic)|_test\.go:[0-9]+:' "$work/test.log" | grep -v 'figure:' || true
	echo "--- full test output: last 200 lines ---"; tail -200 "$work/test.log"
	exit 1
fi
grep -E '^(ok|FAIL)|figure:|screenshot:' "$work/test.log"
echo "test artifacts (screenshots): $artifacts"

step "fuzzing: every Fuzz target for ${FUZZTIME:=10s} (committed corpora in each package's testdata/fuzz)"
for pkg in $(go list ./...); do
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg" >"$work/fuzz.txt" 2>&1 ||
			{ cat "$work/fuzz.txt"; echo "fuzzing $target found a failure; the input is under $(go list -f '{{.Dir}}' "$pkg")/testdata/fuzz/$target"; exit 1; }
		echo "$target: $(grep -o 'execs: [0-9]*' "$work/fuzz.txt" | tail -1) in $FUZZTIME, no failure"
	done
done

step "end-to-end test on the xcaddy-built binary"
KNOCKER_E2E_CADDY="$work/caddy" go test -count=1 -run TestQuickstartEndToEnd ./cmd/caddy/

step "benchmarks, one iteration each (figures: see BENCHMARKS.md and docs/CONTRIBUTING.md)"
go test -run '^$' -bench . -benchtime 1x ./... >"$work/bench.txt" || { cat "$work/bench.txt"; exit 1; }
grep -c '^Benchmark' "$work/bench.txt" | xargs printf '%s benchmarks ran\n'

step "all tests passed"

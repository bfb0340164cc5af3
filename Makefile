# Development shortcuts. See docs/CONTRIBUTING.md.
.PHONY: run test test-parallel bench release

# The README quickstart: Caddy with the plugin on localhost.
run:
	go run ./cmd/caddy run --config examples/quickstart.Caddyfile

# Every test, as CI runs it.
test:
	scripts/test.sh

# Two test runs at once on this machine, 5 rounds: they must not meet.
test-parallel:
	scripts/parallel-runs.sh

# The load benchmark: writes BENCHMARKS.md and BENCHMARKS.svg (knobs: scripts/bench.sh).
bench:
	scripts/bench.sh

# The CLI for every release target, version stamped, archived, with SHA256SUMS
# (VERSION=v1.2.3 to set the version; default: git describe).
release:
	go run ./cmd/knocker-release -out dist $(if $(VERSION),-version $(VERSION))

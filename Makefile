# Development shortcuts. See README.md.
.PHONY: run test bench

# The README quickstart: Caddy with the plugin on localhost.
run:
	go run ./cmd/caddy run --config examples/quickstart.Caddyfile

# Every test, as CI runs it.
test:
	scripts/test.sh

# The load benchmark: writes BENCHMARKS.md and BENCHMARKS.svg (knobs: scripts/bench.sh).
bench:
	scripts/bench.sh

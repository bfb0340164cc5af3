package firewalld

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestOperationMetrics runs each operation against the sandbox's firewalld
// and checks its count and its errors. The metrics are the process's, so
// it compares with the values before; no other backend runs meanwhile.
func TestOperationMetrics(t *testing.T) {
	useZones(t, "trusted")
	src := openStore(t)
	before := snapshotOps(t)
	a := startBackend(t, `{"zones":["trusted"],"ports":["2222/tcp"]}`, src)
	grant(t, a, src, clientA, time.Hour)
	if _, err := src.st.Revoke(mustPrefix(t, clientA)); err != nil {
		t.Fatal(err)
	}
	// The revocation is the worker's: wait for its close.
	waitFor(t, 10*time.Second, func() (bool, string) {
		n := snapshotOps(t)[opClose].count - before[opClose].count
		return n >= 1, fmt.Sprintf("%d close operations observed", n)
	})
	if err := a.Ready(); err != nil {
		t.Fatal(err)
	}
	fwcmd(t, "--zone=trusted", "--remove-rich-rule="+dropV6)
	if a.Ready() == nil {
		t.Fatal("Ready after tampering succeeded")
	}
	idle(t, a)

	after := snapshotOps(t)
	for op, want := range map[operation]opSnapshot{
		opStart: {count: 1}, opOpen: {count: 1}, opClose: {count: 1},
		opVerify: {count: 2, errors: 1}, opResync: {},
	} {
		got := opSnapshot{after[op].count - before[op].count, after[op].errors - before[op].errors}
		if got != want {
			t.Errorf("operation %s: %d observed, %v failed; want %d, %v", operationNames[op], got.count, got.errors, want.count, want.errors)
		}
	}
}

type opSnapshot struct {
	count  uint64
	errors float64
}

// snapshotOps reads every operation's histogram count and error counter
// as a scrape would.
func snapshotOps(t *testing.T) [numOperations]opSnapshot {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics.duration, metrics.errors)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var s [numOperations]opSnapshot
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for op := range numOperations {
				if m.GetLabel()[0].GetValue() != operationNames[op] {
					continue
				}
				if h := m.GetHistogram(); h != nil {
					s[op].count = h.GetSampleCount()
				} else {
					s[op].errors = m.GetCounter().GetValue()
				}
			}
		}
	}
	return s
}

package store

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

func randomKeys(r *rand.Rand, n int) []entryKey {
	keys := make([]entryKey, n)
	for i := range keys {
		switch i % 4 {
		case 0:
			keys[i] = entryKey{lo: uint64(r.Uint32()), bits: 32}
		case 1:
			keys[i] = entryKey{lo: uint64(r.Uint32() &^ 0xFF), bits: 24}
		case 2:
			keys[i] = entryKey{hi: r.Uint64(), lo: r.Uint64(), bits: 128, v6: true}
		case 3:
			keys[i] = entryKey{hi: r.Uint64(), bits: 64, v6: true}
		}
	}
	return keys
}

// TestIndexAgainstModel drives the index with random sets and deletes,
// enough to grow and shrink shards and to wrap probe clusters around the
// end of their arrays, and compares it with a map after every step.
func TestIndexAgainstModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	x := &index{seed: newIndexSeed()}
	keys := randomKeys(r, 4000)
	model := map[entryKey]int64{}
	steps := 200_000
	if testing.Short() || raceEnabled {
		steps = 40_000
	}
	for step := range steps {
		k := keys[r.IntN(len(keys))]
		_, inModel := model[k]
		// Grow, then churn, then drain (shrinking shards down to nothing).
		setPct, laterPct := 70, 10
		switch {
		case step > steps*4/5:
			setPct, laterPct = 5, 5
		case step > steps*2/5:
			setPct, laterPct = 40, 10
		}
		switch op := r.IntN(100); {
		case op < setPct:
			exp := r.Int64N(1000) + 1
			if added := x.set(k, exp); added == inModel {
				t.Fatalf("step %d: set(%v) added=%v, model had it: %v", step, k, added, inModel)
			}
			model[k] = exp
		case op < setPct+laterPct:
			exp := r.Int64N(1000) + 1
			had, added := x.setLater(k, exp)
			if had != inModel || added == inModel {
				t.Fatalf("step %d: setLater(%v) = %v %v, model had it: %v", step, k, had, added, inModel)
			}
			if !inModel || exp > model[k] {
				model[k] = exp
			}
		default:
			if removed := x.del(k); removed != inModel {
				t.Fatalf("step %d: del(%v) = %v, model had it: %v", step, k, removed, inModel)
			}
			delete(model, k)
		}
		if exp, ok := x.get(k); ok != (model[k] != 0) || exp != model[k] {
			t.Fatalf("step %d: get(%v) = %d %v, want %d", step, k, exp, ok, model[k])
		}
		if step%5000 == 0 || step == steps-1 {
			checkIndex(t, x, keys, model)
		}
	}
}

func checkIndex(t *testing.T, x *index, keys []entryKey, model map[entryKey]int64) {
	t.Helper()
	for _, k := range keys {
		exp, ok := x.get(k)
		if want, in := model[k]; ok != in || exp != want {
			t.Fatalf("get(%v) = %d %v, want %d %v", k, exp, ok, want, in)
		}
	}
	seen := map[entryKey]int64{}
	x.each(func(k entryKey, exp int64) {
		if _, dup := seen[k]; dup {
			t.Fatalf("each visited %v twice", k)
		}
		seen[k] = exp
	})
	if len(seen) != len(model) {
		t.Fatalf("each visited %d entries, want %d", len(seen), len(model))
	}
	x.publishProbes()
	for fam, tables := range [][]atomic.Pointer[table]{x.v4[:], x.v6[:]} {
		listed := map[int]bool{}
		if p := []*atomic.Pointer[[]uint8]{&x.probe4, &x.probe6}[fam].Load(); p != nil {
			for _, l := range *p {
				listed[int(l)] = true
			}
		}
		for l := range tables {
			tb := tables[l].Load()
			if present := tb != nil && tb.n > 0; present != listed[l] {
				t.Fatalf("family %d length %d: has entries %v, listed %v", fam, l, present, listed[l])
			}
		}
	}
}

// TestIndexReadersNeverMixEntries checks that concurrent readers never see
// one entry's key with another entry's expiry while the writer inserts,
// deletes (moving entries) and resizes. Every expiry encodes its key.
func TestIndexReadersNeverMixEntries(t *testing.T) {
	x := &index{seed: newIndexSeed()}
	r := rand.New(rand.NewPCG(3, 4))
	keys := make([]entryKey, 3000)
	for i := range keys {
		keys[i] = entryKey{lo: uint64(r.Uint32()>>1) + 1, bits: 32}
	}
	expFor := func(k entryKey, version int64) int64 { return int64(k.lo)<<20 | version&0xFFFFF }

	var stop atomic.Bool
	var wg sync.WaitGroup
	var reads atomic.Int64
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rr := rand.New(rand.NewPCG(rand.Uint64(), 0))
			for !stop.Load() {
				k := keys[rr.IntN(len(keys))]
				if exp, ok := x.get(k); ok && exp>>20 != int64(k.lo) {
					t.Errorf("get(%v) returned the expiry of key %d", k, exp>>20)
					return
				}
				reads.Add(1)
			}
		}()
	}
	steps := 300_000
	if raceEnabled {
		steps = 30_000
	}
	for step := range steps {
		k := keys[r.IntN(len(keys))]
		if r.IntN(2) == 0 {
			x.set(k, expFor(k, int64(step)+1))
		} else {
			x.del(k)
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d concurrent reads", reads.Load())
}

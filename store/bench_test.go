package store

import (
	"encoding/binary"
	"fmt"
	mathrand "math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
)

// The benchmark whitelist mixes families and prefix lengths the way a real
// one might: mostly single hosts, some networks.
//
//	60% IPv4 /32   in 10.0.0.0/8
//	30% IPv6 /128  in 2001:db8::/64
//	 4% IPv4 /24   in 100.0.0.0/8
//	 1% IPv4 /16   from 12.0.0.0 upwards
//	 4% IPv6 /64   in 2001:db8:1::/48
//	 1% IPv6 /96   in 2001:db8:2::/64
//
// Entry i goes to band i%100 with ordinal id within its band, so every band
// is present even at 1k entries and all keys are distinct.

type band struct {
	lo, hi int    // i%100 range
	ids    uint64 // ids the band's address range can hold
	make   func(id uint64) netip.Prefix
	// inside returns an address covered by entry id (host bits from r).
	inside func(id, r uint64) netip.Addr
}

// perm24 and perm64 are bijections, so distinct ids give distinct hosts
// scattered over the range rather than consecutive ones.
func perm24(id uint64) uint32 { return uint32(id*2654435761) & 0xFFFFFF }
func perm64(id uint64) uint64 { return id * 0x9E3779B97F4A7C15 }

func v4(a uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], a)
	return netip.AddrFrom4(b)
}

func v6(hi, lo uint64) netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], lo)
	return netip.AddrFrom16(b)
}

var bands = []band{
	{0, 60, 1 << 24,
		func(id uint64) netip.Prefix { return netip.PrefixFrom(v4(0x0A000000|perm24(id)), 32) },
		func(id, _ uint64) netip.Addr { return v4(0x0A000000 | perm24(id)) }},
	{60, 90, 1 << 40,
		func(id uint64) netip.Prefix { return netip.PrefixFrom(v6(0x20010db800000000, perm64(id)), 128) },
		func(id, _ uint64) netip.Addr { return v6(0x20010db800000000, perm64(id)) }},
	{90, 94, 1 << 16,
		func(id uint64) netip.Prefix { return netip.PrefixFrom(v4(0x64000000|uint32(id)<<8), 24) },
		func(id, r uint64) netip.Addr { return v4(0x64000000 | uint32(id)<<8 | uint32(r&0xFF)) }},
	{94, 95, 20_000, // stays below 100.0.0.0
		func(id uint64) netip.Prefix { return netip.PrefixFrom(v4(0x0C000000+uint32(id)<<16), 16) },
		func(id, r uint64) netip.Addr { return v4(0x0C000000 + uint32(id)<<16 | uint32(r&0xFFFF)) }},
	{95, 99, 1 << 16,
		func(id uint64) netip.Prefix { return netip.PrefixFrom(v6(0x20010db800010000|id, 0), 64) },
		func(id, r uint64) netip.Addr { return v6(0x20010db800010000|id, perm64(r)) }},
	{99, 100, 1 << 32,
		func(id uint64) netip.Prefix { return netip.PrefixFrom(v6(0x20010db800020000, id<<32), 96) },
		func(id, r uint64) netip.Addr { return v6(0x20010db800020000, id<<32|r&0xFFFFFFFF) }},
}

func bandOf(i int) (band, uint64) {
	c := i % 100
	for _, b := range bands {
		if c >= b.lo && c < b.hi {
			return b, uint64(i/100*(b.hi-b.lo) + c - b.lo)
		}
	}
	panic("unreachable")
}

// mixedEntry is the i-th benchmark entry; all expire at t0+1e6.
func mixedEntry(i int) (netip.Prefix, int64) {
	b, id := bandOf(i)
	return b.make(id), t0 + 1e6
}

// bandCount is how many of n entries land in band b.
func bandCount(n int, b band) uint64 {
	w := b.hi - b.lo
	full := n / 100 * w
	rest := n % 100
	return uint64(full + max(0, min(rest, b.hi)-b.lo))
}

// probes returns 2^16 addresses, alternately IPv4 and IPv6, that hit or miss
// exact or CIDR entries of an n-entry mixed whitelist. They are spread over
// all entries, so with a large whitelist nearly every lookup misses the CPU
// caches: the worst case. distinct > 0 limits them to that many different
// clients instead (a busy server's recurring visitors).
func probes(n int, cidr, hit bool, distinct int) []netip.Addr {
	var four, six []band
	if cidr {
		four, six = bands[2:4], bands[4:6]
	} else {
		four, six = bands[0:1], bands[1:2]
	}
	out := make([]netip.Addr, 1<<16)
	for i := range out {
		fam := four
		if i%2 == 1 {
			fam = six
		}
		b := fam[(i/2)%len(fam)]
		count := bandCount(n, b)
		r := perm64(uint64(i) + 1)
		if distinct > 0 {
			r = perm64(uint64(i%distinct) + 1)
		}
		id := r % count
		if !hit {
			id = count + r%(b.ids-count) // ids past the band's end are never granted
		}
		out[i] = b.inside(id, r>>20)
	}
	return out
}

// Benchmark stores live for the whole test binary (building 1M entries
// takes a moment); TestMain closes them.
var benchStores struct {
	sync.Mutex
	byN  map[benchKind]*Store
	dirs []string
}

type benchKind struct {
	n      int
	scoped bool // see benchScopedStore
}

func benchStore(b *testing.B, n int) *Store { return openBenchStore(b, benchKind{n, false}) }

// benchScopedStore is benchStore with half of the entries limited to
// scopes: of entry i%4, 0 and 2 are full-access, 1 has the set {media}
// and 3 the set {games, media}.
func benchScopedStore(b *testing.B, n int) *Store { return openBenchStore(b, benchKind{n, true}) }

var benchSets = [][]string{nil, {"media"}, nil, {"games", "media"}}

func openBenchStore(b *testing.B, kind benchKind) *Store {
	benchStores.Lock()
	defer benchStores.Unlock()
	if s := benchStores.byN[kind]; s != nil {
		return s
	}
	dir, err := os.MkdirTemp("", "store-bench")
	if err != nil {
		b.Fatal(err)
	}
	benchStores.dirs = append(benchStores.dirs, dir)
	s, err := Open(Options{Path: filepath.Join(dir, "whitelist.json"), MaxEntries: 10_000_000, CleanupInterval: time.Hour, Now: newClock().Now})
	if err != nil {
		b.Fatal(err)
	}
	var setOf func(i int) []string
	if kind.scoped {
		setOf = func(i int) []string { return benchSets[i%4] }
	}
	s.bulkLoadIn(kind.n, setOf, mixedEntry)
	if benchStores.byN == nil {
		benchStores.byN = map[benchKind]*Store{}
	}
	benchStores.byN[kind] = s
	return s
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, s := range benchStores.byN {
		s.crash() // no final snapshot of millions of throwaway entries
	}
	for _, d := range benchStores.dirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

func BenchmarkAllowed(b *testing.B) {
	sizes := []struct {
		name string
		n    int
	}{{"1k", 1_000}, {"100k", 100_000}, {"1M", 1_000_000}}
	for _, kind := range []string{"exact", "cidr"} {
		for _, outcome := range []string{"hit", "miss"} {
			for _, size := range sizes {
				cidr, hit := kind == "cidr", outcome == "hit"
				for _, mode := range []string{"serial", "parallel"} {
					b.Run(fmt.Sprintf("%s/%s/%s/%s", kind, outcome, size.name, mode), func(b *testing.B) {
						s := benchStore(b, size.n)
						ips := probes(size.n, cidr, hit, 0)
						const mask = 1<<16 - 1
						for _, ip := range ips[:64] {
							if s.Allowed(ip, t0) != hit {
								b.Fatalf("Allowed(%s) = %v, want %v", ip, !hit, hit)
							}
						}
						b.ReportAllocs()
						b.ResetTimer()
						if mode == "serial" {
							for i := 0; b.Loop(); i++ {
								if s.Allowed(ips[i&mask], t0) != hit {
									b.Fatal("wrong answer")
								}
							}
							return
						}
						var seed atomic.Int64
						b.RunParallel(func(pb *testing.PB) {
							i := int(seed.Add(7919))
							for pb.Next() {
								if s.Allowed(ips[i&mask], t0) != hit {
									b.Error("wrong answer")
									return
								}
								i++
							}
						})
					})
				}
			}
		}
	}
}

// BenchmarkAllowedIn is BenchmarkAllowed for a gate of scope media on a
// whitelist where half of the entries are limited to scopes (see
// benchScopedStore): a hit is a full-access entry found first, or a miss
// in the full-access entries and a hit in a scoped set's; a miss probes
// the full-access entries and both sets containing media.
func BenchmarkAllowedIn(b *testing.B) {
	for _, kind := range []string{"exact", "cidr"} {
		for _, outcome := range []string{"hit", "miss"} {
			for _, size := range []struct {
				name string
				n    int
			}{{"1k", 1_000}, {"1M", 1_000_000}} {
				for _, mode := range []string{"serial", "parallel"} {
					b.Run(fmt.Sprintf("%s/%s/%s/%s", kind, outcome, size.name, mode), func(b *testing.B) {
						s := benchScopedStore(b, size.n)
						ips := probes(size.n, kind == "cidr", outcome == "hit", 0)
						hit := outcome == "hit"
						const mask = 1<<16 - 1
						scoped := 0
						for _, ip := range ips[:64] {
							if s.AllowedIn(ip, "media", t0) != hit {
								b.Fatalf("AllowedIn(%s, media) = %v, want %v", ip, !hit, hit)
							}
							if hit && !s.Allowed(ip, t0) {
								scoped++
							}
						}
						if hit && (scoped == 0 || scoped == 64) {
							b.Fatalf("%d of 64 hits are scoped grants, want a mix", scoped)
						}
						b.ReportAllocs()
						b.ResetTimer()
						if mode == "serial" {
							for i := 0; b.Loop(); i++ {
								if s.AllowedIn(ips[i&mask], "media", t0) != hit {
									b.Fatal("wrong answer")
								}
							}
							return
						}
						var seed atomic.Int64
						b.RunParallel(func(pb *testing.PB) {
							for i := int(seed.Add(7919)); pb.Next(); i++ {
								if s.AllowedIn(ips[i&mask], "media", t0) != hit {
									b.Error("wrong answer")
									return
								}
							}
						})
					})
				}
			}
		}
	}
}

// BenchmarkAllowedHotClients is BenchmarkAllowed/*/hit/1M with 1,024
// recurring clients instead of 65,536 addresses spread over the whole
// whitelist: their entries stay in the CPU caches, as on a real server.
func BenchmarkAllowedHotClients(b *testing.B) {
	for _, kind := range []string{"exact", "cidr"} {
		for _, mode := range []string{"serial", "parallel"} {
			b.Run(kind+"/1M/"+mode, func(b *testing.B) {
				s := benchStore(b, 1_000_000)
				ips := probes(1_000_000, kind == "cidr", true, 1024)
				const mask = 1<<16 - 1
				b.ReportAllocs()
				b.ResetTimer()
				if mode == "serial" {
					for i := 0; b.Loop(); i++ {
						if !s.Allowed(ips[i&mask], t0) {
							b.Fatal("wrong answer")
						}
					}
					return
				}
				var seed atomic.Int64
				b.RunParallel(func(pb *testing.PB) {
					for i := int(seed.Add(7919)); pb.Next(); i++ {
						if !s.Allowed(ips[i&mask], t0) {
							b.Error("wrong answer")
							return
						}
					}
				})
			})
		}
	}
}

// BenchmarkMemoryLatency is a yardstick for reading the figures above: one
// dependent read at a random position of a 48 MiB array (a cache and
// usually a TLB miss), about what a lookup in a million-entry table costs
// at least when its slot is not cached.
func BenchmarkMemoryLatency(b *testing.B) {
	const lines = 48 << 20 / 64
	next := make([]uint32, lines*16) // one used word per 64-byte line
	order := mathrand.Perm(lines)
	for i, line := range order {
		next[line*16] = uint32(order[(i+1)%lines] * 16)
	}
	p := uint32(order[0] * 16)
	b.ResetTimer()
	for b.Loop() {
		p = next[p]
	}
	benchSink = p
}

var benchSink uint32

func BenchmarkGrantDurable(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"100", 100}, {"100k", 100_000}} {
		for _, mode := range []string{"serial", "parallel"} {
			b.Run(size.name+"/"+mode, func(b *testing.B) {
				s, err := Open(Options{
					Path:            filepath.Join(b.TempDir(), "whitelist.json"),
					MaxEntries:      10_000_000,
					CleanupInterval: time.Hour,
					Now:             newClock().Now,
					Logger:          zap.NewNop(),
				})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { s.crash() })
				s.bulkLoad(size.n, mixedEntry)
				var next atomic.Uint64
				grant := func() {
					p := netip.PrefixFrom(v6(0x20010db8ffff0000, next.Add(1)), 128)
					if _, err := s.Grant(p, t0+3600); err != nil {
						b.Error(err)
					}
				}
				fsyncs := s.fsyncs.Load()
				b.ReportAllocs()
				b.ResetTimer()
				if mode == "serial" {
					for b.Loop() {
						grant()
					}
				} else {
					b.SetParallelism(32) // many concurrent knocks per core
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							grant()
						}
					})
				}
				b.StopTimer()
				b.ReportMetric(float64(s.fsyncs.Load()-fsyncs)/float64(b.N), "fsyncs/op")
			})
		}
	}
}

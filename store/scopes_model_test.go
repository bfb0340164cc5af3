package store

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// TestScopesAgainstModel drives a store with random grants of random scope
// sets, revocations, sweeps, crashes and restarts, and after every step
// compares Allowed, AllowedIn, MatchIn and Grants with a plain model.
func TestScopesAgainstModel(t *testing.T) {
	prefixes := []string{"10.0.0.0/16", "10.0.1.0/24", "10.0.1.1", "10.0.1.2", "10.0.2.0/24", "2001:db8::/64", "2001:db8::1"}
	sets := [][]string{nil, {"a"}, {"b"}, {"a", "b"}}
	addrs := []string{"10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.2.9", "10.0.3.3", "10.1.0.1", "2001:db8::1", "2001:db8::2", "2001:db9::1", "::ffff:10.0.1.1"}
	scopes := []string{"", "a", "b", "c"}

	type key struct {
		prefix netip.Prefix
		set    string // joined
	}
	model := map[key]int64{}
	// best returns the model's MatchIn answers as grantString shows them:
	// the admitting grants with the latest expiry, longest prefix and, among
	// those, the full one if there is one; several when scoped sets tie.
	best := func(ip netip.Addr, scope string, now int64) []string {
		ip = ip.Unmap()
		var out []string
		var bestExp int64
		bestBits, bestFull := -1, false
		for k, exp := range model {
			admits := k.set == "" || scope != "" && slices.Contains(strings.Split(k.set, ","), scope)
			if !admits || exp <= now || !k.prefix.Contains(ip) {
				continue
			}
			full, bits := k.set == "", k.prefix.Bits()
			e := Entry{Prefix: k.prefix, Expires: exp}
			if !full {
				e.Scopes = strings.Split(k.set, ",")
			}
			switch {
			case exp > bestExp || exp == bestExp && (bits > bestBits || bits == bestBits && full && !bestFull):
				out, bestExp, bestBits, bestFull = []string{grantString(e)}, exp, bits, full
			case exp == bestExp && bits == bestBits && full == bestFull:
				out = append(out, grantString(e))
			}
		}
		return out
	}

	e := newEnv(t)
	s := e.open()
	r := rand.New(rand.NewPCG(5, 6))
	steps := 2000
	if testing.Short() || raceEnabled {
		steps = 600
	}
	for step := range steps {
		now := e.clock.Unix()
		switch op := r.IntN(100); {
		case op < 60:
			p := mustPrefix(t, prefixes[r.IntN(len(prefixes))])
			set := sets[r.IntN(len(sets))]
			exp := now + 1 + r.Int64N(100)
			if _, err := s.GrantWith(p, exp, GrantOptions{Scopes: set}); err != nil {
				t.Fatalf("step %d: grant: %v", step, err)
			}
			model[key{p, strings.Join(set, ",")}] = exp
		case op < 75:
			p := mustPrefix(t, prefixes[r.IntN(len(prefixes))])
			n, err := s.Revoke(p)
			want := 0
			for k := range model {
				if k.prefix == p {
					delete(model, k)
					want++
				}
			}
			if err != nil || n != want {
				t.Fatalf("step %d: Revoke(%v) = %d, %v; model held %d", step, p, n, err, want)
			}
		case op < 90:
			e.clock.Advance(r.IntN(20))
		default:
			switch {
			case op < 95:
				if _, err := s.Sweep(); err != nil {
					t.Fatal(err)
				}
			case op < 98:
				s.crash()
				s = e.open()
			default:
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				s = e.open()
			}
			for k, exp := range model { // Sweep and Open drop expired grants
				if exp <= now {
					delete(model, k)
				}
			}
		}
		now = e.clock.Unix()
		for _, a := range addrs {
			ip := netip.MustParseAddr(a)
			for _, scope := range scopes {
				want := best(ip, scope, now)
				ok := len(want) > 0
				if got := s.AllowedIn(ip, scope, now); got != ok {
					t.Fatalf("step %d: AllowedIn(%s, %q) = %v, model %q", step, a, scope, got, want)
				}
				if scope == "" && s.Allowed(ip, now) != ok {
					t.Fatalf("step %d: Allowed(%s) = %v, model %q", step, a, !ok, want)
				}
				if m, found := s.MatchIn(ip, scope, now); found != ok || found && !slices.Contains(want, grantString(m)) {
					t.Fatalf("step %d: MatchIn(%s, %q) = %s %v, model %q", step, a, scope, grantString(m), found, want)
				}
			}
		}
		var want []string
		for k, exp := range model {
			if exp <= now {
				continue
			}
			want = append(want, grantString(Entry{Prefix: k.prefix, Expires: exp, Scopes: strings.Split(k.set, ",")}))
		}
		slices.Sort(want)
		if got := grantStrings(t, s, now); !slices.Equal(got, want) {
			t.Fatalf("step %d: grants\n got %q\nwant %q", step, got, want)
		}
	}
}

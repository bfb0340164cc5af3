//go:build linux

package main

import (
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// These tests check the parsers and generators only; no timing is asserted.

const wrkDeny = `Running 5s test @ http://127.0.0.1:18401/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.83ms   23.80ms 229.89ms   96.55%
    Req/Sec    15.93k     5.69k   26.53k    62.50%
  Latency Distribution
     50%    1.54ms
     75%    4.05ms
     90%    9.03ms
     99%  159.55ms
  77948 requests in 5.06s, 7.43MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 77948
Requests/sec:  15396.77
Transfer/sec:      1.47MB
`

func TestParseWrk(t *testing.T) {
	var r wrkResult
	if err := parseWrk(wrkDeny, &r); err != nil {
		t.Fatal(err)
	}
	want := wrkResult{Requests: 77948, RPS: 15396.77, Non2xx: 77948, Read: 2, Timeout: 3,
		P50: 1540 * time.Microsecond, P75: 4050 * time.Microsecond, P90: 9030 * time.Microsecond, P99: 159550 * time.Microsecond}
	if r.Requests != want.Requests || r.RPS != want.RPS || r.Non2xx != want.Non2xx || r.Read != 2 || r.Timeout != 3 ||
		r.P50 != want.P50 || r.P75 != want.P75 || r.P90 != want.P90 || r.P99 != want.P99 || math.Abs(r.Seconds-5.06) > 1e-9 {
		t.Fatalf("parsed %+v", r)
	}
	if err := checkAnswers("deny", &r, true); err != nil {
		t.Fatalf("all-401 run on the deny path: %v", err)
	}
	if err := checkAnswers("allow", &r, false); err == nil {
		t.Fatal("all-401 run accepted where 200s were expected")
	}
	if err := parseWrk(strings.Replace(wrkDeny, "  Latency Distribution\n", "", 1)[:200], &r); err == nil {
		t.Fatal("truncated output accepted")
	}
	var us wrkResult
	if err := parseWrk(strings.ReplaceAll(strings.Replace(wrkDeny, "1.54ms", "431.00us", 1), "5.06s", "1.00m"), &us); err != nil || us.P50 != 431*time.Microsecond || us.Seconds != 60 {
		t.Fatalf("units: %v %+v", err, us)
	}
}

const peekOut = `File: caddy
Type: cpu
Duration: 10.01s, Total samples = 7.82s (78.15%)
Showing nodes accounting for 7.81s, 99.87% of 7.82s total
----------------------------------------------------------+-------------
      flat  flat%   sum%        cum   cum%   calls calls% + context 	 	 
----------------------------------------------------------+-------------
                                             0.50s   100% |   github.com/caddyserver/caddy/v2/modules/caddyhttp.(*Route).ProvisionHandlers.wrapMiddleware.func1.1
         0     0%     0%      0.50s  6.39%                | github.com/caddy-knocker/knocker.(*Gate).ServeHTTP
                                             0.44s 88.00% |   github.com/caddyserver/caddy/v2/modules/caddyhttp.HandlerFunc.ServeHTTP
                                             0.03s  6.00% |   github.com/caddy-knocker/knocker.now
                                            20ms  4.00% |   github.com/caddy-knocker/knocker.(*App).clientIP
                                             0.01s  2.00% |   github.com/caddy-knocker/knocker.(*App).allowed
----------------------------------------------------------+-------------
`

const passOnBlock = `                                             0.44s   100% |   github.com/caddy-knocker/knocker.(*Gate).ServeHTTP
         0     0%     0%      0.44s  5.63%                | github.com/caddy-knocker/knocker.(*App).passOn
                                             0.44s   100% |   github.com/caddyserver/caddy/v2/modules/caddyhttp.HandlerFunc.ServeHTTP
----------------------------------------------------------+-------------
`

func TestGateShare(t *testing.T) {
	block, share := gateShare(peekOut, peekOut)
	if len(block) == 0 || math.Abs(share-0.06/7.82) > 1e-9 {
		t.Fatalf("share %v, block %d lines", share, len(block))
	}
	deny := strings.Replace(peekOut, "caddyhttp.HandlerFunc.ServeHTTP", "caddyhttp.Error", 1)
	if _, share := gateShare(deny, deny); math.Abs(share-0.50/7.82) > 1e-9 {
		t.Fatalf("deny path: share %v, want all of Gate.ServeHTTP", share)
	}
	// The next handler reached through passOn is not the gate's cost either.
	viaPassOn := strings.Replace(peekOut, "caddyhttp.HandlerFunc.ServeHTTP", "knocker.(*App).passOn", 1) + passOnBlock
	if _, share := gateShare(viaPassOn, viaPassOn); math.Abs(share-0.06/7.82) > 1e-9 {
		t.Fatalf("next handler through passOn: share %v, want %v", share, 0.06/7.82)
	}
	if _, share := gateShare("no totals", peekOut); share != -1 {
		t.Fatalf("share without totals: %v", share)
	}
}

func TestGrantGenerator(t *testing.T) {
	if err := checkGrantGenerator(1_000_000); err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Prefix]bool{}
	for i := range 200_000 {
		p := grantPrefix(i)
		if p != p.Masked() || seen[p] {
			t.Fatalf("grant %d: %s not canonical or duplicate", i, p)
		}
		seen[p] = true
		if !p.Contains(grantAddr(i)) {
			t.Fatalf("grantAddr(%d) = %s outside %s", i, grantAddr(i), p)
		}
	}
	for i, want := range map[int]string{0: "11.0.0.0", 4: "12.0.0.0/24", 5: "2001:db8:1::5", 9: "2001:db8:100::/64", 19: "2001:db8:100:1::/64"} {
		if got := canonical(grantPrefix(i)); got != want {
			t.Errorf("canonical(grant %d) = %s, want %s", i, got, want)
		}
	}
}

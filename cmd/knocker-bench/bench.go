//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-knocker/knocker/internal/testutil"
)

// The request-path cases.
var cases = []struct {
	ID, Title, Desc string
}{
	{"a", "unprotected", `respond "ok", no gate`},
	{"b", "knocker, whitelisted", "the knocker gate in-process; the client holds a grant, among the other grants"},
	{"c", "knocker, not whitelisted", "the knocker gate in-process; the client holds no grant: every answer is 401 (the deny path)"},
	{"d", "forward_auth → /verify", "Caddy's forward_auth to the plugin's own GET /verify on another loopback site of the same Caddy (the Python Knocker's architecture at its best); client whitelisted"},
}

// ports are the loopback ports of one Caddy: its sites (a), (b)/(c), the
// knock API, (d), and its admin API.
type ports struct{ a, b, knock, d, admin int }

// portSet is the i-th Caddy's ports: base+10i..base+10i+3 and base+10i+9
// (0: every part's Caddy; 1-3: the cluster part's nodes).
func portSet(base, i int) ports {
	p := base + 10*i
	return ports{a: p, b: p + 1, knock: p + 2, d: p + 3, admin: p + 9}
}

func (ps ports) list() []int { return []int{ps.a, ps.b, ps.knock, ps.d, ps.admin} }

type bench struct {
	o     *options
	work  string // removed at exit
	out   string // kept: raw outputs
	key   string
	ports ports
	m     machine

	res results
}

// results is everything the run measured.
type results struct {
	Started  time.Time
	Finished time.Time
	Rounds   map[string][]*wrkResult // per case, one per round
	Knocks   []knockResult
	Starts   []startResult
	Reloads  []time.Duration
	// ReloadStart is the start-up of the Caddy used for the reloads.
	ReloadStart  startTimes
	ReloadChecks []string
	Checks       []string // functional checks that passed
	Micro        *microResult
	Cluster      *clusterResult // the cluster part, if it ran
	Profiles     []*profileResult
	ErrorLogs    map[string]int // Caddy log lines at level error, per Caddy run
	MainCaddy    string         // the Caddyfile of the request-path run
}

type knockResult struct {
	Grants int
	Conns  int
	Res    *wrkResult
	Warm   *wrkResult
	// Knocked is an address the measured run knocked (checked admitted).
	Knocked string
}

type startResult struct {
	Grants   int
	Loaded   int // entries the knocker app reported at start
	Startup  startTimes
	RSS      int64
	HWM      int64
	HeapInGC int64 // Go HeapInuse after a forced GC
	Stop     time.Duration
}

func newBench(ctx context.Context, o *options) (*bench, error) {
	b := &bench{o: o, res: results{Rounds: map[string][]*wrkResult{}, ErrorLogs: map[string]int{}}}
	if _, err := exec.LookPath("wrk"); err != nil {
		return nil, fmt.Errorf("wrk is not installed: apt-get install -y wrk (scripts/bench.sh does it when run as root)")
	}
	var err error
	if b.work, err = os.MkdirTemp(o.tmpParent, "knocker-bench-work-"); err != nil {
		return nil, err
	}
	registerDir(b.work)
	if o.outDir == "" {
		if b.out, err = os.MkdirTemp("", "knocker-bench-results-"); err != nil {
			return nil, err
		}
	} else {
		b.out, _ = filepath.Abs(o.outDir)
		if err := os.MkdirAll(b.out, 0o755); err != nil {
			return nil, err
		}
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	b.key = "bench-" + hex.EncodeToString(raw)

	b.ports = portSet(o.portBase, 0)
	used := b.ports.list()
	if o.phase("cluster") {
		used = append(used, natsPort(o.portBase))
		for i := 1; i <= 3; i++ {
			used = append(used, portSet(o.portBase, i).list()...)
		}
	}
	for _, port := range used {
		if !portFree(port) {
			return nil, fmt.Errorf("loopback port %d is in use; choose other ports with -port-base (BENCH_PORT_BASE); the run uses base..base+3 and base+9, and for the cluster part base+8 and base+10..base+39", port)
		}
	}
	if err := checkGrantGenerator(max(o.grantsOther, o.grantsBig, o.grantsSmall)); err != nil {
		return nil, err
	}
	b.m = readMachine(ctx, o, b.work)
	return b, nil
}

// caddyfile is the configuration of every Caddy this benchmark starts:
// loopback only, the loopback peer is a trusted proxy (strict mode), rate
// limits off (the knock runs send many knocks), max_entries above every
// store size used.
func (b *bench) caddyfile(whitelist, text string) string {
	return b.caddyfileAt(node{ports: b.ports}, whitelist, text)
}

// caddyfileAt is caddyfile for the Caddy n: on its ports, with its key
// max_ttl (default 1h) and its extra (a cluster block) last in the knocker
// global option.
func (b *bench) caddyfileAt(n node, whitelist, text string) string {
	ps, maxTTL := n.ports, n.maxTTL
	if maxTTL == "" {
		maxTTL = "1h"
	}
	global := testutil.Preamble{
		Admin:          fmt.Sprintf("127.0.0.1:%d", ps.admin),
		DefaultBind:    "127.0.0.1",
		GracePeriod:    "5s",
		TrustedProxies: "127.0.0.1/32 ::1/128",
		Knocker: &testutil.Knocker{
			WhitelistFile: whitelist,
			MaxEntries:    max(10_000_000, 2*b.o.grantsBig),
			Keys:          []testutil.Key{{Name: "admin", Secret: "{env.KNOCKER_BENCH_KEY}", MaxTTL: maxTTL, AllowRemoteWhitelist: true}},
			RateLimitsOff: true,
			Extra:         n.extra,
		},
	}
	return "# generated by cmd/knocker-bench\n" + global.String() + fmt.Sprintf(`
# (a) unprotected
http://:%[1]d {
	respond %[5]q
}

# (b), (c) the knocker gate, in-process
http://:%[2]d {
	knocker
	respond %[5]q
}

# the knock API: POST /knock, GET /verify, GET /health
http://:%[3]d {
	knock
}

# (d) forward_auth to the knock site's /verify (the Python Knocker's architecture)
http://:%[4]d {
	forward_auth 127.0.0.1:%[3]d {
		uri /verify
	}
	respond %[5]q
}
`, ps.a, ps.b, ps.knock, ps.d, text)
}

func (b *bench) url(port int, path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", port, path)
}

// startTimes are the times from the process start to the first 200 on
// /health (liveness: Caddy serves, whether or not the whitelist is loaded
// yet, since Caddy starts its apps in random order) and to the first 200 on
// /ready, which answers only once the knocker app has opened its store,
// i.e. all grants are loaded and enforced.
type startTimes struct{ Health, Ready time.Duration }

// node describes one Caddy: the name of its directory and log, its ports,
// its config's key max_ttl ("" for 1h) and addition (a cluster block), and
// its environment.
type node struct {
	name   string
	ports  ports
	maxTTL string
	extra  string
	env    []string
}

// startWith starts a Caddy on a fresh copy of the whitelist file src (or an
// empty whitelist) and waits for /health, then /ready.
func (b *bench) startWith(ctx context.Context, name, src, text string) (*caddyProc, startTimes, error) {
	n := node{name: name, ports: b.ports}
	dir, err := b.prepare(ctx, n, src, text)
	if err != nil {
		return nil, startTimes{}, err
	}
	return b.launch(ctx, n, dir, name)
}

// prepare makes the directory of a Caddy: a copy of the whitelist file src
// (or an empty whitelist) and its Caddyfile.
func (b *bench) prepare(ctx context.Context, n node, src, text string) (string, error) {
	dir, err := os.MkdirTemp(b.work, n.name+"-")
	if err != nil {
		return "", err
	}
	wl := filepath.Join(dir, "whitelist.json")
	if src == "" {
		err = os.WriteFile(wl, []byte("{}\n"), 0o600)
	} else {
		err = copyFile(src, wl)
	}
	if err != nil {
		return "", err
	}
	cf := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cf, []byte(b.caddyfileAt(n, wl, text)), 0o600); err != nil {
		return "", err
	}
	// Let the copy reach the disk so the start-up does not pay for it.
	_, _ = run(ctx, time.Minute, "", nil, "sync")
	return dir, nil
}

// launch starts Caddy on the Caddyfile in dir (made by prepare; a second
// launch on it restarts the same node, with its whitelist), logging to
// caddy-<logName>.log, and waits for /health, then /ready.
func (b *bench) launch(ctx context.Context, n node, dir, logName string) (*caddyProc, startTimes, error) {
	var st startTimes
	env := append([]string{"KNOCKER_BENCH_KEY=" + b.key}, n.env...)
	p, err := startCaddy(b.o.caddyBin, filepath.Join(dir, "Caddyfile"), dir, filepath.Join(b.out, "caddy-"+logName+".log"), env)
	if err != nil {
		return nil, st, err
	}
	if st.Health, err = p.waitHealthy(ctx, b.url(n.ports.knock, "/health"), 2*time.Minute); err == nil {
		st.Ready, err = p.waitHealthy(ctx, b.url(n.ports.knock, "/ready"), 2*time.Minute)
	}
	if err != nil {
		p.stop()
		return nil, st, err
	}
	return p, st, nil
}

// stopCaddy stops p, counts the error lines of its log and returns how long
// the stop took.
func (b *bench) stopCaddy(name string, p *caddyProc) time.Duration {
	t := time.Now()
	p.stop()
	d := time.Since(t)
	if logb, err := os.ReadFile(p.logPath); err == nil {
		b.res.ErrorLogs[name] = bytes.Count(logb, []byte(`"level":"error"`))
	}
	return d
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

var httpClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// request sends one request from the loopback peer, with X-Forwarded-For
// set to xff when not empty.
func request(method, url, xff string, hdr map[string]string, body []byte) (int, string, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(rb), err
}

// expect checks one real request and records the check.
func (b *bench) expect(what, method, url, xff string, wantStatus int, wantBody string) error {
	status, body, err := request(method, url, xff, nil, nil)
	if err != nil {
		return fmt.Errorf("check %q: %v", what, err)
	}
	if status != wantStatus || (wantBody != "" && body != wantBody) {
		return fmt.Errorf("check %q: GET %s with X-Forwarded-For %s answered %d %q, want %d %q", what, url, xff, status, trunc(body, 200), wantStatus, wantBody)
	}
	b.res.Checks = append(b.res.Checks, fmt.Sprintf("%s: %d", what, status))
	return nil
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func (b *bench) run(ctx context.Context) error {
	b.res.Started = time.Now()
	logf("raw outputs and Caddy logs: %s", b.out)
	logf("machine: %s, %d cores, %.1f GiB; load average %s; temp dir on %s", b.m.CPUModel, b.m.Cores, float64(b.m.MemTotal)/(1<<30), b.m.LoadStart, b.m.TmpFS)
	logf("%s; %s; caddy %s", b.m.GoVersion, b.m.Wrk, b.m.Caddy)

	// The Caddyfile must adapt, or nothing else is worth doing.
	cf := filepath.Join(b.work, "check.Caddyfile")
	if err := os.WriteFile(cf, []byte(b.caddyfile(filepath.Join(b.work, "none.json"), "ok")), 0o600); err != nil {
		return err
	}
	if out, err := run(ctx, time.Minute, "", nil, b.o.caddyBin, "adapt", "--config", cf, "--adapter", "caddyfile"); err != nil {
		return fmt.Errorf("the benchmark's Caddyfile does not adapt with %s: %v\n%s", b.o.caddyBin, err, out)
	}

	// Whitelist files, generated once.
	now := time.Now().Unix()
	files := map[string]string{}
	gen := func(name string, n int, extra ...string) error {
		path := filepath.Join(b.work, name+".json")
		t := time.Now()
		if err := writeWhitelist(path, n, now, extra...); err != nil {
			return fmt.Errorf("writing whitelist %s: %w", path, err)
		}
		logf("generated %s (%d grants%s) in %s", filepath.Base(path), n+len(extra), map[bool]string{true: " incl. the client", false: ""}[len(extra) > 0], time.Since(t).Round(time.Millisecond))
		files[name] = path
		return nil
	}
	for _, g := range []struct {
		name  string
		n     int
		extra []string
	}{
		{"main", b.o.grantsOther, []string{clientAllowed}},
		{"small", b.o.grantsSmall, nil},
		{"other", b.o.grantsOther, nil},
		{"big", b.o.grantsBig, nil},
		{"bigclient", b.o.grantsBig, []string{clientAllowed}},
	} {
		if err := gen(g.name, g.n, g.extra...); err != nil {
			return err
		}
	}

	if b.o.phase("request") {
		if err := b.requestPath(ctx, files["main"]); err != nil {
			return err
		}
	}
	if b.o.phase("knock") {
		if err := b.durableKnocks(ctx, files); err != nil {
			return err
		}
	}
	if b.o.phase("startup") {
		if err := b.startupMemory(ctx, files); err != nil {
			return err
		}
	}
	if b.o.phase("reload") {
		if err := b.reload(ctx, files["bigclient"]); err != nil {
			return err
		}
	}
	if b.o.phase("cluster") {
		if err := b.clusterMode(ctx, files); err != nil {
			return err
		}
	}
	if b.o.micro && b.o.phase("micro") {
		b.res.Micro = b.microBenchmarks(ctx)
	}
	b.res.Finished = time.Now()
	b.m.LoadEnd = loadAvg()
	return b.report()
}

// requestPath measures the cases (a)-(d) on one Caddy, in rounds of
// rotating order, after functional checks.
func (b *bench) requestPath(ctx context.Context, whitelist string) error {
	logf("request path: starting Caddy with %d grants (+ the client's)", b.o.grantsOther)
	p, _, err := b.startWith(ctx, "request-path", whitelist, "ok")
	if err != nil {
		return err
	}
	defer b.stopCaddy("request-path", p)
	b.res.MainCaddy = b.caddyfile("<temp dir>/whitelist.json", "ok")
	if err := b.checkLoaded(p, b.o.grantsOther+1); err != nil {
		return err
	}

	ua, ub, ud := b.url(b.ports.a, "/"), b.url(b.ports.b, "/"), b.url(b.ports.d, "/")
	verify := b.url(b.ports.knock, "/verify")
	checks := []struct {
		what, url, xff string
		status         int
		body           string
	}{
		{"(a) unprotected, any client", ua, clientDenied, 200, "ok"},
		{"(b) gate admits the whitelisted client", ub, clientAllowed, 200, "ok"},
		{"(c) gate denies a client without grant", ub, clientDenied, 401, ""},
		{"gate admits a generated exact IPv4 grant", ub, grantAddr(0).String(), 200, "ok"},
		{"gate admits an address in a generated IPv4 /24 grant", ub, grantAddr(4).String(), 200, "ok"},
		{"gate admits a generated exact IPv6 grant", ub, grantAddr(5).String(), 200, "ok"},
		{"gate admits an address in a generated IPv6 /64 grant", ub, grantAddr(9).String(), 200, "ok"},
		{"/verify admits the whitelisted client", verify, clientAllowed, 200, ""},
		{"/verify denies a client without grant", verify, clientDenied, 401, ""},
		{"(d) forward_auth admits the whitelisted client", ud, clientAllowed, 200, "ok"},
		{"(d) forward_auth denies a client without grant", ud, clientDenied, 401, ""},
		{"(d) forward_auth admits an address in a generated IPv6 /64 grant", ud, grantAddr(9).String(), 200, "ok"},
	}
	for _, c := range checks {
		if err := b.expect(c.what, http.MethodGet, c.url, c.xff, c.status, c.body); err != nil {
			return err
		}
	}
	logf("request path: %d functional checks passed", len(checks))

	target := map[string]struct {
		url, xff string
		deny     bool
	}{
		"a": {ua, clientAllowed, false},
		"b": {ub, clientAllowed, false},
		"c": {ub, clientDenied, true},
		"d": {ud, clientAllowed, false},
	}
	order := []string{"a", "b", "c", "d"}
	for r := range b.o.rounds {
		rot := append(slices.Clone(order[r%4:]), order[:r%4]...)
		for _, id := range rot {
			t := target[id]
			// One real request just before the measurement.
			want, body := 200, "ok"
			if t.deny {
				want, body = 401, ""
			}
			if err := b.expect(fmt.Sprintf("(%s) before round %d", id, r+1), http.MethodGet, t.url, t.xff, want, body); err != nil {
				return err
			}
			w := wrkRun{url: t.url, threads: b.o.threads, conns: b.o.conns, headers: []string{"X-Forwarded-For: " + t.xff}}
			if b.o.warmup > 0 {
				w.name, w.dur = fmt.Sprintf("case-%s-round%d-warmup", id, r+1), b.o.warmup
				if _, err := runWrk(ctx, w, b.o.wrkTimeout, b.out, 0); err != nil {
					return err
				}
			}
			w.name, w.dur = fmt.Sprintf("case-%s-round%d", id, r+1), b.o.duration
			res, err := runWrk(ctx, w, b.o.wrkTimeout, b.out, p.pid())
			if err != nil {
				return err
			}
			if err := checkAnswers(fmt.Sprintf("case (%s) round %d", id, r+1), res, t.deny); err != nil {
				return err
			}
			b.res.Rounds[id] = append(b.res.Rounds[id], res)
			logf("(%s) round %d: %.0f req/s, p50 %s, p99 %s, non-2xx %d, socket errors %d; Caddy %.1f µs CPU/req, %.0f%% CPU; wrk %.0f%% CPU",
				id, r+1, res.RPS, fmtDur(res.P50), fmtDur(res.P99), res.Non2xx, res.socketErrors(), res.caddyUsPerReq(), 100*res.CaddyCPU/res.Seconds, 100*res.WrkCPU/res.Seconds)
		}
	}
	ba, bd, ca := b.ratio("b", "a"), b.ratio("b", "d"), b.ratio("c", "a")
	logf("b/a = %.3f (goal >= 0.97), c/a = %.3f (goal >= 0.9), b/d = %.2f (goal >= 2.5); medians over rounds of the ratios within a round", ba, ca, bd)

	// Profiles: of (b) when asked or when a goal is missed; of the deny
	// path (c) too when asked.
	var profile []string
	switch {
	case b.o.pprofMode == "on":
		profile = []string{"b", "c"}
	case b.o.pprofMode == "auto" && (ba < 0.97 || bd < 2.5):
		profile = []string{"b"}
	case b.o.pprofMode == "auto" && ca < 0.9:
		profile = []string{"c"}
	}
	for _, id := range profile {
		prof, err := b.profile(ctx, id, target[id].url, target[id].xff)
		if err != nil {
			logf("profiling failed (the measurements stand): %v", err)
			continue
		}
		if prof.GateShare >= 0 {
			logf("profile of (%s): the gate itself (Gate.ServeHTTP without the next handler) takes %.2f%% of Caddy's CPU time", id, 100*prof.GateShare)
		}
		b.res.Profiles = append(b.res.Profiles, prof)
	}
	return nil
}

// checkAnswers makes sure wrk saw the expected answers: 2xx everywhere, or,
// on the deny path, non-2xx (401, checked by the request before) everywhere,
// with a tiny tolerance for the requests cut off when wrk stops.
func checkAnswers(what string, r *wrkResult, deny bool) error {
	tol := r.Requests / 10000 // 0.01%
	if r.socketErrors() > tol {
		return fmt.Errorf("%s: %d socket errors (connect %d, read %d, write %d, timeout %d) in %d requests; raw output %s",
			what, r.socketErrors(), r.Connect, r.Read, r.Write, r.Timeout, r.Requests, r.RawPath)
	}
	if deny {
		if ok := r.Requests - r.Non2xx; ok > tol {
			return fmt.Errorf("%s: %d of %d answers were 2xx/3xx on the deny path; raw output %s", what, ok, r.Requests, r.RawPath)
		}
		return nil
	}
	if r.Non2xx > tol {
		return fmt.Errorf("%s: %d of %d answers were not 2xx; raw output %s", what, r.Non2xx, r.Requests, r.RawPath)
	}
	return nil
}

// median returns, for one case, the per-metric medians over the rounds.
func (b *bench) median(id string) *wrkResult {
	rs := b.res.Rounds[id]
	if len(rs) == 0 {
		return &wrkResult{}
	}
	med := func(f func(*wrkResult) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		return medianF(v)
	}
	m := &wrkResult{
		RPS:      med(func(r *wrkResult) float64 { return r.RPS }),
		P50:      time.Duration(med(func(r *wrkResult) float64 { return float64(r.P50) })),
		P75:      time.Duration(med(func(r *wrkResult) float64 { return float64(r.P75) })),
		P90:      time.Duration(med(func(r *wrkResult) float64 { return float64(r.P90) })),
		P99:      time.Duration(med(func(r *wrkResult) float64 { return float64(r.P99) })),
		CaddyCPU: med(func(r *wrkResult) float64 { return r.CaddyCPU / r.Seconds }),
		WrkCPU:   med(func(r *wrkResult) float64 { return r.WrkCPU / r.Seconds }),
		Seconds:  1,
	}
	for _, r := range rs {
		m.Requests += r.Requests
		m.Non2xx += r.Non2xx
		m.Connect += r.Connect
		m.Read += r.Read
		m.Write += r.Write
		m.Timeout += r.Timeout
	}
	return m
}

// ratio is the throughput ratio of two cases: the median over rounds of the
// ratio within each round. Cases of one round run back to back, so pairing
// them cancels most of the drift of a shared, noisy machine (a busy stretch
// lowers both); the ratio of the medians is reported beside it.
func (b *bench) ratio(x, y string) float64 {
	var v []float64
	for i, rx := range b.res.Rounds[x] {
		if i < len(b.res.Rounds[y]) && b.res.Rounds[y][i].RPS > 0 {
			v = append(v, rx.RPS/b.res.Rounds[y][i].RPS)
		}
	}
	return medianF(v)
}

// usPerReq is the median over rounds of Caddy's CPU µs per request.
func (b *bench) usPerReq(id string) float64 {
	var v []float64
	for _, r := range b.res.Rounds[id] {
		v = append(v, r.caddyUsPerReq())
	}
	return medianF(v)
}

func medianF(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianD(v []time.Duration) time.Duration {
	f := make([]float64, len(v))
	for i, d := range v {
		f[i] = float64(d)
	}
	return time.Duration(medianF(f))
}

var reEntries = regexp.MustCompile(`"msg":"knocker started".*?"entries":(\d+)`)

// checkLoaded makes sure the knocker app reported the expected number of
// entries at start (so a truncated or trimmed whitelist cannot go unnoticed).
func (b *bench) checkLoaded(p *caddyProc, want int) error {
	n, err := loadedEntries(p)
	if err != nil {
		return err
	}
	if n != want {
		return fmt.Errorf("knocker started with %d entries, want %d (see %s)", n, want, p.logPath)
	}
	b.res.Checks = append(b.res.Checks, fmt.Sprintf("store loaded %d entries", n))
	return nil
}

func loadedEntries(p *caddyProc) (int, error) {
	// The app logs this line in Start, which may come just after the
	// first /health answer; give it a moment.
	for i := 0; i < 100; i++ {
		logb, err := os.ReadFile(p.logPath)
		if err != nil {
			return 0, err
		}
		if m := reEntries.FindSubmatch(logb); m != nil {
			return strconv.Atoi(string(m[1]))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, fmt.Errorf("no \"knocker started\" line with entries in %s", p.logPath)
}

// durableKnocks measures POST /knock throughput with a small and a large
// store, at each concurrency, each on a fresh Caddy.
func (b *bench) durableKnocks(ctx context.Context, files map[string]string) error {
	script := filepath.Join(b.work, "knock.lua")
	if err := os.WriteFile(script, []byte(knockLua), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(b.out, "knock.lua"), []byte(knockLua), 0o644); err != nil {
		return err
	}
	for _, size := range []struct {
		file string
		n    int
	}{{files["small"], b.o.grantsSmall}, {files["other"], b.o.grantsOther}} {
		for _, conns := range b.o.knockConns {
			name := fmt.Sprintf("knock-%d-grants-c%d", size.n, conns)
			logf("durable knocks: %d grants stored, concurrency %d", size.n, conns)
			p, _, err := b.startWith(ctx, name, size.file, "ok")
			if err != nil {
				return err
			}
			kr, err := b.knockRun(ctx, p, b.ports, 10, name, size.n, conns, script)
			b.stopCaddy(name, p)
			if err != nil {
				return err
			}
			b.res.Knocks = append(b.res.Knocks, *kr)
			logf("durable knocks: %d grants, c=%d: %.0f knocks/s, p50 %s, p99 %s, non-2xx %d",
				size.n, conns, kr.Res.RPS, fmtDur(kr.Res.P50), fmtDur(kr.Res.P99), kr.Res.Non2xx)
		}
	}
	return nil
}

// knockRun measures knocks on the Caddy p, listening on ps, whose store
// holds grants entries; the knocked addresses are in net.0.0.0/8.
func (b *bench) knockRun(ctx context.Context, p *caddyProc, ps ports, net int, name string, grants, conns int, script string) (*knockResult, error) {
	if err := b.checkLoaded(p, grants); err != nil {
		return nil, err
	}
	// One real knock first.
	knockURL := b.url(ps.knock, "/knock")
	first := fmt.Sprintf("%d.254.0.1", net)
	if err := b.knockOnce(knockURL, first); err != nil {
		return nil, fmt.Errorf("knock check: %v", err)
	}
	if err := b.expect("a knocked client is admitted by the gate", http.MethodGet, b.url(ps.b, "/"), first, 200, "ok"); err != nil {
		return nil, err
	}
	threads := min(b.o.threads, conns)
	w := wrkRun{url: knockURL, threads: threads, conns: conns, script: script, env: []string{"KNOCKER_BENCH_KEY=" + b.key}}
	kr := &knockResult{Grants: grants, Conns: conns}
	var err error
	if b.o.warmup > 0 {
		// The warm-up re-knocks a few addresses: it extends grants
		// without growing the store.
		w.name, w.dur, w.args = name+"-warmup", b.o.warmup, []string{strconv.Itoa(max(conns, 8)), strconv.Itoa(net)}
		if kr.Warm, err = runWrk(ctx, w, b.o.wrkTimeout, b.out, 0); err != nil {
			return nil, err
		}
		if err := checkAnswers(name+" warm-up", kr.Warm, false); err != nil {
			return nil, err
		}
	}
	w.name, w.dur, w.args = name, b.o.duration, []string{"0", strconv.Itoa(net)}
	if kr.Res, err = runWrk(ctx, w, b.o.wrkTimeout, b.out, p.pid()); err != nil {
		return nil, err
	}
	if err := checkAnswers(name, kr.Res, false); err != nil {
		return nil, fmt.Errorf("durable knocks must all answer 200: %w", err)
	}
	// An address the run knocked (thread 0 counts up from net.0.0.0; wrk
	// may consume the first few values itself) is now admitted.
	n := min(kr.Res.Requests/int64(2*threads), 1000)
	kr.Knocked = fmt.Sprintf("%d.0.%d.%d", net, n/256, n%256)
	if err := b.expect("a client knocked by wrk is admitted by the gate", http.MethodGet, b.url(ps.b, "/"), kr.Knocked, 200, "ok"); err != nil {
		return nil, err
	}
	return kr, nil
}

// knockOnce POSTs /knock at url for the client xff with the admin key and
// checks the 200 and the entry it whitelisted.
func (b *bench) knockOnce(url, xff string) error {
	status, body, err := request(http.MethodPost, url, xff, map[string]string{"X-Api-Key": b.key}, nil)
	if err != nil {
		return err
	}
	return checkKnock(status, body, xff)
}

func checkKnock(status int, body, xff string) error {
	var kb struct {
		Entry string `json:"whitelisted_entry"`
	}
	if status != 200 || json.Unmarshal([]byte(body), &kb) != nil || kb.Entry != xff {
		return fmt.Errorf("POST /knock with X-Forwarded-For %s answered %d %q, want 200 with whitelisted_entry %s", xff, status, trunc(body, 300), xff)
	}
	return nil
}

// startupMemory measures start-up time (process start to the first 200 on
// /health) and resident memory after a settle time, with 0, the request-path
// store size and the big store size.
func (b *bench) startupMemory(ctx context.Context, files map[string]string) error {
	for _, size := range []struct {
		file string
		n    int
	}{{"", 0}, {files["other"], b.o.grantsOther}, {files["big"], b.o.grantsBig}} {
		for s := range b.o.starts {
			name := fmt.Sprintf("start-%d-grants-%d", size.n, s+1)
			p, d, err := b.startWith(ctx, name, size.file, "ok")
			if err != nil {
				return err
			}
			r := startResult{Grants: size.n, Startup: d}
			if r.Loaded, err = loadedEntries(p); err != nil {
				b.stopCaddy(name, p)
				return err
			}
			if r.Loaded != size.n {
				b.stopCaddy(name, p)
				return fmt.Errorf("knocker started with %d entries, want %d (see %s)", r.Loaded, size.n, p.logPath)
			}
			select {
			case <-ctx.Done():
				b.stopCaddy(name, p)
				return ctx.Err()
			case <-time.After(b.o.settle):
			}
			st, err := procStatus(p.pid(), "VmRSS", "VmHWM")
			if err != nil {
				b.stopCaddy(name, p)
				return err
			}
			r.RSS, r.HWM = st["VmRSS"], st["VmHWM"]
			r.HeapInGC = b.heapInuseAfterGC()
			r.Stop = b.stopCaddy(name, p)
			b.res.Starts = append(b.res.Starts, r)
			logf("start-up with %d grants (#%d): %s to the first /health 200, %s to /ready, VmRSS %.1f MiB (peak %.1f MiB), Go heap in use after GC %.1f MiB, stop %s",
				size.n, s+1, d.Health.Round(time.Millisecond), d.Ready.Round(time.Millisecond), mib(r.RSS), mib(r.HWM), mib(r.HeapInGC), r.Stop.Round(time.Millisecond))
		}
	}
	return nil
}

var reHeapInuse = regexp.MustCompile(`(?m)^# HeapInuse = (\d+)`)

// heapInuseAfterGC asks Caddy's admin API for a heap profile after a GC and
// returns HeapInuse (0 if unavailable): what the live data occupies, without
// garbage the runtime has not yet returned to the OS.
func (b *bench) heapInuseAfterGC() int64 {
	status, body, err := request(http.MethodGet, b.url(b.ports.admin, "/debug/pprof/heap?gc=1&debug=1"), "", nil, nil)
	if err != nil || status != 200 {
		return 0
	}
	m := reHeapInuse.FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// reload measures config reloads through the admin API with the big store:
// POST a changed config (adapted beforehand, as `caddy reload` does) to
// /load and time the 200; then check the grants are still honoured.
func (b *bench) reload(ctx context.Context, whitelist string) error {
	name := "reload"
	logf("reload: starting Caddy with %d grants (+ the client's)", b.o.grantsBig)
	p, d, err := b.startWith(ctx, name, whitelist, "ok")
	if err != nil {
		return err
	}
	defer b.stopCaddy(name, p)
	b.res.ReloadStart = d
	if err := b.checkLoaded(p, b.o.grantsBig+1); err != nil {
		return err
	}
	// The whitelist path of the running config, so the reloaded config
	// names the same store.
	cfb, err := os.ReadFile(p.cmd.Args[3])
	if err != nil {
		return err
	}
	wl := regexp.MustCompile(`whitelist_file (\S+)`).FindSubmatch(cfb)
	if wl == nil {
		return fmt.Errorf("no whitelist_file in %s", p.cmd.Args[3])
	}
	recorded := false
	check := func(when, text string) error {
		defer func() { recorded = true }()
		for _, c := range []struct {
			what, url, xff string
			status         int
			body           string
		}{
			{when + ": the whitelisted client is admitted", b.url(b.ports.b, "/"), clientAllowed, 200, text},
			{when + ": a client without grant is denied", b.url(b.ports.b, "/"), clientDenied, 401, ""},
			{when + ": a generated exact IPv4 grant is honoured", b.url(b.ports.b, "/"), grantAddr(0).String(), 200, text},
			{when + ": a generated IPv4 /24 grant is honoured", b.url(b.ports.b, "/"), grantAddr(b.o.grantsBig - 6).String(), 200, text},
			{when + ": a generated exact IPv6 grant is honoured", b.url(b.ports.b, "/"), grantAddr(b.o.grantsBig - 5).String(), 200, text},
			{when + ": a generated IPv6 /64 grant is honoured", b.url(b.ports.b, "/"), grantAddr(b.o.grantsBig - 1).String(), 200, text},
			{when + ": forward_auth admits the whitelisted client", b.url(b.ports.d, "/"), clientAllowed, 200, text},
		} {
			if err := b.expect(c.what, http.MethodGet, c.url, c.xff, c.status, c.body); err != nil {
				return err
			}
			if !recorded {
				b.res.ReloadChecks = append(b.res.ReloadChecks, strings.TrimPrefix(c.what, when+": "))
			}
		}
		return nil
	}
	if err := check("before the reloads", "ok"); err != nil {
		return err
	}
	for r := range b.o.reloads {
		text := fmt.Sprintf("ok (config %d)", r+1)
		cf := filepath.Join(b.work, fmt.Sprintf("reload-%d.Caddyfile", r+1))
		if err := os.WriteFile(cf, []byte(b.caddyfile(string(wl[1]), text)), 0o600); err != nil {
			return err
		}
		js, err := run(ctx, time.Minute, "", nil, b.o.caddyBin, "adapt", "--config", cf, "--adapter", "caddyfile")
		if err != nil {
			return fmt.Errorf("caddy adapt: %v\n%s", err, js)
		}
		client := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
		t := time.Now()
		resp, err := client.Post(b.url(b.ports.admin, "/load"), "application/json", strings.NewReader(js))
		if err != nil {
			return fmt.Errorf("reload %d: POST /load: %v", r+1, err)
		}
		rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		took := time.Since(t)
		if resp.StatusCode != 200 {
			return fmt.Errorf("reload %d: POST /load answered %d: %s", r+1, resp.StatusCode, rb)
		}
		b.res.Reloads = append(b.res.Reloads, took)
		logf("reload %d with %d grants: %s", r+1, b.o.grantsBig+1, took.Round(100*time.Microsecond))
		if err := check(fmt.Sprintf("after reload %d", r+1), text); err != nil {
			return err
		}
	}
	if p.exited() {
		return fmt.Errorf("caddy exited during the reloads: %s", p.logTail())
	}
	return nil
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.0f µs", float64(d)/1e3)
	}
}

//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// wrkRun describes one wrk invocation.
type wrkRun struct {
	name    string // file name of the raw output
	url     string
	threads int
	conns   int
	dur     time.Duration
	headers []string
	script  string   // Lua script, optional
	args    []string // script arguments (after --)
	env     []string
}

// wrkResult is what wrk reported, plus the CPU time Caddy and wrk used.
type wrkResult struct {
	Requests  int64
	Seconds   float64
	RPS       float64
	P50       time.Duration
	P75       time.Duration
	P90       time.Duration
	P99       time.Duration
	Non2xx    int64
	Connect   int64
	Read      int64
	Write     int64
	Timeout   int64
	CaddyCPU  float64 // seconds of CPU Caddy used during the run
	WrkCPU    float64 // seconds of CPU wrk used
	RawPath   string
	WallClock time.Duration
}

func (r *wrkResult) socketErrors() int64 { return r.Connect + r.Read + r.Write + r.Timeout }

// caddyUsPerReq is Caddy's CPU time per request, in microseconds: less
// sensitive to a noisy machine than requests/s.
func (r *wrkResult) caddyUsPerReq() float64 {
	if r.Requests == 0 {
		return 0
	}
	return r.CaddyCPU / float64(r.Requests) * 1e6
}

// runWrk runs wrk with a deadline, saves its output under outDir and parses
// it. caddyPid, if not 0, is the process whose CPU time is measured.
func runWrk(ctx context.Context, w wrkRun, wrkTimeout time.Duration, outDir string, caddyPid int) (*wrkResult, error) {
	args := []string{
		"-t", strconv.Itoa(w.threads),
		"-c", strconv.Itoa(w.conns),
		"-d", fmt.Sprintf("%ds", int(w.dur.Round(time.Second)/time.Second)),
		"--timeout", fmt.Sprintf("%ds", max(1, int(wrkTimeout/time.Second))),
		"--latency",
	}
	for _, h := range w.headers {
		args = append(args, "-H", h)
	}
	if w.script != "" {
		args = append(args, "-s", w.script)
	}
	args = append(args, w.url)
	if len(w.args) > 0 {
		args = append(append(args, "--"), w.args...)
	}
	limit := w.dur + wrkTimeout + 30*time.Second
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(cctx, "wrk", args...)
	cmd.Env = append(os.Environ(), w.env...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.SysProcAttr = childAttrs()
	cmd.Cancel = func() error { killGroup(cmd); return nil }
	cmd.WaitDelay = 5 * time.Second

	var cpu0 float64
	if caddyPid != 0 {
		var err error
		if cpu0, err = cpuSeconds(caddyPid); err != nil {
			return nil, fmt.Errorf("reading Caddy's CPU time: %w", err)
		}
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting wrk: %w", err)
	}
	register(cmd)
	err := cmd.Wait()
	unregister(cmd)
	wall := time.Since(start)
	res := &wrkResult{WallClock: wall}
	if caddyPid != 0 {
		cpu1, cerr := cpuSeconds(caddyPid)
		if cerr != nil {
			return nil, fmt.Errorf("reading Caddy's CPU time (did Caddy die?): %w", cerr)
		}
		res.CaddyCPU = cpu1 - cpu0
	}
	if cmd.ProcessState != nil {
		res.WrkCPU = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	}
	out := buf.String()
	res.RawPath = fmt.Sprintf("%s/%s.txt", outDir, w.name)
	raw := "$ wrk " + shellJoin(args) + "\n" + out
	if err := os.WriteFile(res.RawPath, []byte(raw), 0o644); err != nil {
		return nil, err
	}
	if cctx.Err() == context.DeadlineExceeded {
		return nil, fmt.Errorf("wrk %s: no result within %s (output: %s)", w.name, limit, res.RawPath)
	}
	if err != nil {
		return nil, fmt.Errorf("wrk %s: %v\n%s", w.name, err, out)
	}
	if err := parseWrk(out, res); err != nil {
		return nil, fmt.Errorf("wrk %s: %v (output: %s)", w.name, err, res.RawPath)
	}
	return res, nil
}

var (
	reReqs    = regexp.MustCompile(`(?m)^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)`)
	reRPS     = regexp.MustCompile(`(?m)^Requests/sec:\s*([\d.]+)`)
	reNon2xx  = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses:\s*(\d+)`)
	reSockErr = regexp.MustCompile(`(?m)^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	rePct     = regexp.MustCompile(`(?m)^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$`)
)

func parseUnit(v, unit string) (time.Duration, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, err
	}
	mult := map[string]float64{"us": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}[unit]
	return time.Duration(f * mult), nil
}

func parseWrk(out string, r *wrkResult) error {
	m := reReqs.FindStringSubmatch(out)
	if m == nil {
		return fmt.Errorf("no 'N requests in' line in wrk output")
	}
	r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	d, err := parseUnit(m[2], m[3])
	if err != nil {
		return err
	}
	r.Seconds = d.Seconds()
	if m := reRPS.FindStringSubmatch(out); m != nil {
		r.RPS, _ = strconv.ParseFloat(m[1], 64)
	} else {
		return fmt.Errorf("no Requests/sec line in wrk output")
	}
	if m := reNon2xx.FindStringSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reSockErr.FindStringSubmatch(out); m != nil {
		r.Connect, _ = strconv.ParseInt(m[1], 10, 64)
		r.Read, _ = strconv.ParseInt(m[2], 10, 64)
		r.Write, _ = strconv.ParseInt(m[3], 10, 64)
		r.Timeout, _ = strconv.ParseInt(m[4], 10, 64)
	}
	found := 0
	for _, m := range rePct.FindAllStringSubmatch(out, -1) {
		d, err := parseUnit(m[2], m[3])
		if err != nil {
			return err
		}
		switch m[1] {
		case "50":
			r.P50 = d
		case "75":
			r.P75 = d
		case "90":
			r.P90 = d
		case "99":
			r.P99 = d
		}
		found++
	}
	if found < 4 {
		return fmt.Errorf("no latency distribution in wrk output (--latency)")
	}
	if r.Requests == 0 {
		return fmt.Errorf("wrk completed no request")
	}
	return nil
}

func shellJoin(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a == "" || strings.ContainsAny(a, " \t'\"$\\*?;&|<>()") {
			b.WriteString("'" + strings.ReplaceAll(a, "'", `'\''`) + "'")
		} else {
			b.WriteString(a)
		}
	}
	return b.String()
}

// knockLua POSTs /knock with the admin key (from $KNOCKER_BENCH_KEY) and no
// body, so each knock whitelists its own client IP, which comes through
// X-Forwarded-For from the trusted loopback peer. Each request gets a
// distinct address in 10.0.0.0/8 (thread t counts from t*2^22), so every
// knock adds a new grant. With a first script argument n > 0 (the warm-up),
// the requests cycle over n addresses in 10.255.255.0/24 instead, which only
// extends those grants and leaves the store's size alone. A second argument
// replaces the first octet 10 (the cluster part gives each run its own /8).
const knockLua = `-- generated by cmd/knocker-bench
local key = os.getenv("KNOCKER_BENCH_KEY")
local threads = {}
local span = 0
local net = 10
local counter = 0

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  span = tonumber(args[1] or "0") or 0
  net = tonumber(args[2] or "10") or 10
  counter = 0
end

function request()
  local n
  if span > 0 then
    n = 16776960 + (counter % span)  -- net.255.255.x
  else
    n = (id or 0) * 4194304 + counter
  end
  counter = counter + 1
  local ip = string.format("%d.%d.%d.%d", net, math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  return wrk.format("POST", "/knock", {["X-Api-Key"] = key, ["X-Forwarded-For"] = ip}, nil)
end
`

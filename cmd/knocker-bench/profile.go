//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// profileResult is a CPU profile of Caddy taken under the load of one case.
type profileResult struct {
	Case    string
	Path    string   // the profile (pprof format)
	TopPath string   // `go tool pprof -top` output
	Top     []string // the first lines of the flat and cumulative tops
	Cum     []string
	RPS     float64 // throughput while profiling (lower: the profiler costs)
	Peek    []string
	// GateShare is the share of Caddy's CPU time spent in the gate itself
	// (Gate.ServeHTTP minus the next handler it calls); -1 if unknown.
	GateShare float64
}

// profile runs a case again while fetching a CPU profile from Caddy's
// admin API (/debug/pprof/profile). It runs after the measurements, so the
// profiler's overhead never enters a reported figure.
func (b *bench) profile(ctx context.Context, id, url, xff string) (*profileResult, error) {
	secs := max(1, b.o.pprofSecs)
	logf("profiling Caddy for %ds under the load of case (%s)", secs, id)
	pr := &profileResult{Case: id, Path: filepath.Join(b.out, "cpu-case-"+id+".pprof"), GateShare: -1}
	type got struct {
		res *wrkResult
		err error
	}
	ch := make(chan got, 1)
	go func() {
		w := wrkRun{name: "case-" + id + "-profiled", url: url, threads: b.o.threads, conns: b.o.conns,
			dur: time.Duration(secs+2) * time.Second, headers: []string{"X-Forwarded-For: " + xff}}
		r, err := runWrk(ctx, w, b.o.wrkTimeout, b.out, 0)
		ch <- got{r, err}
	}()
	time.Sleep(time.Second)
	client := &http.Client{Timeout: time.Duration(secs+30) * time.Second}
	resp, err := client.Get(b.url(b.ports.admin, fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs)))
	if err == nil {
		var f *os.File
		if f, err = os.Create(pr.Path); err == nil {
			_, err = io.Copy(f, resp.Body)
			f.Close()
		}
		resp.Body.Close()
		if err == nil && resp.StatusCode != 200 {
			err = fmt.Errorf("admin API answered %d to the profile request", resp.StatusCode)
		}
	}
	g := <-ch
	if g.err != nil {
		return nil, g.err
	}
	if err != nil {
		return nil, err
	}
	pr.RPS = g.res.RPS
	flat, err := run(ctx, 2*time.Minute, b.o.repo, nil, "go", "tool", "pprof", "-top", "-nodecount=30", b.o.caddyBin, pr.Path)
	if err != nil {
		return nil, fmt.Errorf("go tool pprof: %v\n%s", err, flat)
	}
	cum, err := run(ctx, 2*time.Minute, b.o.repo, nil, "go", "tool", "pprof", "-top", "-cum", "-nodecount=30", b.o.caddyBin, pr.Path)
	if err != nil {
		return nil, fmt.Errorf("go tool pprof: %v\n%s", err, cum)
	}
	peek, err := run(ctx, 2*time.Minute, b.o.repo, nil, "go", "tool", "pprof", "-peek", `knocker\.\(\*Gate\)\.ServeHTTP$|knocker\.\(\*App\)\.passOn$`, b.o.caddyBin, pr.Path)
	if err != nil {
		return nil, fmt.Errorf("go tool pprof: %v\n%s", err, peek)
	}
	pr.TopPath = filepath.Join(b.out, "cpu-case-"+id+"-top.txt")
	if err := os.WriteFile(pr.TopPath, []byte(flat+"\n\n"+cum+"\n\n"+peek), 0o644); err != nil {
		return nil, err
	}
	pr.Top, pr.Cum = topLines(flat, 20), topLines(cum, 25)
	pr.Peek, pr.GateShare = gateShare(flat, peek)
	logf("profile: %s (top: %s)", pr.Path, pr.TopPath)
	return pr, nil
}

var (
	reTotal   = regexp.MustCompile(`Total samples = ([\d.]+m?s)`)
	rePeekRow = regexp.MustCompile(`^\s*([\d.]+(?:m?s)?)\s+[\d.]+%\s+([\d.]+%\s+([\d.]+(?:m?s)?)\s+[\d.]+%\s+)?\|\s+(\S+)`)
)

// gateShare reads the -peek blocks of Gate.ServeHTTP and App.passOn (which
// the gate calls its next handler through): the gate's cumulative time minus
// what its next handler (a caddyhttp ServeHTTP, called from either) took is
// the gate's own cost (on the deny path including caddyhttp.Error), returned
// as a share of all samples.
func gateShare(top, peek string) ([]string, float64) {
	var block []string
	in := false
	for _, line := range strings.Split(peek, "\n") {
		if strings.Contains(line, "flat%") {
			in = true
		}
		if in && strings.TrimSpace(line) != "" {
			block = append(block, line)
		}
	}
	m := reTotal.FindStringSubmatch(top)
	if m == nil {
		return block, -1
	}
	total, err := time.ParseDuration(m[1])
	if err != nil || total <= 0 {
		return block, -1
	}
	var cum, next time.Duration
	seen, fn := false, "" // fn: the function whose block the rows belong to, once its row is read
	for _, line := range block {
		if strings.HasPrefix(strings.TrimSpace(line), "---") {
			fn = ""
			continue
		}
		r := rePeekRow.FindStringSubmatch(line)
		if r == nil {
			continue
		}
		if r[2] != "" { // the row of the function itself: flat flat% sum% cum cum%
			fn = r[4]
			if strings.HasSuffix(fn, "knocker.(*Gate).ServeHTTP") {
				cum, _ = time.ParseDuration(r[3])
				seen = true
			}
			continue
		}
		calledByGate := strings.HasSuffix(fn, "knocker.(*Gate).ServeHTTP") || strings.HasSuffix(fn, "knocker.(*App).passOn")
		if calledByGate && strings.Contains(r[4], "caddyserver/caddy/v2/modules/caddyhttp.") && strings.HasSuffix(r[4], "ServeHTTP") {
			d, _ := time.ParseDuration(r[1])
			next += d
		}
	}
	if !seen {
		return block, -1
	}
	return block, float64(cum-next) / float64(total)
}

// topLines keeps the header and the first n rows of a pprof -top table.
func topLines(s string, n int) []string {
	var out []string
	rows := -1
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "File:") || strings.HasPrefix(line, "Build ID:") || strings.HasPrefix(line, "Type:") || strings.HasPrefix(line, "Time:") {
			continue
		}
		if strings.Contains(line, "flat%") {
			rows = 0
		}
		if rows >= 0 {
			if rows > n {
				break
			}
			rows++
		}
		out = append(out, line)
	}
	return out
}

// microResult is the output of the repository's Go micro-benchmarks.
type microResult struct {
	Command string
	Listed  []benchFunc
	Rows    []benchRow
	Header  []string // goos/goarch/cpu lines
	Err     string
	Took    time.Duration
	RawPath string
}

type benchFunc struct{ Name, File string }

type benchRow struct {
	Pkg, Name string
	N         string
	Metrics   [][2]string // value, unit
}

var reBenchFunc = regexp.MustCompile(`(?m)^func (Benchmark\w+)\(b \*testing\.B\)`)

// listBenchmarks finds the benchmark functions in the root package and store/.
func listBenchmarks(repo string) []benchFunc {
	var out []benchFunc
	for _, dir := range []string{"store", "."} {
		files, _ := filepath.Glob(filepath.Join(repo, dir, "*_test.go"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			rel, _ := filepath.Rel(repo, f)
			for _, m := range reBenchFunc.FindAllStringSubmatch(string(b), -1) {
				out = append(out, benchFunc{m[1], rel})
			}
		}
	}
	return out
}

func (b *bench) microBenchmarks(ctx context.Context) *microResult {
	args := []string{"test", "-run", "^$", "-bench", ".", "-benchtime", b.o.microTime, "./store/", "."}
	mr := &microResult{Command: "go " + strings.Join(quoteArgs(args), " "), Listed: listBenchmarks(b.o.repo)}
	logf("micro-benchmarks: %s", mr.Command)
	t := time.Now()
	out, err := run(ctx, 30*time.Minute, b.o.repo, nil, "go", args...)
	mr.Took = time.Since(t)
	mr.RawPath = filepath.Join(b.out, "micro-benchmarks.txt")
	_ = os.WriteFile(mr.RawPath, []byte("$ "+mr.Command+"\n"+out), 0o644)
	if err != nil {
		mr.Err = err.Error()
		logf("micro-benchmarks failed (reported in BENCHMARKS.md; output %s): %v", mr.RawPath, err)
	}
	pkg := ""
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = v
			continue
		}
		if strings.HasPrefix(line, "cpu: ") && !slices.Contains(mr.Header, line) {
			mr.Header = append(mr.Header, line)
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		row := benchRow{Pkg: pkg, Name: f[0], N: f[1]}
		for i := 2; i+1 < len(f); i += 2 {
			row.Metrics = append(row.Metrics, [2]string{f[i], f[i+1]})
		}
		mr.Rows = append(mr.Rows, row)
	}
	logf("micro-benchmarks: %d results in %s", len(mr.Rows), mr.Took.Round(time.Second))
	return mr
}

func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, "^$ ") {
			out[i] = "'" + a + "'"
		} else {
			out[i] = a
		}
	}
	return out
}

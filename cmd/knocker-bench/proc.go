//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Every child process and temp dir is registered here, so that a failure,
// the run's deadline or Ctrl-C never leaves a Caddy or wrk behind.
var reg struct {
	sync.Mutex
	procs map[*exec.Cmd]struct{}
	dirs  []string
}

func register(cmd *exec.Cmd) {
	reg.Lock()
	defer reg.Unlock()
	if reg.procs == nil {
		reg.procs = map[*exec.Cmd]struct{}{}
	}
	reg.procs[cmd] = struct{}{}
}

func unregister(cmd *exec.Cmd) {
	reg.Lock()
	defer reg.Unlock()
	delete(reg.procs, cmd)
}

func registerDir(dir string) {
	reg.Lock()
	defer reg.Unlock()
	reg.dirs = append(reg.dirs, dir)
}

// cleanupAll kills every registered child (by its pid) and removes every
// registered temp dir. It is safe to call more than once.
func cleanupAll() {
	reg.Lock()
	defer reg.Unlock()
	for cmd := range reg.procs {
		killGroup(cmd)
	}
	reg.procs = nil
	for _, d := range reg.dirs {
		_ = os.RemoveAll(d)
	}
	reg.dirs = nil
}

// killGroup kills a child and everything it started (its process group:
// `go test` runs the test binary as a grandchild).
func killGroup(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Process.Kill()
}

// childAttrs puts a child in its own process group (a Ctrl-C reaches only
// this program, which then stops the child itself) and has the kernel kill
// it if this program dies without cleaning up.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// caddyProc is one running Caddy (or nats-server).
type caddyProc struct {
	what    string // "caddy" or "nats-server", for messages
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	done    chan struct{}
	err     error
	started time.Time
}

// startCaddy runs `caddy run` on a Caddyfile, with its data and config
// directories under home and its output in logPath.
func startCaddy(bin, caddyfile, home, logPath string, env []string) (*caddyProc, error) {
	env = append([]string{
		"XDG_DATA_HOME=" + filepath.Join(home, "data"),
		"XDG_CONFIG_HOME=" + filepath.Join(home, "config")}, env...)
	return startProcess("caddy", bin, []string{"run", "--config", caddyfile, "--adapter", "caddyfile"}, env, logPath)
}

// startProcess starts bin with args and env (added to this program's),
// its output in logPath, registered for cleanup.
func startProcess(what, bin string, args, env []string, logPath string) (*caddyProc, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = childAttrs()
	p := &caddyProc{what: what, cmd: cmd, logPath: logPath, logFile: lf, done: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("starting %s: %w", what, err)
	}
	register(cmd)
	go func() {
		p.err = cmd.Wait()
		unregister(cmd)
		close(p.done)
	}()
	return p, nil
}

func (p *caddyProc) pid() int { return p.cmd.Process.Pid }

func (p *caddyProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// logTail returns the end of the process's output, for error messages.
func (p *caddyProc) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// waitHealthy polls url until it answers 200 and returns the time from the
// process start. It fails when Caddy exits or the deadline passes.
func (p *caddyProc) waitHealthy(ctx context.Context, url string, limit time.Duration) (time.Duration, error) {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(limit)
	for {
		if p.exited() {
			return 0, fmt.Errorf("caddy exited before serving %s: %v\n--- caddy output (%s) ---\n%s", url, p.err, p.logPath, p.logTail())
		}
		resp, err := client.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(p.started), nil
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("caddy did not answer 200 on %s within %s (last error: %v)\n--- caddy output (%s) ---\n%s", url, limit, err, p.logPath, p.logTail())
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// stop asks the process to shut down (SIGTERM), and kills it after a
// deadline.
func (p *caddyProc) stop() {
	defer p.logFile.Close()
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(30 * time.Second):
	}
	logf("%s (pid %d) did not stop within 30s of SIGTERM: killing it", p.what, p.pid())
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		logf("%s (pid %d) still not reaped after SIGKILL", p.what, p.pid())
	}
}

// procStatus reads fields (in kB) of /proc/<pid>/status.
func procStatus(pid int, fields ...string) (map[string]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		for _, f := range fields {
			if v, ok := strings.CutPrefix(line, f+":"); ok {
				v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("/proc/%d/status %s: %q", pid, f, v)
				}
				out[f] = n * 1024
			}
		}
	}
	for _, f := range fields {
		if _, ok := out[f]; !ok {
			return nil, fmt.Errorf("/proc/%d/status has no %s", pid, f)
		}
	}
	return out, nil
}

// cpuSeconds is the user+system CPU time a process has used so far (all
// threads), from /proc/<pid>/stat (clock ticks of 1/100 s, USER_HZ).
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may contain spaces; fields start after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc/pid/stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("malformed /proc/pid/stat")
	}
	// After ')': state(3) ... utime is field 14, stime 15 (1-based), i.e. f[11], f[12].
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed /proc/pid/stat")
	}
	return float64(ut+st) / 100, nil
}

// portFree reports whether a TCP port can be bound on 127.0.0.1.
func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// run runs a short helper command with a deadline and returns its output.
func run(ctx context.Context, limit time.Duration, dir string, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.SysProcAttr = childAttrs()
	cmd.Cancel = func() error { killGroup(cmd); return nil }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	register(cmd)
	err := cmd.Wait()
	unregister(cmd)
	if ctx.Err() == context.DeadlineExceeded {
		return buf.String(), fmt.Errorf("%s %s: no result within %s", name, strings.Join(args, " "), limit)
	}
	if err != nil {
		return buf.String(), fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return buf.String(), nil
}

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-knocker/knocker/internal/testports"
	"github.com/caddy-knocker/knocker/internal/testutil"
)

// The keys the test Caddys accept; random per run, so that a search of the
// output for them is meaningful.
var (
	userKey  = "user-" + randomHex(16)  // max_ttl 1h
	adminKey = "admin-" + randomHex(16) // max_ttl 1h, allow_remote_whitelist
	roamKey  = "roam-" + randomHex(16)  // max_ttl 1h, ipv6_prefix 64 (on the shared Caddy)
)

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Test-binary-wide state: the Caddy binary (built once) and the shared
// Caddy (started on first use), cleaned up by TestMain.
var (
	tmpRoot    string
	buildOnce  sync.Once
	caddyBin   string
	buildErr   error
	skipReason string

	sharedOnce  sync.Once
	shared      *caddyServer
	sharedErr   error
	sharedMu    sync.Mutex
	stopShared  func()
	testTimeout = 30 * time.Second
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "knocker-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tmpRoot = dir
	// Never write events to the journal of the machine running the tests;
	// the journal tests point this at their own journald.
	journalSocket = filepath.Join(dir, "no-journal")
	code := m.Run()
	sharedMu.Lock()
	if stopShared != nil {
		stopShared()
	}
	sharedMu.Unlock()
	os.RemoveAll(dir)
	os.Exit(code)
}

// caddyBinary builds ./cmd/caddy (Caddy with the plugin) once per test
// binary run; KNOCKER_E2E_CADDY names a prebuilt one instead.
func caddyBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if bin := os.Getenv("KNOCKER_E2E_CADDY"); bin != "" {
			caddyBin = bin
			return
		}
		goTool, err := exec.LookPath("go")
		if err != nil {
			skipReason = "the go command is not on PATH, so Caddy with the plugin cannot be built for the Caddy-backed tests"
			return
		}
		bin := filepath.Join(tmpRoot, "caddy")
		cmd := exec.Command(goTool, "build", "-o", bin, "../caddy")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ../caddy: %v\n%s", err, out)
			return
		}
		caddyBin = bin
	})
	if skipReason != "" {
		t.Skip(skipReason)
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return caddyBin
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// caddyServer is a running Caddy with the plugin.
type caddyServer struct {
	direct  int // a gated site with the knock API on 127.0.0.1 and ::1
	proxied int // the same behind trusted proxies (127.0.0.1 only), for the test proxy
	out     *lockedBuffer
	stop    func()
}

// startCaddy runs Caddy on config (a format string: %[1]d is the direct
// port, %[2]d the proxied one) with the test keys in its environment.
func startCaddy(t *testing.T, config string) (*caddyServer, error) {
	bin := caddyBinary(t)
	home, err := os.MkdirTemp(tmpRoot, "caddy-")
	if err != nil {
		return nil, err
	}
	ports, err := testports.Ports(2)
	if err != nil {
		return nil, err
	}
	s := &caddyServer{direct: ports[0], proxied: ports[1], out: new(lockedBuffer)}
	path := filepath.Join(home, "Caddyfile")
	if err := os.WriteFile(path, fmt.Appendf(nil, config, s.direct, s.proxied), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "run", "--config", path, "--adapter", "caddyfile")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KNOCKER_") && !strings.HasPrefix(kv, "XDG_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env,
		"XDG_DATA_HOME="+filepath.Join(home, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(home, "config"),
		"KNOCKER_TEST_USER_KEY="+userKey,
		"KNOCKER_TEST_ADMIN_KEY="+adminKey,
		"KNOCKER_TEST_ROAM_KEY="+roamKey)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.stop = func() {
		_ = cmd.Process.Kill()
		<-done
	}
	// Caddy serves each listener as soon as it is bound, one after
	// another: it is up once every one answers.
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(testTimeout)
	urls := []string{fmt.Sprintf("http://127.0.0.1:%d/health", s.direct), fmt.Sprintf("http://[::1]:%d/health", s.direct)}
	if strings.Contains(config, "%[2]d {") { // the proxied site
		urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d/health", s.proxied))
	}
	for _, url := range urls {
		for {
			select {
			case <-done:
				return nil, fmt.Errorf("caddy exited before serving:\n%s", s.out)
			default:
			}
			resp, err := client.Get(url)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				s.stop()
				return nil, fmt.Errorf("caddy not healthy at %s within %s:\n%s", url, testTimeout, s.out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return s, nil
}

// The shared Caddy: no rate limit, so that tests cannot disturb each other.
// Its direct site sees 127.0.0.1 and ::1; tests that knock successfully on
// it use --ip (admin key) or the proxied site, so that the loopback
// addresses stay unknocked there.
const sharedConfig = `{
	admin off
	servers 127.0.0.1:%[2]d {
		trusted_proxies static 127.0.0.1/32 ::1/128
		trusted_proxies_strict
	}
	knocker {
		key user {env.KNOCKER_TEST_USER_KEY} {
			max_ttl 1h
		}
		key admin {env.KNOCKER_TEST_ADMIN_KEY} {
			max_ttl 1h
			allow_remote_whitelist
		}
		key roam {env.KNOCKER_TEST_ROAM_KEY} {
			max_ttl 1h
			ipv6_prefix 64
		}
		rate_limit {
			success 0
			failure 0
		}
	}
}
http://:%[1]d {
	bind 127.0.0.1 [::1]
	knock
	knocker
	respond "gated ok"
}
http://:%[2]d {
	bind 127.0.0.1
	knock
	knocker
	respond "gated ok"
}
`

// A fresh Caddy per test that needs unknocked loopback addresses; it allows
// one failed knock per minute, for the 429 test.
const freshConfig = `{
	admin off
	knocker {
		key user {env.KNOCKER_TEST_USER_KEY} {
			max_ttl 1h
		}
		rate_limit {
			failure 1
		}
	}
}
http://:%[1]d {
	bind 127.0.0.1 [::1]
	knock
	knocker
	respond "gated ok"
}
`

func sharedCaddy(t *testing.T) *caddyServer {
	t.Helper()
	caddyBinary(t) // skip or fail here, not in the Once
	sharedOnce.Do(func() {
		shared, sharedErr = startCaddy(t, sharedConfig)
		if sharedErr == nil {
			sharedMu.Lock()
			stopShared = shared.stop
			sharedMu.Unlock()
		}
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	if shared == nil {
		t.Fatal("the shared Caddy failed to start in an earlier test")
	}
	return shared
}

func freshCaddy(t *testing.T) *caddyServer {
	t.Helper()
	s, err := startCaddy(t, freshConfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("caddy output:\n%s", s.out)
		}
	})
	return s
}

// testDial resolves the test host name dualstack.test to 127.0.0.1 over
// tcp4 (and tcp) and to ::1 over tcp6 (this machine's /etc/hosts has no
// IPv6 localhost), then dials with the network the CLI chose: a wrong
// family choice shows in the address the server sees.
func testDial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if host == "dualstack.test" {
		host = "127.0.0.1"
		if network == "tcp6" {
			host = "::1"
		}
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	return d.DialContext(ctx, network, net.JoinHostPort(host, port))
}

type result struct {
	code           int
	stdout, stderr string
}

// testCLI is a cli with a test environment: env only (an empty config
// directory unless env sets XDG_CONFIG_HOME), no signals, no systemd.
func testCLI(t *testing.T, env map[string]string, stdout, stderr io.Writer) *cli {
	t.Helper()
	if env == nil {
		env = map[string]string{}
	}
	if _, ok := env["XDG_CONFIG_HOME"]; !ok {
		env["XDG_CONFIG_HOME"] = t.TempDir()
	}
	if _, ok := env["HOME"]; !ok {
		env["HOME"] = t.TempDir()
	}
	c := newCLI()
	c.getenv = func(k string) string { return env[k] }
	c.stdin = strings.NewReader("")
	c.stdout, c.stderr = stdout, stderr
	c.dial = testDial
	c.signals = nil
	c.goos = "linux"
	c.executable = func() (string, error) { return "/opt/knocker/bin/knocker", nil }
	c.stderrIsJournal = func() bool { return false }
	c.lookPath = func(string) (string, error) { return "", errors.New("not found") }
	c.runCommand = func(context.Context, string, ...string) ([]byte, error) {
		return nil, errors.New("no commands in tests")
	}
	return c
}

// runCLI runs one command in-process and checks that no key leaked.
func runCLI(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := testCLI(t, env, &stdout, &stderr).main(context.Background(), args)
	r := result{code, stdout.String(), stderr.String()}
	assertNoKey(t, r.stdout+r.stderr)
	return r
}

func assertNoKey(t *testing.T, out string, extra ...string) {
	t.Helper()
	for _, k := range append([]string{userKey, adminKey}, extra...) {
		if strings.Contains(out, k) {
			t.Fatalf("a key appears in the output:\n%s", out)
		}
	}
}

func wantCode(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
}

// runInBackground starts a command (knocker run) and returns its output
// and a function that cancels it and returns its exit code.
func runInBackground(t *testing.T, c *cli, args ...string) (stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- c.main(ctx, args) }()
	var once sync.Once
	code := -1
	stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(testTimeout):
				t.Errorf("knocker %s did not stop within %s", args[0], testTimeout)
			}
		})
		return code
	}
	t.Cleanup(func() { stop() })
	return stop
}

// waitFor polls cond until it holds or the (generous) deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// get sends GET url on a fresh connection and returns status and body.
func get(t *testing.T, rawURL string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	return testutil.Get(t, c, rawURL)
}

// serverStatus asks GET /knock/status at base.
func serverStatus(t *testing.T, base string) statusResult {
	t.Helper()
	code, body := get(t, base+"/knock/status")
	var st statusResult
	if code != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("status: %d %s", code, body)
	}
	return st
}

// xffProxy stands for the network between a device and the server: it
// forwards to Caddy's proxied site with X-Forwarded-For set to the address
// the test chooses for each family, so a test can change the device's
// public address at will.
type xffProxy struct {
	port    int
	addr4   atomic.Value // string
	addr6   atomic.Value // string
	mu      sync.Mutex
	knocks  map[string]int // successful knocks by address
	checks  map[string]int // answered GET /knock/status by address
	servers []*http.Server
}

func startProxy(t *testing.T, upstreamPort int, addr4, addr6 string) *xffProxy {
	t.Helper()
	p := &xffProxy{port: testports.FreePort(t), knocks: map[string]int{}, checks: map[string]int{}}
	p.addr4.Store(addr4)
	p.addr6.Store(addr6)
	target, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", upstreamPort))
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			addr := p.addr4.Load().(string)
			if ap, err := netip.ParseAddrPort(pr.In.RemoteAddr); err == nil && ap.Addr().Is6() {
				addr = p.addr6.Load().(string)
			}
			pr.Out.Header.Set("X-Forwarded-For", addr)
		},
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode == http.StatusOK {
				xff := resp.Request.Header.Get("X-Forwarded-For")
				p.mu.Lock()
				switch resp.Request.URL.Path {
				case "/knock":
					p.knocks[xff]++
				case "/knock/status":
					p.checks[xff]++
				}
				p.mu.Unlock()
			}
			return nil
		},
		Transport: &http.Transport{DisableKeepAlives: true},
	}
	for _, addr := range []string{fmt.Sprintf("127.0.0.1:%d", p.port), fmt.Sprintf("[::1]:%d", p.port)} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: rp}
		go srv.Serve(l)
		p.servers = append(p.servers, srv)
	}
	t.Cleanup(p.close)
	return p
}

// close takes the proxy off the network: the server is unreachable.
func (p *xffProxy) close() {
	for _, srv := range p.servers {
		srv.Close()
	}
}

func (p *xffProxy) count(addr string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.knocks[addr]
}

// statusChecks is how many address checks from addr were answered.
func (p *xffProxy) statusChecks(addr string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.checks[addr]
}

// url is the proxy's address as the CLI sees it: over IPv4 and IPv6.
func (p *xffProxy) url() string { return fmt.Sprintf("http://dualstack.test:%d", p.port) }

// via4 is the proxy's address over IPv4, for the test's own requests.
func (p *xffProxy) via4() string { return fmt.Sprintf("http://127.0.0.1:%d", p.port) }

func (p *xffProxy) via6() string { return fmt.Sprintf("http://[::1]:%d", p.port) }

// writeFile writes a file with mode 0600 in a new temporary directory.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func decodeJSON(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, s)
	}
	return m
}

// results returns the "results" of a --json document.
func results(t *testing.T, s string) []map[string]any {
	t.Helper()
	var doc struct {
		Results []map[string]any `json:"results"`
	}
	if err := json.Unmarshal([]byte(s), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, s)
	}
	return doc.Results
}

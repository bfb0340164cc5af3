package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-knocker/knocker/internal/testutil"
)

// The quickstart's demo key and greeting (examples/quickstart.Caddyfile).
const (
	demoKey  = "quickstart-demo-key-localhost-only"
	greeting = "Hello, knocked-in friend!"
)

// The quickstart's sites, on this test process's ports (see quickstartConfig).
var (
	baseURL    string // knock site, localhost:8080 in the example
	privateURL string // protected site, localhost:8081 in the example
)

// caddyBinary returns the binary under test: KNOCKER_E2E_CADDY (the test
// command passes the xcaddy build) or cmd/caddy, built once per test
// binary (see buildOnce).
func caddyBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("KNOCKER_E2E_CADDY"); bin != "" {
		return bin
	}
	return caddyBuild.get(t, "caddy", ".")
}

var caddyBuild buildOnce

// buildOnce builds one binary the first time a test asks for it, into
// buildDir (made by TestMain, removed when the tests end): the tests that
// start processes share it instead of linking it again each.
type buildOnce struct {
	once sync.Once
	bin  string
	err  error
}

// get builds package pkg as buildDir/name on its first call and returns its
// path, failing the test if the build failed (then and on every later call).
func (b *buildOnce) get(t *testing.T, name, pkg string) string {
	t.Helper()
	b.once.Do(func() {
		b.bin = filepath.Join(buildDir, name)
		if out, err := exec.Command("go", "build", "-o", b.bin, pkg).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build -o %s %s: %v\n%s", b.bin, pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.bin
}

type caddyProcess struct {
	cmd    *exec.Cmd
	output *bytes.Buffer
	done   chan error
}

// startCaddy runs `caddy run --config <config>` with its data and config
// directories in home.
func startCaddy(t *testing.T, bin, home, config string) *caddyProcess {
	t.Helper()
	cmd := exec.Command(bin, "run", "--config", config, "--adapter", "caddyfile")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KNOCKER_KEY=") { // the tests knock with the quickstart's demo key, whatever the caller's shell sets
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env,
		// the admin endpoint of configs that do not set one (the quickstart)
		fmt.Sprintf("CADDY_ADMIN=localhost:%d", ports.defaultAdmin),
		"XDG_DATA_HOME="+filepath.Join(home, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(home, "config"))
	p := &caddyProcess{cmd: cmd, output: new(bytes.Buffer), done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.output, p.output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("caddy output:\n%s", p.output)
		}
	})
	return p
}

// knock POSTs /knock and returns the status and decoded body.
func knock(t *testing.T, client *http.Client, key string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, baseURL+"/knock", nil)
	req.Header.Set("X-Api-Key", key)
	resp := testutil.MustDo(t, client, req)
	var body map[string]any
	if err := json.Unmarshal([]byte(resp.Body), &body); err != nil {
		t.Fatalf("knock response is not JSON: %v", err)
	}
	return resp.Status, body
}

// clientVia sends every request to loopback address ip (on the URL's port),
// keeping the URL's Host (localhost), so each family can be tested alone.
func clientVia(ip string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			return d.DialContext(ctx, network, net.JoinHostPort(ip, port))
		},
		DisableKeepAlives: true,
	}}
}

func TestQuickstartEndToEnd(t *testing.T) {
	bin := caddyBinary(t)
	home := t.TempDir()
	config := quickstartConfig(t)
	caddy := startCaddy(t, bin, home, config)
	caddy.waitUp(t, baseURL+"/health", privateURL+"/")

	v4, v6 := clientVia("127.0.0.1"), clientVia("::1")
	if status, page := testutil.Get(t, v4, baseURL+"/"); status != http.StatusOK || !strings.Contains(page, "<title>Knocker</title>") {
		t.Fatalf("knock site /: %d, want the web app", status)
	}
	if status, _ := testutil.Get(t, v4, privateURL+"/"); status != http.StatusUnauthorized {
		t.Fatalf("before knocking: %d, want 401", status)
	}
	if status, body := knock(t, v4, "wrong-key"); status != http.StatusUnauthorized || body["error"] != "Invalid or missing API key." {
		t.Fatalf("wrong key: %d %v", status, body)
	}
	status, body := knock(t, v4, demoKey)
	if status != http.StatusOK || body["whitelisted_entry"] != "127.0.0.1" || body["expires_in_seconds"] != 3600.0 {
		t.Fatalf("knock over IPv4: %d %v", status, body)
	}
	if status, page := testutil.Get(t, v4, privateURL+"/"); status != http.StatusOK || page != greeting {
		t.Fatalf("after knocking over IPv4: %d %q", status, page)
	}
	// Each family is its own client address.
	if status, _ := testutil.Get(t, v6, privateURL+"/"); status != http.StatusUnauthorized {
		t.Fatalf("IPv6 before its own knock: %d, want 401", status)
	}
	if status, body := knock(t, v6, demoKey); status != http.StatusOK || body["whitelisted_entry"] != "::1" {
		t.Fatalf("knock over IPv6: %d %v", status, body)
	}

	// kill -9 right after the knocks were answered: both must survive.
	if err := caddy.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-caddy.done
	caddy.done <- nil
	restarted := startCaddy(t, bin, home, config)
	restarted.waitUp(t, baseURL+"/health", privateURL+"/")
	for name, c := range map[string]*http.Client{"IPv4": v4, "IPv6": v6} {
		if status, page := testutil.Get(t, c, privateURL+"/"); status != http.StatusOK || page != greeting {
			t.Fatalf("%s after kill -9 and restart: %d %q", name, status, page)
		}
	}

	// A second Caddy on the same whitelist file refuses to start.
	second := filepath.Join(t.TempDir(), "second.Caddyfile")
	global := testutil.Preamble{
		Admin:       "off",
		DefaultBind: "127.0.0.1",
		Knocker: &testutil.Knocker{
			WhitelistFile: filepath.Join(home, "data", "caddy", "knocker", "whitelist.json"),
			Keys:          []testutil.Key{{Name: "demo", Secret: "another-demo-key-0123456789", MaxTTL: "1h"}},
		},
	}
	secondConfig := global.String() + fmt.Sprintf("http://localhost:%d {\n\tknocker\n}\n", ports.second)
	if err := os.WriteFile(second, []byte(secondConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "run", "--config", second, "--adapter", "caddyfile").CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("a second Caddy on a whitelist file in use kept running instead of refusing:\n%s", out)
	}
	if err == nil {
		t.Fatal("a second Caddy started on a whitelist file already in use")
	}
	if !strings.Contains(string(out), "whitelist.json") || !strings.Contains(string(out), "another process") {
		t.Fatalf("second Caddy's error does not say the file is in use:\n%s", out)
	}
}

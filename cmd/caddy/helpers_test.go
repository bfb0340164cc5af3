package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddy-knocker/knocker/internal/testports"
	"github.com/caddy-knocker/knocker/internal/testutil"
)

// ports are this test process's, chosen free in TestMain so that test runs
// in parallel on one machine never share one (see internal/testcaddy).
var ports struct {
	defaultAdmin             int // CADDY_ADMIN for configs without an admin address
	quickstart, quickstartPv int // the quickstart's 8080 and 8081
	second                   int // the e2e test's second Caddy
	crashKnock, crashGate    int
	reloadAdminPort          int
	reloadKnock, reloadGate  int
	rotationAdmin            int
	rotationKnock            int
	clusterNATS              int                 // the cluster tests' nats-server
	clusterNodes             [4]clusterNodePorts // their Caddy nodes a, b, c, d
}

// clusterNodePorts are one cluster test node's ports.
type clusterNodePorts struct{ admin, knock, gate int }

// buildDir holds the binaries the tests build (caddyBinary,
// natsServerBinary), once per test binary.
var buildDir string

func TestMain(m *testing.M) {
	p, err := testports.Ports(11 + 1 + 3*len(ports.clusterNodes))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ports.defaultAdmin, ports.quickstart, ports.quickstartPv, ports.second = p[0], p[1], p[2], p[3]
	ports.crashKnock, ports.crashGate = p[4], p[5]
	ports.reloadAdminPort, ports.reloadKnock, ports.reloadGate = p[6], p[7], p[8]
	ports.rotationAdmin, ports.rotationKnock = p[9], p[10]
	ports.clusterNATS = p[11]
	for i := range ports.clusterNodes {
		ports.clusterNodes[i] = clusterNodePorts{admin: p[12+3*i], knock: p[13+3*i], gate: p[14+3*i]}
	}
	baseURL = fmt.Sprintf("http://localhost:%d", ports.quickstart)
	privateURL = fmt.Sprintf("http://localhost:%d", ports.quickstartPv)
	if buildDir, err = os.MkdirTemp("", "knocker-cmd-caddy-test-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(buildDir)
	os.Exit(code)
}

// siteURL is the URL of a test site on port of 127.0.0.1.
func siteURL(port int) string { return fmt.Sprintf("http://127.0.0.1:%d", port) }

// reloadAdmin is the reload test's admin address.
func reloadAdmin() string { return fmt.Sprintf("127.0.0.1:%d", ports.reloadAdminPort) }

// quickstartConfig writes examples/quickstart.Caddyfile, with its ports
// 8080 and 8081 moved to this process's, into a temp dir and returns the
// copy's path. Nothing else changes; the admin endpoint comes from
// CADDY_ADMIN (startCaddy).
func quickstartConfig(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("../../examples/quickstart.Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	for from, to := range map[string]string{"localhost:8080 {": baseURL, "localhost:8081 {": privateURL} {
		if n := strings.Count(text, "http://"+from); n != 1 {
			t.Fatalf("the quickstart has %d site blocks http://%s, want 1: update this test with it", n, from)
		}
		text = strings.Replace(text, "http://"+from, to+" {", 1)
	}
	return writeConfig(t, t.TempDir(), "quickstart.Caddyfile", text)
}

// Helpers for the reliability tests (crash_test.go, reload_test.go): they
// talk to a Caddy whose servers trust 127.0.0.1 as a proxy, so every request
// names its client address in X-Forwarded-For. None of them calls t.Fatal, so
// they are safe in load goroutines.

// loadClient is a keep-alive client dialling 127.0.0.1, sized for many
// concurrent workers so that load does not churn ephemeral ports.
func loadClient() *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
		},
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}}
}

// knockAnswer is the 200 answer of POST /knock.
type knockAnswer struct {
	WhitelistedEntry string `json:"whitelisted_entry"`
	ExpiresAt        int64  `json:"expires_at"`
	ExpiresInSeconds int64  `json:"expires_in_seconds"`
}

// knockAs knocks for the client address ip (via X-Forwarded-For) with key and
// ttl (seconds; 0 = none). err is a transport error or an unreadable body: the
// knock was then not acknowledged. The answer is decoded only on 200.
func knockAs(c *http.Client, knockSite, key, ip string, ttl int) (int, knockAnswer, error) {
	var body io.Reader
	if ttl > 0 {
		body = strings.NewReader(fmt.Sprintf(`{"ttl": %d}`, ttl))
	}
	req, err := http.NewRequest(http.MethodPost, knockSite+"/knock", body)
	if err != nil {
		return 0, knockAnswer{}, err
	}
	req.Header.Set("X-Api-Key", key)
	req.Header.Set("X-Forwarded-For", ip)
	if ttl > 0 {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := testutil.Do(c, req)
	if err != nil {
		return 0, knockAnswer{}, err
	}
	var ans knockAnswer
	if resp.Status == http.StatusOK {
		if err := json.Unmarshal([]byte(resp.Body), &ans); err != nil {
			return resp.Status, ans, fmt.Errorf("200 answer is not the knock JSON: %v: %q", err, resp.Body)
		}
	}
	return resp.Status, ans, nil
}

// knockAdmin whitelists ip for one second with an admin key, knocking as
// the client 203.0.113.199.
func knockAdmin(c *http.Client, knockSite, key, ip string) (int, knockAnswer, error) {
	req, err := http.NewRequest(http.MethodPost, knockSite+"/knock", strings.NewReader(fmt.Sprintf(`{"ip_address": %q, "ttl": 1}`, ip)))
	if err != nil {
		return 0, knockAnswer{}, err
	}
	req.Header.Set("X-Api-Key", key)
	req.Header.Set("X-Forwarded-For", "203.0.113.199")
	req.Header.Set("Content-Type", "application/json")
	resp, err := testutil.Do(c, req)
	if err != nil {
		return 0, knockAnswer{}, err
	}
	var ans knockAnswer
	err = json.Unmarshal([]byte(resp.Body), &ans)
	return resp.Status, ans, err
}

// getAs GETs url as client address ip and returns the status and body.
func getAs(c *http.Client, url, ip string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("X-Forwarded-For", ip)
	resp, err := testutil.Do(c, req)
	return resp.Status, resp.Body, err
}

// knockStatus is the answer of GET /knock/status.
type knockStatus struct {
	IP          string  `json:"ip"`
	Whitelisted bool    `json:"whitelisted"`
	Entry       *string `json:"entry"`
	ExpiresAt   *int64  `json:"expires_at"`
}

func statusAs(c *http.Client, knockSite, ip string) (knockStatus, error) {
	var st knockStatus
	code, body, err := getAs(c, knockSite+"/knock/status", ip)
	if err != nil {
		return st, err
	}
	if code != http.StatusOK {
		return st, fmt.Errorf("/knock/status: %d %q", code, body)
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		return st, fmt.Errorf("/knock/status: %v: %q", err, body)
	}
	return st, nil
}

// waitUp polls health (expecting 200) and then each of sites (expecting any
// HTTP answer) until Caddy answers, failing the test if the process exits
// first or nothing answers within 30 s. Caddy binds one server's listeners
// after another and serves each as soon as it is bound, so a config with
// several sites is up only once every site answers. The output is logged by
// startCaddy's cleanup when the test fails.
func (p *caddyProcess) waitUp(t *testing.T, health string, sites ...string) {
	t.Helper()
	p.waitAnswer(t, health, http.StatusOK)
	for _, url := range sites {
		p.waitAnswer(t, url, 0)
	}
}

// waitAnswer is waitUp for one url; status 0 accepts any status.
func (p *caddyProcess) waitAnswer(t *testing.T, url string, status int) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("caddy exited before serving: %v\n%s", err, p.output)
		default:
		}
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
			if status == 0 || resp.StatusCode == status {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("caddy not serving %s within 30s", url)
}

// waitExit waits (at most 30 s) for the process to exit and returns its
// error, leaving it in p.done for startCaddy's cleanup.
func (p *caddyProcess) waitExit(t *testing.T) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("caddy did not exit within 30s")
		return nil
	}
}

// writeConfig writes a Caddyfile into dir and returns its path.
func writeConfig(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := dir + "/" + name
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// readWhitelist parses the whitelist snapshot strictly: a JSON object whose
// every value is an integer.
func readWhitelist(t *testing.T, path string) map[string]int64 {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var obj map[string]json.Number
	if err := dec.Decode(&obj); err != nil {
		t.Fatalf("%s is not a JSON object of entry -> expiry: %v\n%.500s", path, err, raw)
	}
	if dec.More() {
		t.Fatalf("%s has trailing data after the JSON object", path)
	}
	out := make(map[string]int64, len(obj))
	for k, v := range obj {
		n, err := v.Int64()
		if err != nil {
			t.Fatalf("%s: expiry of %q is not an integer: %s", path, k, v)
		}
		out[k] = n
	}
	return out
}

package knockerl4

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/mholt/caddy-l4"

	"github.com/caddy-knocker/knocker/internal/testcaddy"
	"github.com/caddy-knocker/knocker/internal/testports"
	"github.com/caddy-knocker/knocker/internal/testutil"
)

// Ports of this test process's Caddy: HTTP (the knock API), HTTPS (unused
// but Caddy's), the gated layer4 port, and two behind proxy_protocol: with
// fallback_policy reject and without.
var httpPort, httpsPort, l4Port, l4ProxiedPort, l4LaxPort int

func TestMain(m *testing.M) {
	p, err := testports.Ports(5)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	httpPort, httpsPort, l4Port, l4ProxiedPort, l4LaxPort = p[0], p[1], p[2], p[3], p[4]
	testcaddy.Watch(p...)
	os.Exit(m.Run())
}

// Loopback addresses the clients dial from (Linux routes all of 127/8 to
// lo): knocked knocks in the tests, stranger never does; proxy is the
// proxy_protocol handlers' allowed proxy (and knocks neither).
const (
	knocked  = "127.0.0.2"
	stranger = "127.0.0.3"
	proxy    = "127.0.0.4"
	secret   = "l4-test-secret-3c5e7a9b1d2f4a6c8e0b"
)

// echoServer is a TCP echo server on loopback, the upstream caddy-l4
// proxies knocked clients to.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// global is the test Caddyfile's global options with layer4 (the servers'
// blocks) among them.
func global(t *testing.T, dir, layer4 string) string {
	t.Helper()
	t.Setenv("KNOCKER_L4_TEST_KEY", secret)
	t.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	p := testutil.Preamble{
		Admin:            testcaddy.AdminAddress(t),
		HTTPPort:         httpPort,
		HTTPSPort:        httpsPort,
		SkipInstallTrust: true,
		DefaultBind:      "127.0.0.1",
		GracePeriod:      "1s",
		LogFile:          dir + "/caddy.log",
		LogLevel:         "DEBUG",
		Knocker: &testutil.Knocker{
			WhitelistFile: dir + "/state/whitelist.json",
			Keys:          []testutil.Key{{Name: "admin", Secret: "{env.KNOCKER_L4_TEST_KEY}", MaxTTL: "1h", AllowRemoteWhitelist: true}},
		},
	}.String()
	return strings.TrimSuffix(p, "}\n") + "\tlayer4 {\n" + layer4 + "\t}\n}\n"
}

// l4Caddyfile gates l4Port with `knocked`, and l4ProxiedPort and
// l4LaxPort likewise after a proxy_protocol handler that allows proxy,
// the first with fallback_policy reject; the knock API is on httpPort.
func l4Caddyfile(t *testing.T, dir, upstream string) string {
	gated := func(addr string, port int, fallback string) string {
		return fmt.Sprintf(`		127.0.0.1:%[1]d {
			route {
				proxy_protocol {
					allow %[2]s/32%[3]s
				}
				subroute {
					@in knocked ssh
					route @in {
						proxy %[4]s
					}
				}
			}
		}
`, port, addr, fallback, upstream)
	}
	return global(t, dir, fmt.Sprintf(`		127.0.0.1:%d {
			@in knocked
			route @in {
				proxy %s
			}
		}
`, l4Port, upstream)+gated(proxy, l4ProxiedPort, "\n\t\t\t\t\tfallback_policy reject")+gated(proxy, l4LaxPort, "")) +
		fmt.Sprintf("http://:%d {\n\tknock\n}\n", httpPort)
}

// knock whitelists the caller's address through the knock API.
func knock(t *testing.T, from string) {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 30 * time.Second}
	c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DialContext: dialer.DialContext, DisableKeepAlives: true}}
	req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/knock", httpPort), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Api-Key", secret)
	if r := testutil.MustDo(t, c, req); r.Status != http.StatusOK {
		t.Fatalf("knock from %s: %d %s", from, r.Status, r.Body)
	}
}

// exchange dials port from the address from, sends preface (a PROXY
// header, or nothing) and a line, and returns what comes back until the
// server closes the connection: the line for a client caddy-l4 proxied to
// the echo server, "" for one it closed.
func exchange(t *testing.T, from string, port int, preface string) string {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 30 * time.Second}
	c, err := dialer.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("dialing port %d from %s: %v", port, from, err)
	}
	defer c.Close()
	// Generous: a busy machine; a match or a refusal comes at once.
	if err := c.SetDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	const line = "ping\n"
	if _, err := io.WriteString(c, preface+line); err != nil && !refused(err) {
		t.Fatalf("writing from %s: %v", from, err)
	}
	got := make([]byte, len(line))
	n, err := io.ReadFull(c, got)
	switch {
	case err == nil:
		return string(got)
	case n == 0 && (errors.Is(err, io.EOF) || refused(err)):
		return ""
	default:
		t.Fatalf("reading from port %d as %s: %q, %v; want the echo or the connection closed", port, from, got[:n], err)
		return ""
	}
}

// refused reports a connection the server closed under the client's feet.
func refused(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func TestKnockedGatesTCP(t *testing.T) {
	dir := t.TempDir()
	testcaddy.Load(t, l4Caddyfile(t, dir, echoServer(t)), "caddyfile")

	if got := exchange(t, knocked, l4Port, ""); got != "" {
		t.Fatalf("before knocking: echoed %q, want the connection closed", got)
	}
	knock(t, knocked)
	if got := exchange(t, knocked, l4Port, ""); got != "ping\n" {
		t.Fatalf("knocked client: %q, want its echo", got)
	}
	if got := exchange(t, stranger, l4Port, ""); got != "" {
		t.Fatalf("stranger: echoed %q, want the connection closed", got)
	}
}

// Behind proxy_protocol, the matcher judges the address of the PROXY
// header, as caddy-l4 exposes it, not the proxy's.
func TestKnockedAfterProxyProtocol(t *testing.T) {
	dir := t.TempDir()
	testcaddy.Load(t, l4Caddyfile(t, dir, echoServer(t)), "caddyfile")
	knock(t, knocked)

	header := func(family, src, dst string, port int) string {
		return fmt.Sprintf("PROXY %s %s %s 40000 %d\r\n", family, src, dst, port)
	}
	for _, tc := range []struct {
		from, header, want string
	}{
		{proxy, header("TCP4", knocked, "127.0.0.1", l4ProxiedPort), "ping\n"},
		{proxy, header("TCP4", stranger, "127.0.0.1", l4ProxiedPort), ""},
		{proxy, header("TCP6", "::ffff:"+knocked, "::1", l4ProxiedPort), "ping\n"}, // mapped is IPv4
		// Not the allowed proxy: fallback_policy reject leaves the peer's
		// own address, whatever header it sends.
		{stranger, header("TCP4", knocked, "127.0.0.1", l4ProxiedPort), ""},
	} {
		if got := exchange(t, tc.from, l4ProxiedPort, tc.header); got != tc.want {
			t.Errorf("from %s with %q: %q, want %q (\"\": closed)", tc.from, tc.header, got, tc.want)
		}
	}

	// Without fallback_policy reject, caddy-l4 v0.1.2 (with the PROXY
	// protocol library Caddy v2.11.9 brings) believes a header from any
	// peer, allowed or not: a stranger can claim a knocked address. The
	// docs therefore require fallback_policy reject; when this fails,
	// caddy-l4 has fixed it and the docs can relax.
	if got := exchange(t, stranger, l4LaxPort, header("TCP4", knocked, "127.0.0.1", l4LaxPort)); got != "ping\n" {
		t.Errorf("caddy-l4's proxy_protocol without fallback_policy reject no longer believes any peer (%q): update the docs' advice", got)
	}
}

// The JSON form: {"knocked": {}} or {"knocked": {"scope": ...}} in a
// route's matcher set, as the Caddyfile adapts to.
func TestKnockedJSON(t *testing.T) {
	dir := t.TempDir()
	upstream := echoServer(t)
	adapted := adapt(t, l4Caddyfile(t, dir, upstream))
	for _, want := range []string{`"match":[{"knocked":{}}]`, `"match":[{"knocked":{"scope":"ssh"}}]`} {
		if !strings.Contains(adapted, want) {
			t.Fatalf("the adapted Caddyfile has no %s:\n%s", want, adapted)
		}
	}
	var cfg map[string]any
	if err := json.Unmarshal([]byte(adapted), &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["apps"].(map[string]any)["layer4"] = json.RawMessage(fmt.Sprintf(`{"servers": {"gated": {
		"listen": ["127.0.0.1:%d"],
		"routes": [{"match": [{"knocked": {"scope": "games"}}], "handle": [{"handler": "proxy", "upstreams": [{"dial": [%q]}]}]}]
	}}}`, l4Port, upstream))
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	testcaddy.Load(t, string(raw), "json")
	if got := exchange(t, knocked, l4Port, ""); got != "" {
		t.Fatalf("before knocking: echoed %q", got)
	}
	knock(t, knocked)
	if got := exchange(t, knocked, l4Port, ""); got != "ping\n" {
		t.Fatalf("knocked client: %q, want its echo", got)
	}

	bad := strings.Replace(string(raw), `{"scope":"games"}`, `{"scope":"Games"}`, 1)
	if bad == string(raw) {
		t.Fatal("no scope to break in the config")
	}
	testcaddy.AssertLoadError(t, bad, "json", `scope: "Games" is not a scope name`)
}

func TestKnockedCaddyfileErrors(t *testing.T) {
	for _, tc := range []struct{ matcher, want string }{
		{"knocked ssh extra", "knocked: too many arguments"},
		{"knocked SSH", `knocked: "SSH" is not a scope name`},
		{"knocked ssh.games", `"ssh.games" is not a scope name`},
		{"knocked {\n\t\t\t\tssh\n\t\t\t}", "knocked: blocks are not supported"},
	} {
		cfg := "{\n\tlayer4 {\n\t\t:2222 {\n\t\t\t@in " + tc.matcher + "\n\t\t\troute @in {\n\t\t\t\tproxy 127.0.0.1:22\n\t\t\t}\n\t\t}\n\t}\n}\n"
		_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: adapt error %v, want %q", tc.matcher, err, tc.want)
		}
	}
}

func adapt(t *testing.T, caddyfile string) string {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// The matcher cannot work without the knocker app: a config without one
// is refused, naming it.
func TestKnockedWithoutKnockerApp(t *testing.T) {
	cfg := fmt.Sprintf(`{"admin": {"listen": %q}, "apps": {"layer4": {"servers": {"gated": {
		"listen": ["127.0.0.1:%d"],
		"routes": [{"match": [{"knocked": {}}], "handle": [{"handler": "proxy", "upstreams": [{"dial": ["127.0.0.1:22"]}]}]}]
	}}}}}`, testcaddy.AdminAddress(t), l4Port)
	testcaddy.AssertLoadError(t, cfg, "json", "knocker app")
}

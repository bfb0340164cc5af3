package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/caddy-knocker/knocker/internal/testports"
)

func wantContains(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Fatalf("%s does not contain %q:\n%s", what, w, got)
		}
	}
}

// Knock over IPv4, then IPv6, on a fresh Caddy: each family gets its own
// entry, and the gated site admits exactly the families that knocked.
func TestKnockAndStatusPerFamily(t *testing.T) {
	srv := freshCaddy(t)
	env := map[string]string{"KNOCKER_SERVER": fmt.Sprintf("http://dualstack.test:%d", srv.direct), "KNOCKER_KEY": userKey}
	site4 := fmt.Sprintf("http://127.0.0.1:%d/protected", srv.direct)
	site6 := fmt.Sprintf("http://[::1]:%d/protected", srv.direct)

	r := runCLI(t, env, "status", "--family", "both")
	wantCode(t, r, exitOK)
	if r.stdout != "IPv4: 127.0.0.1 is not whitelisted\nIPv6: ::1 is not whitelisted\n" {
		t.Fatalf("status before knocking:\n%s", r.stdout)
	}
	for _, site := range []string{site4, site6} {
		if code, _ := get(t, site); code != http.StatusUnauthorized {
			t.Fatalf("%s before knocking: %d, want 401", site, code)
		}
	}

	r = runCLI(t, env, "knock", "--family", "4", "--ttl", "30m")
	wantCode(t, r, exitOK)
	wantContains(t, "knock -4 output", r.stdout, "IPv4: whitelisted 127.0.0.1 for 30m, until ")
	if strings.Contains(r.stdout, "capped") {
		t.Fatalf("a 30m knock under a 1h max_ttl reported as capped:\n%s", r.stdout)
	}
	if code, body := get(t, site4); code != http.StatusOK || body != "gated ok" {
		t.Fatalf("IPv4 after its knock: %d %q", code, body)
	}
	if code, _ := get(t, site6); code != http.StatusUnauthorized {
		t.Fatalf("IPv6 after the IPv4 knock only: %d, want 401", code)
	}
	r = runCLI(t, env, "status", "--family", "4")
	wantCode(t, r, exitOK)
	wantContains(t, "status -4", r.stdout, "IPv4: 127.0.0.1 is whitelisted for ")
	r = runCLI(t, env, "status", "--family", "6")
	wantCode(t, r, exitOK)
	if r.stdout != "IPv6: ::1 is not whitelisted\n" {
		t.Fatalf("status -6 after the IPv4 knock:\n%s", r.stdout)
	}

	// IPv6, asking for more than the key's max_ttl (plain seconds).
	r = runCLI(t, env, "knock", "--family", "6", "--ttl", "7200")
	wantCode(t, r, exitOK)
	wantContains(t, "knock -6 output", r.stdout, "IPv6: whitelisted ::1 for 1h, until ",
		"IPv6: the server capped the TTL: asked for 2h, granted 1h")
	if code, body := get(t, site6); code != http.StatusOK || body != "gated ok" {
		t.Fatalf("IPv6 after its knock: %d %q", code, body)
	}

	r = runCLI(t, env, "status", "--family", "both", "--json")
	wantCode(t, r, exitOK)
	res := results(t, r.stdout)
	if len(res) != 2 || res[0]["family"] != "ipv4" || res[0]["ip"] != "127.0.0.1" || res[0]["whitelisted"] != true || res[0]["entry"] != "127.0.0.1" ||
		res[1]["family"] != "ipv6" || res[1]["ip"] != "::1" || res[1]["whitelisted"] != true || res[1]["entry"] != "::1" {
		t.Fatalf("status --json after both knocks:\n%s", r.stdout)
	}
	if in := res[1]["expires_in_seconds"].(float64); in < 3500 || in > 3600 {
		t.Fatalf("IPv6 expires in %v s, want about 3600", in)
	}

	r = runCLI(t, env, "knock", "--family", "6", "--ttl", "2h", "--json")
	wantCode(t, r, exitOK)
	res = results(t, r.stdout)
	if len(res) != 1 || res[0]["whitelisted_entry"] != "::1" || res[0]["expires_in_seconds"] != 3600.0 ||
		res[0]["requested_ttl_seconds"] != 7200.0 || res[0]["ttl_capped"] != true || res[0]["ok"] != true {
		t.Fatalf("knock --json:\n%s", r.stdout)
	}
}

// --family both on a fresh Caddy: one invocation whitelists 127.0.0.1 and
// ::1. Then the failure window (1 per minute here) fills up: 429, exit 5,
// reported per family.
func TestKnockBothFamiliesThenRateLimited(t *testing.T) {
	srv := freshCaddy(t)
	server := fmt.Sprintf("http://dualstack.test:%d", srv.direct)
	env := map[string]string{"KNOCKER_SERVER": server, "KNOCKER_KEY": userKey}

	r := runCLI(t, env, "status", "--family", "both")
	wantCode(t, r, exitOK)
	wantContains(t, "status before", r.stdout, "IPv4: 127.0.0.1 is not whitelisted", "IPv6: ::1 is not whitelisted")

	r = runCLI(t, env, "knock", "--family", "both", "--ttl", "10m")
	wantCode(t, r, exitOK)
	wantContains(t, "knock --family both", r.stdout, "IPv4: whitelisted 127.0.0.1 for 10m", "IPv6: whitelisted ::1 for 10m")
	for _, site := range []string{fmt.Sprintf("http://127.0.0.1:%d/protected", srv.direct), fmt.Sprintf("http://[::1]:%d/protected", srv.direct)} {
		if code, body := get(t, site); code != http.StatusOK || body != "gated ok" {
			t.Fatalf("%s after knocking over both families: %d %q", site, code, body)
		}
	}
	r = runCLI(t, env, "status", "--family", "both")
	wantCode(t, r, exitOK)
	wantContains(t, "status after", r.stdout, "IPv4: 127.0.0.1 is whitelisted for ", "IPv6: ::1 is whitelisted for ")

	// One failure is allowed per minute; the next knock, whatever its key, is 429.
	bad := map[string]string{"KNOCKER_SERVER": server, "KNOCKER_KEY": "wrong-key-0123456789"}
	r = runCLI(t, bad, "knock", "--family", "4")
	assertNoKey(t, r.stdout+r.stderr, "wrong-key-0123456789")
	wantCode(t, r, exitBadKey)
	wantContains(t, "bad key message", r.stderr, "\nknocker knock: IPv4: server answered 401: Invalid or missing API key.\n")
	r = runCLI(t, env, "knock", "--family", "4")
	wantCode(t, r, exitRateLimited)
	wantContains(t, "429 message", r.stderr, "IPv4: server answered 429: Too many knock attempts. Retry after ")
	r = runCLI(t, env, "knock", "--family", "4", "--json")
	wantCode(t, r, exitRateLimited)
	res := results(t, r.stdout)
	if len(res) != 1 || res[0]["ok"] != false || res[0]["exit_code"] != 5.0 || res[0]["http_status"] != 429.0 || res[0]["retry_after_seconds"].(float64) < 1 {
		t.Fatalf("429 as JSON:\n%s", r.stdout)
	}

	// Each family is its own client: IPv6 still knocks, IPv4 is refused;
	// both are reported and the exit code is the failing family's.
	r = runCLI(t, env, "knock", "--family", "both")
	wantCode(t, r, exitRateLimited)
	wantContains(t, "stdout", r.stdout, "IPv6: whitelisted ::1")
	wantContains(t, "stderr", r.stderr, "IPv4: server answered 429")
}

// fakeKnock serves the knock API's success answers and records requests.
type fakeKnock struct {
	mu       sync.Mutex
	requests []recorded
}

type recorded struct {
	method, path, key, userAgent, contentType, body string
}

func (f *fakeKnock) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.requests = append(f.requests, recorded{r.Method, r.URL.Path, r.Header.Get("X-Api-Key"), r.Header.Get("User-Agent"), r.Header.Get("Content-Type"), string(b)})
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	if strings.HasSuffix(r.URL.Path, "/knock/status") {
		fmt.Fprintf(w, `{"ip":%q,"whitelisted":false,"entry":null,"expires_at":null,"expires_in_seconds":null}`, host)
		return
	}
	fmt.Fprintf(w, `{"whitelisted_entry":%q,"expires_at":1900000000,"expires_in_seconds":3600}`, host)
}

func (f *fakeKnock) all() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.requests...)
}

func respond(status int, header map[string]string, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func TestExitCodes(t *testing.T) {
	srv := sharedCaddy(t)
	direct := fmt.Sprintf("http://127.0.0.1:%d", srv.direct)
	closed := fmt.Sprintf("http://127.0.0.1:%d", testports.FreePort(t))

	// Accepts connections and never answers.
	silent, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()

	selfSigned := httptest.NewUnstartedServer(&fakeKnock{})
	selfSigned.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	selfSigned.StartTLS()
	defer selfSigned.Close()
	elsewhere := &fakeKnock{}
	elsewhereSrv := httptest.NewServer(elsewhere)
	defer elsewhereSrv.Close()
	fakes := map[string]http.Handler{
		"500":      respond(500, map[string]string{"Content-Type": "application/json"}, `{"error":"Internal server error."}`),
		"503":      respond(503, nil, "Service Unavailable"),
		"html":     respond(200, map[string]string{"Content-Type": "text/html"}, "<html>welcome</html>"),
		"empty200": respond(200, map[string]string{"Content-Type": "application/json"}, `{}`),
		"404":      respond(404, nil, "not found"),
		"redirect": respond(308, map[string]string{"Location": elsewhereSrv.URL + "/knock"}, ""),
		"418":      respond(418, nil, ""),
		"gate401":  respond(401, nil, ""),
	}
	urls := map[string]string{}
	for name, h := range fakes {
		s := httptest.NewServer(h)
		defer s.Close()
		urls[name] = s.URL
	}
	emptyKeyFile := writeFile(t, "", "empty.key", "\n")
	keyFile := writeFile(t, "", "user.key", userKey+"\n")
	nlKeyFile := writeFile(t, "", "nl.key", "abc\ndef\n")

	type env = map[string]string
	cases := []struct {
		name   string
		env    env
		args   []string
		code   int
		stderr string
	}{
		{"bad key", env{"KNOCKER_SERVER": direct, "KNOCKER_KEY": "wrong-key-0123456789"}, []string{"knock"}, exitBadKey, "knocker knock: server answered 401: Invalid or missing API key.\n"},
		{"remote ip without permission", env{"KNOCKER_SERVER": direct, "KNOCKER_KEY": userKey}, []string{"knock", "--ip", "192.0.2.1"}, exitForbidden, "server answered 403: "},
		{"range too broad", env{"KNOCKER_SERVER": direct, "KNOCKER_KEY": adminKey}, []string{"knock", "--ip", "10.0.0.0/8"}, exitUsage, "server answered 400: CIDR range too broad"},
		{"connection refused", env{"KNOCKER_SERVER": closed, "KNOCKER_KEY": userKey}, []string{"knock"}, exitUnreachable, "connection refused"},
		{"status connection refused", env{"KNOCKER_SERVER": closed}, []string{"status"}, exitUnreachable, "connection refused"},
		{"timeout", env{"KNOCKER_SERVER": "http://" + silent.Addr().String(), "KNOCKER_KEY": userKey}, []string{"knock", "--timeout", "300ms"}, exitUnreachable, "timeout"},
		{"https to a plain HTTP port", env{"KNOCKER_KEY": userKey}, []string{"knock", "--server", strings.TrimPrefix(direct, "http://")}, exitTLS, "speaks plain HTTP"},
		{"self-signed certificate", env{"KNOCKER_SERVER": selfSigned.URL, "KNOCKER_KEY": userKey}, []string{"knock"}, exitTLS, "certificate"},
		{"status self-signed", env{"KNOCKER_SERVER": selfSigned.URL}, []string{"status"}, exitTLS, "certificate"},
		{"500", env{"KNOCKER_SERVER": urls["500"], "KNOCKER_KEY": userKey}, []string{"knock"}, exitServer, "server answered 500: Internal server error."},
		{"503 without JSON", env{"KNOCKER_SERVER": urls["503"], "KNOCKER_KEY": userKey}, []string{"knock"}, exitServer, "server answered 503: Service Unavailable."},
		{"200 HTML", env{"KNOCKER_SERVER": urls["html"], "KNOCKER_KEY": userKey}, []string{"knock"}, exitServer, "not with JSON"},
		{"200 without a grant", env{"KNOCKER_SERVER": urls["empty200"], "KNOCKER_KEY": userKey}, []string{"knock"}, exitServer, "not with a knock result"},
		{"status 200 without an ip", env{"KNOCKER_SERVER": urls["empty200"]}, []string{"status"}, exitServer, "not with a status"},
		{"404", env{"KNOCKER_SERVER": urls["404"], "KNOCKER_KEY": userKey}, []string{"knock"}, exitServer, "is not the knock API"},
		{"status 404", env{"KNOCKER_SERVER": urls["404"]}, []string{"status"}, exitServer, "without GET /knock/status"},
		{"redirect", env{"KNOCKER_SERVER": urls["redirect"], "KNOCKER_KEY": userKey}, []string{"knock"}, exitServer, "use that server URL instead"},
		{"418", env{"KNOCKER_SERVER": urls["418"], "KNOCKER_KEY": userKey}, []string{"knock"}, exitServer, "server answered 418"},
		{"401 from a gate, not the knock API", env{"KNOCKER_SERVER": urls["gate401"], "KNOCKER_KEY": userKey}, []string{"knock"}, exitBadKey, "server answered 401: no knock API error in the answer"},
		{"no server", env{"KNOCKER_KEY": userKey}, []string{"knock"}, exitUsage, "no server: use --server"},
		{"no key", env{"KNOCKER_SERVER": direct}, []string{"knock"}, exitUsage, "no API key"},
		{"unknown flag", env{"KNOCKER_SERVER": direct, "KNOCKER_KEY": userKey}, []string{"knock", "--bogus"}, exitUsage, "flag provided but not defined: -bogus"},
		{"flag of another command", env{"KNOCKER_SERVER": direct}, []string{"status", "--ttl", "1h"}, exitUsage, "not defined: -ttl"},
		{"bad family", env{"KNOCKER_SERVER": direct, "KNOCKER_KEY": userKey}, []string{"knock", "--family", "5"}, exitUsage, `invalid family "5" (from --family)`},
		{"bad ttl from env", env{"KNOCKER_SERVER": direct, "KNOCKER_KEY": userKey, "KNOCKER_TTL": "soon"}, []string{"knock"}, exitUsage, `invalid ttl "soon" (from KNOCKER_TTL)`},
		{"sub-second ttl", env{"KNOCKER_SERVER": direct, "KNOCKER_KEY": userKey}, []string{"knock", "--ttl", "500ms"}, exitUsage, "must be at least 1s"},
		{"fractional ttl", env{"KNOCKER_SERVER": direct, "KNOCKER_KEY": userKey}, []string{"knock", "--ttl", "1500ms"}, exitUsage, "whole number of seconds"},
		{"bad ip", env{"KNOCKER_SERVER": direct, "KNOCKER_KEY": adminKey}, []string{"knock", "--ip", "999.1.1.1"}, exitUsage, "not an IP address or CIDR range"},
		{"ip with both families", env{"KNOCKER_SERVER": direct, "KNOCKER_KEY": adminKey}, []string{"knock", "--ip", "192.0.2.1", "--family", "both"}, exitUsage, "--family both does not apply"},
		{"key and key file flags", env{"KNOCKER_SERVER": direct}, []string{"knock", "--key", userKey, "--key-file", keyFile}, exitUsage, "both --key and --key-file are set"},
		{"empty key file", env{"KNOCKER_SERVER": direct, "KNOCKER_KEY_FILE": emptyKeyFile}, []string{"knock"}, exitUsage, "is empty"},
		{"key file with two lines", env{"KNOCKER_SERVER": direct, "KNOCKER_KEY_FILE": nlKeyFile}, []string{"knock"}, exitUsage, "control character"},
		{"missing key file", env{"KNOCKER_SERVER": direct, "KNOCKER_KEY_FILE": "/nonexistent/key"}, []string{"knock"}, exitUsage, "cannot read the key file (from KNOCKER_KEY_FILE)"},
		{"bad scheme", env{"KNOCKER_KEY": userKey}, []string{"knock", "--server", "ftp://example.com"}, exitUsage, `scheme "ftp" is not supported`},
		{"extra argument", env{"KNOCKER_SERVER": direct, "KNOCKER_KEY": userKey}, []string{"knock", "now"}, exitUsage, `unexpected argument "now"`},
		{"unknown command", nil, []string{"frob"}, exitUsage, `unknown command "frob"`},
		{"no command", nil, nil, exitUsage, "Exit codes:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, tc.env, tc.args...)
			assertNoKey(t, r.stdout+r.stderr, "wrong-key-0123456789")
			wantCode(t, r, tc.code)
			wantContains(t, "stderr", r.stderr, tc.stderr)
		})
	}
	if reqs := elsewhere.all(); len(reqs) != 0 {
		t.Fatalf("the redirect was followed (the key went to another server): %+v", reqs)
	}

	t.Run("JSON on failure", func(t *testing.T) {
		r := runCLI(t, map[string]string{"KNOCKER_SERVER": closed, "KNOCKER_KEY": userKey}, "knock", "--json")
		wantCode(t, r, exitUnreachable)
		res := results(t, r.stdout)
		if len(res) != 1 || res[0]["ok"] != false || res[0]["exit_code"] != 6.0 || !strings.Contains(res[0]["error"].(string), "connection refused") {
			t.Fatalf("JSON:\n%s", r.stdout)
		}
		r = runCLI(t, map[string]string{"KNOCKER_KEY": userKey}, "knock", "--json")
		wantCode(t, r, exitUsage)
		if doc := decodeJSON(t, r.stdout); doc["exit_code"] != 2.0 || !strings.Contains(doc["error"].(string), "no server") {
			t.Fatalf("JSON:\n%s", r.stdout)
		}
	})

	// A server reachable over IPv4 only: --family both reports each family
	// and exits with the failing one's code.
	t.Run("one family fails", func(t *testing.T) {
		fake := httptest.NewServer(&fakeKnock{}) // 127.0.0.1 only
		defer fake.Close()
		port := fake.Listener.Addr().(*net.TCPAddr).Port
		r := runCLI(t, map[string]string{"KNOCKER_KEY": userKey}, "knock", "--family", "both", "--server", fmt.Sprintf("http://dualstack.test:%d", port))
		wantCode(t, r, exitUnreachable)
		wantContains(t, "stdout", r.stdout, "IPv4: whitelisted 127.0.0.1 for 1h")
		wantContains(t, "stderr", r.stderr, "IPv6: cannot reach http://dualstack.test:")
	})
}

// Without a scheme the server is https; the system CA pool is replaced
// here by the test server's certificate (a test-only seam: there is no
// flag for it). Checks what goes on the wire.
func TestHTTPSByDefaultAndWireFormat(t *testing.T) {
	fake := &fakeKnock{}
	srv := httptest.NewTLSServer(fake)
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	run := func(args ...string) result {
		var stdout, stderr bytes.Buffer
		c := testCLI(t, map[string]string{"KNOCKER_KEY": userKey}, &stdout, &stderr)
		c.rootCAs = pool
		code := c.main(context.Background(), args)
		r := result{code, stdout.String(), stderr.String()}
		assertNoKey(t, r.stdout+r.stderr)
		return r
	}
	host := strings.TrimPrefix(srv.URL, "https://")
	r := run("knock", "--server", host+"/prefix/", "--ttl", "90m")
	wantCode(t, r, exitOK)
	r = run("knock", "--server", host+"/prefix/knock", "--ip", "192.0.2.0/24")
	wantCode(t, r, exitOK)
	r = run("status", "--server", host+"/prefix")
	wantCode(t, r, exitOK)
	wantContains(t, "status", r.stdout, "127.0.0.1 is not whitelisted")
	r = run("knock", "--server", host)
	wantCode(t, r, exitOK)

	reqs := fake.all()
	if len(reqs) != 4 {
		t.Fatalf("%d requests: %+v", len(reqs), reqs)
	}
	for i, want := range []recorded{
		{method: "POST", path: "/prefix/knock", key: userKey, contentType: "application/json", body: `{"ttl":5400}`},
		{method: "POST", path: "/prefix/knock", key: userKey, contentType: "application/json", body: `{"ip_address":"192.0.2.0/24"}`},
		{method: "GET", path: "/prefix/knock/status"},
		{method: "POST", path: "/knock", key: userKey},
	} {
		got := reqs[i]
		if !strings.HasPrefix(got.userAgent, "knocker-cli/") {
			t.Errorf("request %d: User-Agent %q", i, got.userAgent)
		}
		got.userAgent = ""
		if got != want {
			t.Errorf("request %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
}

func TestRedactWriter(t *testing.T) {
	var b bytes.Buffer
	w := redacting(&b, "s3cret-value")
	n, err := io.WriteString(w, "a s3cret-value b\n")
	if err != nil || n != 17 || b.String() != "a [redacted] b\n" {
		t.Fatalf("%d %v %q", n, err, b.String())
	}
	if redacting(&b, "short") != io.Writer(&b) {
		t.Fatal("a short key is redacted")
	}
}

func TestHelp(t *testing.T) {
	for _, cmd := range []string{"knock", "status", "run", "install", "uninstall", "start", "stop"} {
		r := runCLI(t, nil, cmd, "--help")
		wantCode(t, r, exitOK)
		wantContains(t, cmd+" --help", r.stdout, "Usage: knocker "+cmd, "Exit codes: 0 success", "7 TLS error")
	}
	r := runCLI(t, nil, "--help")
	wantCode(t, r, exitOK)
	wantContains(t, "--help", r.stdout, "Exit codes:", "3  invalid or missing API key (401)", "10  status --service, start, stop: the service is not installed", "KNOCKER_SERVER", "config.json")
	r = runCLI(t, nil, "help", "run")
	wantCode(t, r, exitOK)
	wantContains(t, "help run", r.stdout, "--check-interval")
	r = runCLI(t, nil, "version")
	wantCode(t, r, exitOK)
	wantContains(t, "version", r.stdout, "knocker ")
}

package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The settings of knocker-cli work unchanged: its environment
// variables alone, or its ~/.knocker.yaml alone, against a real Caddy.
func TestOriginalSettingsKnock(t *testing.T) {
	srv := freshCaddy(t)
	server := fmt.Sprintf("http://dualstack.test:%d", srv.direct)
	site4 := fmt.Sprintf("http://127.0.0.1:%d/protected", srv.direct)

	r := runCLI(t, map[string]string{"KNOCKER_API_URL": server, "KNOCKER_API_KEY": userKey, "KNOCKER_TTL": "600"},
		"knock", "--family", "4", "--verbose")
	wantCode(t, r, exitOK)
	wantContains(t, "knock with knocker-cli's variables", r.stdout, "IPv4: whitelisted 127.0.0.1 for 10m, until ")
	wantContains(t, "--verbose", r.stderr, "server from KNOCKER_API_URL (knocker-cli)", "key from KNOCKER_API_KEY (knocker-cli)", "ttl from KNOCKER_TTL")
	if code, _ := get(t, site4); code != http.StatusOK {
		t.Fatalf("the gate after a knock with knocker-cli's variables: %d, want 200", code)
	}

	home := t.TempDir()
	yml := writeFile(t, home, ".knocker.yaml", fmt.Sprintf("api_url: %s\napi_key: %s\nttl: 0\ncheck_interval: 5\n", server, userKey))
	if err := os.Chmod(yml, 0o644); err != nil { // as knocker-cli's users have it
		t.Fatal(err)
	}
	r = runCLI(t, map[string]string{"HOME": home}, "knock", "--family", "6", "--verbose")
	wantCode(t, r, exitOK)
	wantContains(t, "knock with ~/.knocker.yaml", r.stdout, "IPv6: whitelisted ::1 for 1h, until ") // ttl 0: the key's max_ttl
	wantContains(t, "--verbose", r.stderr, fmt.Sprintf(`server from "api_url" in %s`, yml), fmt.Sprintf(`key from "api_key" in %s`, yml))
	wantContains(t, "mode warning", r.stderr, "holds the API key and is readable by other users")

	// status says where its settings came from, without being asked.
	r = runCLI(t, map[string]string{"HOME": home}, "status", "--family", "6")
	wantCode(t, r, exitOK)
	wantContains(t, "status", r.stdout, "::1 is whitelisted")
	wantContains(t, "status", r.stderr, fmt.Sprintf(`settings: server from "api_url" in %s`, yml))
}

// Precedence: flags > our variables > knocker-cli's variables > our
// config file > knocker-cli's file.
func TestOriginalSettingsPrecedence(t *testing.T) {
	const good, bad1, bad2, bad3 = "https://good.example", "https://env-legacy.example", "https://ours-file.example", "https://legacy-file.example"
	home, xdg := t.TempDir(), t.TempDir()
	writeFile(t, home, ".knocker.yaml", "api_url: "+bad3+"\napi_key: legacy-file-key-0123456789\n")
	ours := writeFile(t, filepath.Join(xdg, "knocker"), "config.json", `{"server": "`+bad2+`"}`)
	for _, tc := range []struct {
		name   string
		env    map[string]string
		args   []string
		server string
		origin string
	}{
		{"knocker-cli's file last", map[string]string{}, nil, bad2, `"server" in ` + ours},
		{"knocker-cli's variable over our file", map[string]string{"KNOCKER_API_URL": bad1}, nil, bad1, "KNOCKER_API_URL (knocker-cli)"},
		{"our variable over knocker-cli's", map[string]string{"KNOCKER_API_URL": bad1, "KNOCKER_SERVER": good}, nil, good, "KNOCKER_SERVER"},
		{"the flag over all", map[string]string{"KNOCKER_API_URL": bad1, "KNOCKER_SERVER": bad1}, []string{"--server", good}, good, "--server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.env["HOME"], tc.env["XDG_CONFIG_HOME"] = home, xdg
			s := resolveFor(t, tc.env, "run", tc.args...)
			if s.server.String() != tc.server || !strings.Contains(s.describeOrigins(), "server from "+tc.origin) {
				t.Fatalf("server %s (%s), want %s from %s", s.server, s.describeOrigins(), tc.server, tc.origin)
			}
			if s.keyOrigin != `"api_key" in `+filepath.Join(home, ".knocker.yaml") || !s.keyInFile || s.keyConfig != filepath.Join(home, ".knocker.yaml") {
				t.Fatalf("key from %s (in file %v, %q), want knocker-cli's file", s.keyOrigin, s.keyInFile, s.keyConfig)
			}
		})
	}
	// Without our file, knocker-cli's file alone serves.
	s := resolveFor(t, map[string]string{"HOME": home}, "run")
	if s.server.String() != bad3 {
		t.Fatalf("server %s, want %s from knocker-cli's file", s.server, bad3)
	}
}

// knocker-cli's units: ttl in seconds (0: the server's default),
// check_interval in minutes; its flag names --check_interval and
// --ip_check_url; --config naming its YAML file.
func TestOriginalSettingsUnitsAndFlags(t *testing.T) {
	home := t.TempDir()
	yml := writeFile(t, home, "old.yml", "api_url: knock.example.com\napi_key: file-key-0123456789abcdef\nttl: 3600\ncheck_interval: 5\nip_check_url: https://ip.example/\nlog_level: debug\n")
	s := resolveFor(t, map[string]string{"HOME": home}, "run", "--config", yml)
	if s.ttl != time.Hour || s.checkInterval != 5*time.Minute || s.ipCheckURL != "https://ip.example/" || s.server.String() != "https://knock.example.com" {
		t.Fatalf("from %s: ttl %s, check interval %s, ip check URL %q, server %s", yml, s.ttl, s.checkInterval, s.ipCheckURL, s.server)
	}
	if !strings.Contains(strings.Join(s.warnings, "\n"), `ignoring unknown field "log_level"`) {
		t.Fatalf("no warning about the unknown field: %q", s.warnings)
	}
	s = resolveFor(t, map[string]string{"HOME": home, "KNOCKER_TTL": "-1", "KNOCKER_IP_CHECK_URL": "http://ip.test/", "KNOCKER_CHECK_INTERVAL": "0"}, "run", "--config", yml)
	if s.ttl != 0 || s.checkInterval != 5*time.Minute || !strings.Contains(strings.Join(s.warnings, "\n"), "means the key's max_ttl") {
		t.Fatalf("ttl -1 and check_interval 0 with an ip_check_url: ttl %s, interval %s, warnings %q; want the key's max_ttl and knocker-cli's 5m", s.ttl, s.checkInterval, s.warnings)
	}
	s = resolveFor(t, map[string]string{"HOME": home, "KNOCKER_CHECK_INTERVAL": "2"}, "run", "--config", yml)
	if s.checkInterval != 2*time.Minute {
		t.Fatalf("KNOCKER_CHECK_INTERVAL=2: %s, want 2m (minutes, as in knocker-cli)", s.checkInterval)
	}
	s = resolveFor(t, map[string]string{"HOME": home}, "run", "--config", yml, "--check_interval", "90s", "--ip_check_url", "http://ip.test/x")
	if s.checkInterval != 90*time.Second || s.ipCheckURL != "http://ip.test/x" {
		t.Fatalf("knocker-cli's flag names: %s, %q", s.checkInterval, s.ipCheckURL)
	}

	for _, tc := range []struct{ name, file, want string }{
		{"not YAML", "api_url: [unclosed\n", "is not valid YAML"},
		{"not a mapping", "- a\n- b\n", "must be a mapping"},
		{"a list value", "api_url:\n  - a\n", `field "api_url" must be a string or a number`},
		{"a bad check URL", "api_url: k.example\napi_key: k-0123456789abcdef0\nip_check_url: ftp://x\n", `invalid ip-check-url "ftp://x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), ".knocker.yaml", tc.file)
			r := runCLI(t, map[string]string{"HOME": filepath.Dir(path)}, "run")
			wantCode(t, r, exitUsage)
			wantContains(t, "stderr", r.stderr, tc.want)
		})
	}
	r := runCLI(t, map[string]string{"HOME": home}, "run", "--check-interval", "1m", "--check_interval", "2m", "--config", yml)
	wantCode(t, r, exitUsage)
	wantContains(t, "stderr", r.stderr, "--check-interval given twice (also as --check_interval)")
	r = runCLI(t, map[string]string{"HOME": home}, "knock", "--config", filepath.Join(home, "missing.yaml"))
	wantCode(t, r, exitUsage)
	wantContains(t, "stderr", r.stderr, "cannot read the config file")
}

// resolveFor resolves cmd's settings as the command would.
func resolveFor(t *testing.T, env map[string]string, cmd string, args ...string) *settings {
	t.Helper()
	var stderr bytes.Buffer
	c := testCLI(t, env, &bytes.Buffer{}, &stderr)
	names := runFlags
	if cmd != "run" {
		t.Fatalf("resolveFor knows run's flags only")
	}
	p, code, done := c.parseFlags(cmd, "", "", names, args)
	if done {
		t.Fatalf("flags: exit %d: %s", code, stderr.String())
	}
	s, err := c.resolve(p, true)
	if err != nil {
		t.Fatalf("resolve: %s", err.msg)
	}
	return s
}

// run with nothing but knocker-cli's variables (ttl in seconds) keeps the
// device whitelisted: it re-knocks before each grant ends.
func TestOriginalSettingsRunReknocks(t *testing.T) {
	srv := sharedCaddy(t)
	p := startProxy(t, srv.proxied, "198.51.100.50", "2001:db8::50")
	var out lockedBuffer
	c := testCLI(t, map[string]string{"KNOCKER_API_URL": p.url(), "KNOCKER_API_KEY": userKey, "KNOCKER_TTL": "4", "KNOCKER_CHECK_INTERVAL": "0"}, &out, &out)
	stop := runInBackground(t, c, "run", "--family", "4")
	waitFor(t, "a first grant", func() bool { return p.count("198.51.100.50") >= 1 })
	first := serverStatus(t, p.via4())
	waitFor(t, "two re-knocks", func() bool { return p.count("198.51.100.50") >= 3 })
	later := serverStatus(t, p.via4())
	if !first.Whitelisted || !later.Whitelisted || *later.ExpiresAt <= *first.ExpiresAt || *first.ExpiresIn > 4 {
		t.Fatalf("grants: first %+v, later %+v", first, later)
	}
	if code := stop(); code != exitOK {
		t.Fatalf("exit code %d\n%s", code, out.String())
	}
	wantContains(t, "log", out.String(), "whitelisted 198.51.100.50 for 4s; next knock in 2s")
}

// knocker-cli's service units start the bare binary: under a service
// manager no arguments mean "run"; elsewhere they print the usage.
func TestBareBinaryUnderAServiceManagerRuns(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		journal bool
		want    string
		code    int
	}{
		{"a terminal", map[string]string{}, false, "Usage:", exitUsage},
		{"macOS Terminal", map[string]string{"XPC_SERVICE_NAME": "0"}, false, "Usage:", exitUsage},
		{"systemd, stderr the journal stream", map[string]string{}, true, "knocker run: no server", exitUsage},
		{"launchd", map[string]string{"XPC_SERVICE_NAME": "knocker"}, false, "knocker run: no server", exitUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			c := testCLI(t, tc.env, &stdout, &stderr)
			c.stderrIsJournal = func() bool { return tc.journal }
			code := c.main(t.Context(), nil)
			if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr.String(), tc.code, tc.want)
			}
		})
	}
}

// knocker-cli's persistent flags may come before the command.
func TestPersistentFlagsBeforeTheCommand(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"--config", "k.yaml", "run"}, []string{"run", "--config", "k.yaml"}},
		{[]string{"--ttl=60", "--check_interval", "5", "knock", "--family", "4"}, []string{"knock", "--family", "4", "--ttl=60", "--check_interval", "5"}},
		{[]string{"--bogus", "run"}, []string{"--bogus", "run"}},
		{[]string{"--config", "k.yaml"}, []string{"--config", "k.yaml"}},
	} {
		if got := hoistFlags(tc.in); strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("hoistFlags(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	home := t.TempDir()
	yml := writeFile(t, home, "k.yaml", "api_url: \"ftp://nope\"\n")
	r := runCLI(t, map[string]string{"HOME": home}, "--config", yml, "knock")
	wantCode(t, r, exitUsage)
	wantContains(t, "stderr", r.stderr, `invalid server "ftp://nope" (from "api_url" in `+yml)
}

// Messages about a broken config never quote what could be the key.
func TestOriginalConfigErrorsHideSecrets(t *testing.T) {
	const secret = "Sk3cretKeyValue123456"
	for _, doc := range []string{
		"api_url: k.example\napi_key: *" + secret + "\n",
		"api_url: https://u:" + secret + "@k.example\napi_key: x-0123456789abcdef\n",
		"api_key: \"" + secret + "\n",
	} {
		home := t.TempDir()
		writeFile(t, home, ".knocker.yaml", doc)
		r := runCLI(t, map[string]string{"HOME": home}, "knock")
		wantCode(t, r, exitUsage)
		if strings.Contains(r.stderr, secret) {
			t.Errorf("the error quotes the secret:\n%s", r.stderr)
		}
	}
}

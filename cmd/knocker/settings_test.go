package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-knocker/knocker/internal/testports"
)

// Flags beat the environment, which beats the config file, setting by
// setting. Knocks use the admin key with --ip, so the shared Caddy's
// loopback addresses stay unknocked.
func TestPrecedence(t *testing.T) {
	srv := sharedCaddy(t)
	good := fmt.Sprintf("http://dualstack.test:%d", srv.direct)
	bad := fmt.Sprintf("http://127.0.0.1:%d", testports.FreePort(t))
	const wrong = "wrong-key-0123456789"
	cfgHome := t.TempDir()
	dir := t.TempDir()
	adminFile := writeFile(t, dir, "admin.key", adminKey+"\n")
	wrongFile := writeFile(t, dir, "wrong.key", wrong+"\n")

	writeConfig := func(path string, cfg map[string]any) string {
		b, _ := json.Marshal(cfg)
		return writeFile(t, filepath.Dir(path), filepath.Base(path), string(b))
	}
	defaultConfig := filepath.Join(cfgHome, "knocker", "config.json")
	type env = map[string]string
	knock := func(e env, args ...string) (result, map[string]any) {
		t.Helper()
		e["XDG_CONFIG_HOME"] = cfgHome
		r := runCLI(t, e, append([]string{"knock", "--json"}, args...)...)
		assertNoKey(t, r.stdout+r.stderr, wrong)
		res := results(t, r.stdout)
		if len(res) != 1 {
			return r, nil
		}
		return r, res[0]
	}
	grant := func(e env, args ...string) (entry string, ttl float64) {
		t.Helper()
		r, res := knock(e, args...)
		wantCode(t, r, exitOK)
		return res["whitelisted_entry"].(string), res["expires_in_seconds"].(float64)
	}

	// The config file alone.
	writeConfig(defaultConfig, map[string]any{"server": good, "key": adminKey, "ttl": 90, "ip": "192.0.2.10"})
	if e, ttl := grant(env{}); e != "192.0.2.10" || ttl != 90 {
		t.Fatalf("config file: %s %v", e, ttl)
	}
	// The environment over the config file...
	if e, ttl := grant(env{"KNOCKER_TTL": "2m", "KNOCKER_IP": "192.0.2.11"}); e != "192.0.2.11" || ttl != 120 {
		t.Fatalf("environment: %s %v", e, ttl)
	}
	// ...and flags over both.
	if e, ttl := grant(env{"KNOCKER_TTL": "2m", "KNOCKER_IP": "192.0.2.11"}, "--ttl", "150", "--ip", "192.0.2.12"); e != "192.0.2.12" || ttl != 150 {
		t.Fatalf("flags: %s %v", e, ttl)
	}

	// The server: env beats the config file, the flag beats env.
	writeConfig(defaultConfig, map[string]any{"server": bad, "key": adminKey, "ip": "192.0.2.13"})
	if r, _ := knock(env{}); r.code != exitUnreachable {
		t.Fatalf("the config file's unreachable server was not used: %d", r.code)
	}
	grant(env{"KNOCKER_SERVER": good})
	if r, _ := knock(env{"KNOCKER_SERVER": bad}, "--server", good); r.code != exitOK {
		t.Fatalf("--server did not beat KNOCKER_SERVER: %d %s", r.code, r.stderr)
	}
	writeConfig(defaultConfig, map[string]any{"server": good, "key": adminKey, "ip": "192.0.2.13"})
	if r, _ := knock(env{"KNOCKER_SERVER": bad}); r.code != exitUnreachable {
		t.Fatalf("KNOCKER_SERVER did not beat the config file: %d", r.code)
	}

	// The key: a layer's key or key file beats lower layers' key and key file.
	if r, _ := knock(env{"KNOCKER_KEY": wrong}); r.code != exitBadKey {
		t.Fatalf("KNOCKER_KEY did not beat the config file's key: %d", r.code)
	}
	if r, _ := knock(env{"KNOCKER_KEY_FILE": wrongFile}); r.code != exitBadKey {
		t.Fatalf("KNOCKER_KEY_FILE did not beat the config file's key: %d", r.code)
	}
	grant(env{"KNOCKER_KEY": wrong}, "--key-file", adminFile)
	grant(env{"KNOCKER_KEY_FILE": wrongFile}, "--key", adminKey)
	if r, _ := knock(env{"KNOCKER_KEY_FILE": adminFile}, "--key", wrong); r.code != exitBadKey {
		t.Fatalf("--key did not beat KNOCKER_KEY_FILE: %d", r.code)
	}
	if r, _ := knock(env{"KNOCKER_KEY_FILE": adminFile, "KNOCKER_KEY": adminKey}); r.code != exitUsage || !strings.Contains(r.stderr, "both KNOCKER_KEY and KNOCKER_KEY_FILE are set") {
		t.Fatalf("key and key file in one layer: %d %s", r.code, r.stderr)
	}

	// A relative key_file is relative to the config file; --config and
	// KNOCKER_CONFIG name other files, the flag first.
	other := writeConfig(filepath.Join(dir, "other.json"), map[string]any{"server": good, "key_file": "admin.key", "ip": "192.0.2.14", "ttl": "1m"})
	worse := writeConfig(filepath.Join(dir, "worse.json"), map[string]any{"server": bad, "key_file": "wrong.key"})
	if e, ttl := grant(env{"KNOCKER_CONFIG": other}); e != "192.0.2.14" || ttl != 60 {
		t.Fatalf("KNOCKER_CONFIG: %s %v", e, ttl)
	}
	if e, _ := grant(env{"KNOCKER_CONFIG": worse}, "--config", other); e != "192.0.2.14" {
		t.Fatalf("--config: %s", e)
	}

	// The family, through what the server sees.
	writeConfig(defaultConfig, map[string]any{"server": good, "family": 6})
	status := func(e env, args ...string) string {
		e["XDG_CONFIG_HOME"] = cfgHome
		r := runCLI(t, e, append([]string{"status"}, args...)...)
		wantCode(t, r, exitOK)
		return r.stdout
	}
	wantContains(t, "family from the config file", status(env{}), "IPv6: ::1 is")
	wantContains(t, "family from KNOCKER_FAMILY", status(env{"KNOCKER_FAMILY": "4"}), "IPv4: 127.0.0.1 is")
	wantContains(t, "family from --family", status(env{"KNOCKER_FAMILY": "4"}, "--family", "6"), "IPv6: ::1 is")

	// The key from standard input.
	var stdout, stderr bytes.Buffer
	c := testCLI(t, map[string]string{"XDG_CONFIG_HOME": cfgHome}, &stdout, &stderr)
	c.stdin = strings.NewReader(adminKey + "\n")
	if code := c.main(context.Background(), []string{"knock", "--key-file", "-", "--ip", "192.0.2.15"}); code != exitOK {
		t.Fatalf("--key-file -: %d %s", code, stderr.String())
	}
	assertNoKey(t, stdout.String()+stderr.String())
}

func TestConfigFileErrors(t *testing.T) {
	dir := t.TempDir()
	type env = map[string]string
	cases := []struct {
		name, content string
		env           env
		args          []string
		stderr        string
	}{
		{"unknown field", `{"sever": "x"}`, nil, nil, `unknown field "sever" (known: server, key, key_file, ttl, ip, family, timeout, check_interval, ip_check_url, retry_min, retry_max)`},
		{"not JSON", `{"server": `, nil, nil, "is not valid JSON"},
		{"not an object", `["x"]`, nil, nil, "must hold a JSON object"},
		{"boolean", `{"ttl": true}`, nil, nil, `field "ttl" must be a string or a number`},
		{"bad ttl", `{"server": "h", "key": "k1234567890", "ttl": "forever"}`, nil, nil, `invalid ttl "forever" (from "ttl" in `},
		{"missing explicit file", "", env{"KNOCKER_CONFIG": filepath.Join(dir, "missing.json")}, nil, "cannot read the config file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.env
			if e == nil {
				e = env{"KNOCKER_CONFIG": writeFile(t, "", "config.json", tc.content)}
			}
			r := runCLI(t, e, append([]string{"knock"}, tc.args...)...)
			wantCode(t, r, exitUsage)
			wantContains(t, "stderr", r.stderr, tc.stderr)
		})
	}

	// A config file holding the key, readable by others: a warning naming
	// the file, never the key.
	path := writeFile(t, "", "config.json", fmt.Sprintf(`{"server": "http://127.0.0.1:%d", "key": %q}`, 1, userKey))
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, env{"KNOCKER_CONFIG": path}, "knock")
	wantCode(t, r, exitUnreachable)
	wantContains(t, "stderr", r.stderr, "holds the API key and is readable by other users (mode 0644)")
}

func TestParsers(t *testing.T) {
	for in, want := range map[string]string{
		"90":    "1m30s",
		"90s":   "1m30s",
		"1h30m": "1h30m0s",
		"7d":    "168h0m0s",
		" 5 ":   "5s",
		"0":     "0s",
	} {
		d, err := parseDuration(in)
		if err != nil || d.String() != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %s", in, d, err, want)
		}
	}
	for _, in := range []string{"", "soon", "-5", "-1s", "1.5d", "99999999999999999999"} {
		if _, err := parseDuration(in); err == nil {
			t.Errorf("parseDuration(%q) accepted", in)
		}
	}
	for in, want := range map[string]string{
		"knock.example.com":                      "https://knock.example.com",
		"knock.example.com:8443/":                "https://knock.example.com:8443",
		"https://knock.example.com/knock":        "https://knock.example.com",
		"https://knock.example.com/knock/status": "https://knock.example.com",
		"HTTP://[::1]:8080/prefix/":              "http://[::1]:8080/prefix",
	} {
		u, err := parseServer(in)
		if err != nil || u.String() != want {
			t.Errorf("parseServer(%q) = %v, %v; want %s", in, u, err, want)
		}
	}
	for _, in := range []string{"", "ftp://x", "https://", "https://u:p@host", "https://host/?q=1", "https://host/#f"} {
		if _, err := parseServer(in); err == nil {
			t.Errorf("parseServer(%q) accepted", in)
		}
	}
	for in, want := range map[string]family{"": familyAuto, "4": family4, "IPv6": family6, "both": familyBoth} {
		if f, err := parseFamily(in); err != nil || f != want {
			t.Errorf("parseFamily(%q) = %v, %v", in, f, err)
		}
	}
	for in, want := range map[string]string{"59s": "59s", "1h": "1h", "1h30m": "1h30m", "90061s": "1d1h", "3605s": "1h5s", "0s": "0s", "150ms": "150ms"} {
		d, _ := time.ParseDuration(in)
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%s) = %s, want %s", in, got, want)
		}
	}
}

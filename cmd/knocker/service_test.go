package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kardianos/service"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// start, stop and status --service act on the installed unit through
// systemctl (faked: there is no systemd user manager here).
func TestServiceControlSystemd(t *testing.T) {
	home := t.TempDir()
	env := map[string]string{"XDG_CONFIG_HOME": home}
	unitPath := filepath.Join(home, "systemd", "user", unitName)
	sd := &fakeSystemd{userManager: true, active: "inactive"}

	for _, cmd := range [][]string{{"start"}, {"stop"}, {"status", "--service"}} {
		r, _ := runInstall(t, sd, env, cmd...)
		wantCode(t, r, exitServiceNotInstalled)
		wantContains(t, cmd[0], r.stdout+r.stderr, "not installed")
	}
	for _, call := range sd.calls {
		if !strings.HasSuffix(call, "show-environment") {
			t.Fatalf("ran %s although nothing is installed", call)
		}
	}

	writeFile(t, filepath.Dir(unitPath), unitName, "[Service]\n")
	r, _ := runInstall(t, sd, env, "status", "--service")
	wantCode(t, r, exitServiceStopped)
	wantContains(t, "status", r.stdout, "Service: stopped: "+unitPath)

	wantSystemctl(t, sd, env, "start")

	sd.active = "active"
	r, _ = runInstall(t, sd, env, "status", "--service", "--json")
	wantCode(t, r, exitOK)
	doc := decodeJSON(t, r.stdout)
	if svc := doc["service"].(map[string]any); svc["state"] != "running" || svc["location"] != unitPath {
		t.Fatalf("status --json: %s", r.stdout)
	}
	r, _ = runInstall(t, sd, env, "start")
	wantCode(t, r, exitOK)
	wantContains(t, "start", r.stdout, "already running")

	wantSystemctl(t, sd, env, "stop")

	sd.active = "failed"
	r, _ = runInstall(t, sd, env, "status", "--service")
	wantCode(t, r, exitServiceStopped)
	wantContains(t, "status", r.stdout, "Service: stopped (failed)")

	// A unit waiting for its next restart after a failure is a crash loop.
	sd.active, sd.subState = "activating", "auto-restart"
	r, _ = runInstall(t, sd, env, "status", "--service")
	wantCode(t, r, exitServiceStopped)
	wantContains(t, "status", r.stdout, "failing and being restarted (auto-restart)")
	sd.subState = "start"
	r, _ = runInstall(t, sd, env, "status", "--service")
	wantCode(t, r, exitOK)

	// Without a user manager the state is unknown (exit 1), and start
	// changes nothing.
	sd = &fakeSystemd{userManager: false}
	r, _ = runInstall(t, sd, env, "status", "--service")
	wantCode(t, r, exitError)
	wantContains(t, "status", r.stdout, "Service: unknown (no systemd user manager")
	r, _ = runInstall(t, sd, env, "start")
	wantCode(t, r, exitError)
	wantContains(t, "start", r.stderr, "cannot start the service: no systemd user manager")
}

// wantSystemctl runs `knocker verb` and checks that it ran systemctl verb.
func wantSystemctl(t *testing.T, sd *fakeSystemd, env map[string]string, verb string) {
	t.Helper()
	sd.calls = nil
	r, _ := runInstall(t, sd, env, verb)
	wantCode(t, r, exitOK)
	if !strings.Contains(strings.Join(sd.calls, "\n"), "systemctl --user "+verb+" knocker.service") {
		t.Fatalf("systemctl calls:\n%s", strings.Join(sd.calls, "\n"))
	}
}

// Plain `knocker status` reports the service besides the server's view.
func TestStatusShowsService(t *testing.T) {
	srv := sharedCaddy(t)
	env := map[string]string{"KNOCKER_SERVER": fmt.Sprintf("http://127.0.0.1:%d", srv.direct)}
	r := runCLI(t, env, "status", "--family", "4")
	wantCode(t, r, exitOK)
	wantContains(t, "stdout", r.stdout, "127.0.0.1 is")
	wantContains(t, "stderr", r.stderr, "knocker status: service: not installed\n")
	r = runCLI(t, env, "status", "--family", "4", "--json")
	wantCode(t, r, exitOK)
	if svc, ok := decodeJSON(t, r.stdout)["service"].(map[string]any); !ok || svc["state"] != "not installed" {
		t.Fatalf("stdout:\n%s", r.stdout)
	}
}

// The launchd plist and the Windows service configuration, made by the
// code install uses, with fixed paths, match testdata/ (go test -update
// rewrites them). The key comes from KNOCKER_KEY, so it must be saved to a
// file and only that file named.
func TestServiceDefinitionsGolden(t *testing.T) {
	for _, tc := range []struct {
		goos, home, configHome, exe, golden string
	}{
		{"darwin", "/Users/alice", "/Users/alice/Library/Application Support", "/usr/local/bin/knocker", "knocker.plist"},
		// filepath.Join writes "/" here where Windows would write "\".
		{"windows", `C:\Users\alice`, `C:\Users\alice\AppData\Roaming`, `C:\Program Files\knocker\knocker.exe`, "knocker-windows-service.txt"},
	} {
		t.Run(tc.goos, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			c := testCLI(t, map[string]string{"HOME": tc.home, "KNOCKER_KEY": userKey, "KNOCKER_SERVER": "knock.example.com/a&b"}, &stdout, &stderr)
			c.goos = tc.goos
			p, code, done := c.parseFlags("install", "", "", runFlags, []string{"--family", "both", "--ttl", "8h", "--check-interval", "30s"})
			if done {
				t.Fatalf("flags: %d %s", code, stderr.String())
			}
			s, cerr := c.resolve(p, true)
			if cerr != nil {
				t.Fatal(cerr.msg)
			}
			b := c.backend(tc.configHome)
			_, keyPath, def, err := c.serviceDefinition(b, s, tc.configHome, tc.exe)
			if err != nil {
				t.Fatal(err)
			}
			assertNoKey(t, def)
			if keyPath == "" || !strings.Contains(def, keyPath) {
				t.Fatalf("the key file %q is not referenced:\n%s", keyPath, def)
			}
			golden := filepath.Join("testdata", tc.golden)
			if *update {
				if err := os.WriteFile(golden, []byte(def), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -run Golden -update writes it)", err)
			}
			if def != string(want) {
				t.Fatalf("%s differs (go test -run Golden -update rewrites it); got:\n%s", golden, def)
			}
		})
	}
}

// The plist reaches kardianos/service's template engine: no "{{" may
// survive in it, and XML specials are escaped.
func TestLaunchdPlistEscaping(t *testing.T) {
	plist, err := launchdPlist("/opt/{{Path}}/knocker", []string{"run", "--server", "https://h/a&b<c>"}, "/Users/x")
	if err != nil {
		t.Fatal(err)
	}
	wantContains(t, "plist", plist, "<string>/opt/&#123;&#123;Path}}/knocker</string>", "<string>https://h/a&amp;b&lt;c&gt;</string>")
	if strings.Contains(plist, "{{") {
		t.Fatalf("template action left in the plist:\n%s", plist)
	}
	cfg, err := serviceConfig("darwin", "/usr/local/bin/knocker", []string{"run"}, "/Users/x")
	if err != nil || cfg.Option[optUserService] != true || cfg.Name != "knocker" {
		t.Fatalf("darwin config: %+v, %v", cfg, err)
	}
	if _, err := launchdPlist("/usr/local/bin/knocker", []string{"a\nb"}, "/Users/x"); err == nil {
		t.Fatal("a newline was accepted")
	}
}

// The Windows service's Start and Stop run and stop the real run loop
// against a real server; Stop returns once the loop has stopped cleanly.
func TestServiceProgramStartStop(t *testing.T) {
	srv := sharedCaddy(t)
	p := startProxy(t, srv.proxied, "198.51.100.40", "2001:db8::40")
	var out lockedBuffer
	c := testCLI(t, map[string]string{"KNOCKER_KEY": userKey}, &out, &out)
	exited := make(chan int, 1)
	prg := &program{c: c, args: []string{"--server", p.url(), "--family", "4", "--ttl", "1h"}, exit: func(code int) { exited <- code }}
	var s service.Service // the program does not use it
	if err := prg.Start(s); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a knock", func() bool { return p.count("198.51.100.40") >= 1 })
	if err := prg.Stop(s); err != nil {
		t.Fatal(err)
	}
	if prg.code != exitOK {
		t.Fatalf("exit code %d\n%s", prg.code, out.String())
	}
	wantContains(t, "log", out.String(), "whitelisted 198.51.100.40 for 1h", "stopped: "+errServiceStop.Error())
	select {
	case code := <-exited:
		t.Fatalf("exit(%d) called after a requested stop", code)
	default:
	}

	// A configuration error ends run on its own: exit is called with 2.
	prg = &program{c: testCLI(t, nil, &out, &out), args: []string{"--family", "4"}, exit: func(code int) { exited <- code }}
	if err := prg.Start(s); err != nil {
		t.Fatal(err)
	}
	if code := <-exited; code != exitUsage {
		t.Fatalf("exit(%d), want %d", code, exitUsage)
	}
}

type fakeLogger struct {
	service.Logger
	mu    sync.Mutex
	lines []string
}

func (l *fakeLogger) Info(v ...any) error    { return l.add("info", v...) }
func (l *fakeLogger) Warning(v ...any) error { return l.add("warning", v...) }
func (l *fakeLogger) Error(v ...any) error   { return l.add("error", v...) }
func (l *fakeLogger) add(level string, v ...any) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, level+": "+fmt.Sprint(v...))
	return nil
}

func TestEventLogWriter(t *testing.T) {
	l := &fakeLogger{}
	w := &eventLogWriter{l: l}
	fmt.Fprint(w, "whitelisted 192.0.2.1 for 1h\nknock failed, retrying in 2s: ")
	fmt.Fprint(w, "refused\nknocker run: no server\npartial")
	want := "info: whitelisted 192.0.2.1 for 1h\nwarning: knock failed, retrying in 2s: refused\nerror: knocker run: no server"
	if got := strings.Join(l.lines, "\n"); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

// Where the library cannot act (here: a darwin or windows goos on Linux),
// install and uninstall print the definition and the steps, and change
// nothing.
func TestInstallPrintsElsewhere(t *testing.T) {
	for goos, want := range map[string]string{
		"darwin":  "Save this file as /Users/bob/Library/LaunchAgents/knocker.plist",
		"windows": `From an elevated (administrator) prompt, "knocker install" creates this service`,
	} {
		t.Run(goos, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			c := testCLI(t, map[string]string{"HOME": "/Users/bob", "KNOCKER_SERVER": "knock.example.com", "KNOCKER_KEY": userKey}, &stdout, &stderr)
			c.goos = goos
			if code := c.main(t.Context(), []string{"install"}); code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			assertNoKey(t, stdout.String()+stderr.String())
			wantContains(t, "stdout", stdout.String(), "nothing was changed", want, "--key-file")
			stdout.Reset()
			if code := c.main(t.Context(), []string{"uninstall"}); code != exitOK {
				t.Fatalf("uninstall exit %d: %s", code, stderr.String())
			}
			wantContains(t, "stdout", stdout.String(), "nothing was changed")
		})
	}
}

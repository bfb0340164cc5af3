package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeSystemd records systemctl invocations; userManager false makes
// `systemctl --user show-environment` fail as without a user session.
type fakeSystemd struct {
	calls       []string
	userManager bool
	failEnable  bool
	active      string // what `systemctl --user is-active` prints
	subState    string // what `systemctl --user show -p SubState --value` prints
}

func (f *fakeSystemd) install(c *cli) {
	c.lookPath = func(name string) (string, error) {
		if name == "systemctl" {
			return "/usr/bin/systemctl", nil
		}
		return "", errors.New("not found")
	}
	c.runCommand = func(_ context.Context, name string, args ...string) ([]byte, error) {
		call := name + " " + strings.Join(args, " ")
		f.calls = append(f.calls, call)
		switch {
		case strings.HasSuffix(call, "show-environment") && !f.userManager:
			return []byte("Failed to connect to bus: No medium found\n"), errors.New("exit status 1")
		case strings.Contains(call, "enable") && f.failEnable:
			return []byte("Failed to enable unit\n"), errors.New("exit status 1")
		case strings.Contains(call, "show -p SubState"):
			return []byte(f.subState + "\n"), nil
		case strings.Contains(call, "is-active"):
			if f.active != "active" {
				return []byte(f.active + "\n"), errors.New("exit status 3")
			}
			return []byte("active\n"), nil
		}
		return nil, nil
	}
}

type installEnv struct {
	home     string
	unitPath string
	keyPath  string
}

func runInstall(t *testing.T, sd *fakeSystemd, env map[string]string, args ...string) (result, installEnv) {
	t.Helper()
	home := env["XDG_CONFIG_HOME"]
	var stdout, stderr bytes.Buffer
	c := testCLI(t, env, &stdout, &stderr)
	c.executable = func() (string, error) { return "/opt/knocker 1/bin/knocker", nil }
	if sd != nil {
		sd.install(c)
	}
	code := c.main(context.Background(), args)
	r := result{code, stdout.String(), stderr.String()}
	assertNoKey(t, r.stdout+r.stderr)
	return r, installEnv{home, filepath.Join(home, "systemd", "user", "knocker.service"), filepath.Join(home, "knocker", "key")}
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestInstallWithKeyFromEnvironment(t *testing.T) {
	sd := &fakeSystemd{userManager: true}
	env := map[string]string{"XDG_CONFIG_HOME": t.TempDir(), "KNOCKER_KEY": userKey, "KNOCKER_SERVER": "knock.example.com", "KNOCKER_FAMILY": "both"}
	r, ie := runInstall(t, sd, env, "install", "--ttl", "8h", "--check-interval", "30s")
	wantCode(t, r, exitOK)

	unit, err := os.ReadFile(ie.unitPath)
	if err != nil {
		t.Fatal(err)
	}
	assertNoKey(t, string(unit))
	if m := mode(t, ie.unitPath); m != 0o600 {
		t.Errorf("unit mode %04o, want 0600", m)
	}
	want := `ExecStart="/opt/knocker 1/bin/knocker" run --server https://knock.example.com --family both --ttl 28800 --check-interval 30s --key-file ` + ie.keyPath + "\n"
	wantContains(t, "unit", string(unit), want, "[Install]\nWantedBy=default.target\n", "Restart=on-failure")

	key, err := os.ReadFile(ie.keyPath)
	if err != nil || string(key) != userKey+"\n" {
		t.Fatalf("key file: %v", err)
	}
	if m := mode(t, ie.keyPath); m != 0o600 {
		t.Errorf("key file mode %04o, want 0600", m)
	}
	if m := mode(t, filepath.Dir(ie.keyPath)); m != 0o700 {
		t.Errorf("key directory mode %04o, want 0700", m)
	}
	wantCalls := []string{
		"systemctl --user show-environment",
		"systemctl --user daemon-reload",
		"systemctl --user enable --now knocker.service",
	}
	if strings.Join(sd.calls, "\n") != strings.Join(wantCalls, "\n") {
		t.Fatalf("systemctl calls:\n%s", strings.Join(sd.calls, "\n"))
	}
	wantContains(t, "stdout", r.stdout, "Saved the API key (from KNOCKER_KEY) to "+ie.keyPath, "Started the service ("+ie.unitPath)

	// uninstall: disable, remove, reload; the key file stays (and is said to).
	sd.calls = nil
	r, _ = runInstall(t, sd, map[string]string{"XDG_CONFIG_HOME": ie.home}, "uninstall")
	wantCode(t, r, exitOK)
	if _, err := os.Stat(ie.unitPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("unit still there: %v", err)
	}
	wantCalls = []string{
		"systemctl --user show-environment",
		"systemctl --user show-environment", // status: is it installed, running?
		"systemctl --user is-active knocker.service",
		"systemctl --user disable --now knocker.service",
		"systemctl --user daemon-reload",
	}
	if strings.Join(sd.calls, "\n") != strings.Join(wantCalls, "\n") {
		t.Fatalf("systemctl calls:\n%s", strings.Join(sd.calls, "\n"))
	}
	wantContains(t, "stdout", r.stdout, "Removed "+ie.unitPath, "still in "+ie.keyPath)

	r, _ = runInstall(t, sd, map[string]string{"XDG_CONFIG_HOME": ie.home}, "uninstall")
	wantCode(t, r, exitOK)
	wantContains(t, "stdout", r.stdout, "The service is not installed ("+ie.unitPath)
}

// A key read from a file is referenced, not copied; a key in the config
// file makes the unit reference the config file. A key given with --key is
// saved to a file.
func TestInstallKeySources(t *testing.T) {
	t.Run("key file", func(t *testing.T) {
		keyFile := writeFile(t, "", "my key", userKey)
		env := map[string]string{"XDG_CONFIG_HOME": t.TempDir(), "KNOCKER_SERVER": "http://[::1]:8080/knock"}
		r, ie := runInstall(t, &fakeSystemd{userManager: true}, env, "install", "--key-file", keyFile, "--ip", "192.0.2.0/24", "--family", "4")
		wantCode(t, r, exitOK)
		unit, _ := os.ReadFile(ie.unitPath)
		wantContains(t, "unit", string(unit), `run --server http://[::1]:8080 --family 4 --ip 192.0.2.0/24 --key-file "`+keyFile+`"`)
		if _, err := os.Stat(ie.keyPath); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a key file was written although the key came from one: %v", err)
		}
	})
	t.Run("config file", func(t *testing.T) {
		home := t.TempDir()
		cfg := writeFile(t, filepath.Join(home, "knocker"), "config.json", `{"server": "knock.example.com", "key": "`+userKey+`"}`)
		r, ie := runInstall(t, &fakeSystemd{userManager: true}, map[string]string{"XDG_CONFIG_HOME": home}, "install")
		wantCode(t, r, exitOK)
		unit, _ := os.ReadFile(ie.unitPath)
		assertNoKey(t, string(unit))
		wantContains(t, "unit", string(unit), "run --server https://knock.example.com --family auto --config "+cfg+"\n")
	})
	t.Run("--key", func(t *testing.T) {
		env := map[string]string{"XDG_CONFIG_HOME": t.TempDir(), "KNOCKER_SERVER": "knock.example.com"}
		r, ie := runInstall(t, &fakeSystemd{userManager: true}, env, "install", "--key", userKey)
		wantCode(t, r, exitOK)
		unit, _ := os.ReadFile(ie.unitPath)
		assertNoKey(t, string(unit))
		wantContains(t, "unit", string(unit), "--key-file "+ie.keyPath)
		if key, _ := os.ReadFile(ie.keyPath); string(key) != userKey+"\n" {
			t.Fatal("the key was not saved")
		}
	})
	t.Run("systemctl fails", func(t *testing.T) {
		env := map[string]string{"XDG_CONFIG_HOME": t.TempDir(), "KNOCKER_SERVER": "knock.example.com", "KNOCKER_KEY": userKey}
		r, _ := runInstall(t, &fakeSystemd{userManager: true, failEnable: true}, env, "install")
		wantCode(t, r, exitError)
		wantContains(t, "stderr", r.stderr, "systemctl --user enable --now knocker.service failed", "Failed to enable unit")
	})
	t.Run("no key", func(t *testing.T) {
		env := map[string]string{"XDG_CONFIG_HOME": t.TempDir(), "KNOCKER_SERVER": "knock.example.com"}
		r, ie := runInstall(t, &fakeSystemd{userManager: true}, env, "install")
		wantCode(t, r, exitUsage)
		if _, err := os.Stat(ie.unitPath); !errors.Is(err, os.ErrNotExist) {
			t.Fatal("a unit was written without a key")
		}
	})
}

// Without systemctl, without a user manager, or with --print: nothing is
// written, the unit and the commands are printed, exit 0.
func TestInstallWithoutSystemd(t *testing.T) {
	for name, sd := range map[string]*fakeSystemd{
		"no systemctl":    nil,
		"no user manager": {userManager: false},
		"--print":         {userManager: true},
	} {
		t.Run(name, func(t *testing.T) {
			env := map[string]string{"XDG_CONFIG_HOME": t.TempDir(), "KNOCKER_SERVER": "knock.example.com", "KNOCKER_KEY": userKey}
			args := []string{"install"}
			if name == "--print" {
				args = append(args, "--print")
			}
			r, ie := runInstall(t, sd, env, args...)
			wantCode(t, r, exitOK)
			wantContains(t, "stdout", r.stdout,
				"othing was changed", // "nothing ..." or "Nothing ... (--print)"
				"Save your API key, readable by you only, in "+ie.keyPath,
				"Save this unit as "+ie.unitPath,
				`   ExecStart="/opt/knocker 1/bin/knocker" run --server https://knock.example.com --family auto --key-file `+ie.keyPath,
				"systemctl --user daemon-reload\n   systemctl --user enable --now knocker.service")
			if name == "no user manager" {
				wantContains(t, "stdout", r.stdout, "no systemd user manager: Failed to connect to bus")
			}
			for _, p := range []string{ie.unitPath, ie.keyPath} {
				if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("%s was written", p)
				}
			}
			if sd != nil {
				for _, call := range sd.calls {
					if call != "systemctl --user show-environment" {
						t.Fatalf("ran %s", call)
					}
				}
			}

			r, _ = runInstall(t, sd, map[string]string{"XDG_CONFIG_HOME": ie.home}, append([]string{"uninstall"}, args[1:]...)...)
			wantCode(t, r, exitOK)
			wantContains(t, "stdout", r.stdout, "systemctl --user disable --now knocker.service", "rm -f "+ie.unitPath)
		})
	}
}

func TestSystemdQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/bin/knocker":        "/usr/bin/knocker",
		"/opt/my knocker/knocker": `"/opt/my knocker/knocker"`,
		"https://[::1]:8080/x":    "https://[::1]:8080/x",
		"100%":                    "100%%",
		`a"b\c`:                   `"a\"b\\c"`,
		"$HOME":                   "$$HOME",
		"":                        `""`,
	} {
		got, err := systemdQuote(in)
		if err != nil || got != want {
			t.Errorf("systemdQuote(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	if _, err := systemdQuote("a\nb"); err == nil {
		t.Error("a newline was accepted")
	}
}

// The real commands through a fake systemctl script on PATH (systemd does
// not run here): install, status, stop and uninstall exec it as they would
// exec systemctl.
func TestServiceWithSystemctlScript(t *testing.T) {
	bin := t.TempDir()
	calls := filepath.Join(bin, "calls")
	state := filepath.Join(bin, "state")
	script := `#!/bin/sh
echo "$*" >> '` + calls + `'
case "$*" in
*is-active*) s=$(cat '` + state + `' 2>/dev/null || echo inactive); echo "$s"; [ "$s" = active ] ;;
*"enable --now"*|*" start "*) echo active > '` + state + `' ;;
*"disable --now"*|*" stop "*) echo inactive > '` + state + `' ;;
esac
`
	writeFile(t, bin, "systemctl", script)
	if err := os.Chmod(filepath.Join(bin, "systemctl"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	home := t.TempDir()
	run := func(args ...string) result {
		t.Helper()
		var stdout, stderr bytes.Buffer
		c := testCLI(t, map[string]string{"XDG_CONFIG_HOME": home, "KNOCKER_SERVER": "knock.example.com", "KNOCKER_KEY": userKey}, &stdout, &stderr)
		real := newCLI()
		c.lookPath, c.runCommand = real.lookPath, real.runCommand
		r := result{c.main(context.Background(), args), stdout.String(), stderr.String()}
		assertNoKey(t, r.stdout+r.stderr)
		return r
	}
	wantCode(t, run("install"), exitOK)
	r := run("status", "--service")
	wantCode(t, r, exitOK)
	wantContains(t, "status", r.stdout, "Service: running: "+filepath.Join(home, "systemd", "user", unitName))
	wantCode(t, run("stop"), exitOK)
	wantCode(t, run("status", "--service"), exitServiceStopped)
	wantCode(t, run("uninstall"), exitOK)
	wantCode(t, run("status", "--service"), exitServiceNotInstalled)
	got, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--user daemon-reload", "--user enable --now knocker.service", "--user is-active knocker.service", "--user stop knocker.service", "--user disable --now knocker.service"} {
		wantContains(t, "systemctl calls", string(got), want+"\n")
	}
}

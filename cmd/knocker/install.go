package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const unitName = "knocker.service"

const aboutInstall = `Installs "knocker run" as a systemd user service (` + unitName + `) with the
settings resolved now from flags, environment and config file, and starts it:
writes $XDG_CONFIG_HOME/systemd/user/` + unitName + ` (mode 0600), then runs
"systemctl --user daemon-reload" and "systemctl --user enable --now ` + unitName + `".

The key never appears in the unit or in the service's arguments: a key read
from a file is referenced with --key-file, a key written in the config file
with --config, and a key given with --key or KNOCKER_KEY is saved to
$XDG_CONFIG_HOME/knocker/key (mode 0600) and referenced with --key-file.

Without systemctl or a systemd user manager, or with --print, it changes
nothing and prints the unit and the commands to install it by hand.`

const aboutUninstall = `Stops, disables and removes the systemd user service written by "knocker
install" (systemctl --user disable --now; then daemon-reload). A key file
saved by install is left in place. Without systemctl or a systemd user
manager, or with --print, it changes nothing and prints the commands.`

func (c *cli) cmdInstall(ctx context.Context, args []string) int {
	names := append(append([]string{}, runFlags...), "print")
	p, code, done := c.parseFlags("install", "[flags]", aboutInstall, names, args)
	if done {
		return code
	}
	s, cerr := c.resolve(p, true)
	if cerr != nil {
		return c.fatal("install", false, cerr)
	}
	stdout, stderr := redacting(c.stdout, s.key), redacting(c.stderr, s.key)
	printWarnings(stderr, "install", s)
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "knocker install: "+format+"\n", args...)
		return exitError
	}
	home, err := c.configHome()
	if err != nil {
		return fail("cannot find the user's config directory: %v", err)
	}
	unitPath := filepath.Join(home, "systemd", "user", unitName)
	exe, err := c.executable()
	if err != nil {
		return fail("cannot find this program's path: %v", err)
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	if abs, err := filepath.Abs(exe); err == nil {
		exe = abs
	}

	if strings.Contains(exe, string(filepath.Separator)+"go-build") {
		fmt.Fprintf(stderr, "knocker install: warning: %s looks like a temporary \"go run\" binary; build or install knocker and run install from there\n", exe)
	}
	runArgs, keyPath := c.serviceArgs(s, home)
	unit, err := renderUnit(exe, runArgs)
	if err != nil {
		return fail("%v", err)
	}

	available, why := c.systemdAvailable(ctx)
	if p.bool("print") || !available {
		if available {
			fmt.Fprintf(stdout, "Nothing was changed (--print). To install the service by hand:\n\n")
		} else {
			fmt.Fprintf(stdout, "systemd is not available (%s): nothing was changed.\nTo install the service by hand:\n\n", why)
		}
		step := 1
		if keyPath != "" {
			fmt.Fprintf(stdout, "%d. Save your API key, readable by you only, in %s:\n\n   mkdir -p -m 700 %s && (umask 077 && cat > %s)\n   (type or paste the key, then Enter and Ctrl-D)\n\n",
				step, keyPath, shellQuote(filepath.Dir(keyPath)), shellQuote(keyPath))
			step++
		}
		fmt.Fprintf(stdout, "%d. Save this unit as %s (mode 0600):\n\n%s\n", step, unitPath, indent(unit, "   "))
		fmt.Fprintf(stdout, "%d. Then run:\n\n   systemctl --user daemon-reload\n   systemctl --user enable --now %s\n\n", step+1, unitName)
		fmt.Fprintf(stdout, "Its log: journalctl --user -u %s -f\n", unitName)
		return exitOK
	}

	if keyPath != "" {
		if err := writeFileAtomic(keyPath, []byte(s.key+"\n")); err != nil {
			return fail("cannot save the key: %v", err)
		}
		fmt.Fprintf(stdout, "Saved the API key (from %s) to %s (mode 0600).\n", s.keyOrigin, keyPath)
	}
	if err := writeFileAtomic(unitPath, []byte(unit)); err != nil {
		return fail("cannot write the unit: %v", err)
	}
	fmt.Fprintf(stdout, "Wrote %s.\n", unitPath)
	for _, a := range [][]string{{"--user", "daemon-reload"}, {"--user", "enable", "--now", unitName}} {
		if err := c.systemctl(ctx, stdout, a...); err != nil {
			return fail("%v", err)
		}
	}
	fmt.Fprintf(stdout, "Started %s.\nIts log: journalctl --user -u %s -f\nTo keep it running while you are logged out: loginctl enable-linger\n", unitName, unitName)
	return exitOK
}

func (c *cli) cmdUninstall(ctx context.Context, args []string) int {
	p, code, done := c.parseFlags("uninstall", "[--print]", aboutUninstall, []string{"print"}, args)
	if done {
		return code
	}
	home, err := c.configHome()
	if err != nil {
		fmt.Fprintf(c.stderr, "knocker uninstall: cannot find the user's config directory: %v\n", err)
		return exitError
	}
	unitPath := filepath.Join(home, "systemd", "user", unitName)
	keyPath := filepath.Join(home, "knocker", "key")
	available, why := c.systemdAvailable(ctx)
	if p.bool("print") || !available {
		if available {
			fmt.Fprintf(c.stdout, "Nothing was changed (--print). To remove the service by hand:\n\n")
		} else {
			fmt.Fprintf(c.stdout, "systemd is not available (%s): nothing was changed.\nTo remove the service by hand:\n\n", why)
		}
		fmt.Fprintf(c.stdout, "   systemctl --user disable --now %s\n   rm -f %s\n   systemctl --user daemon-reload\n", unitName, shellQuote(unitPath))
		return exitOK
	}
	if _, err := os.Stat(unitPath); errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(c.stdout, "%s is not installed (%s does not exist).\n", unitName, unitPath)
		return exitOK
	}
	if err := c.systemctl(ctx, c.stdout, "--user", "disable", "--now", unitName); err != nil {
		fmt.Fprintf(c.stderr, "knocker uninstall: warning: %v\n", err)
	}
	if err := os.Remove(unitPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(c.stderr, "knocker uninstall: cannot remove the unit: %v\n", err)
		return exitError
	}
	fmt.Fprintf(c.stdout, "Removed %s.\n", unitPath)
	if err := c.systemctl(ctx, c.stdout, "--user", "daemon-reload"); err != nil {
		fmt.Fprintf(c.stderr, "knocker uninstall: %v\n", err)
		return exitError
	}
	if _, err := os.Stat(keyPath); err == nil {
		fmt.Fprintf(c.stdout, "The API key saved by install is still in %s: delete it if you no longer need it.\n", keyPath)
	}
	return exitOK
}

// serviceArgs are the arguments of `knocker run` in the unit: the resolved
// settings, and a reference to the key, never the key. keyPath is where the
// key must be saved for the unit to find it ("" when it already is in a
// file).
func (c *cli) serviceArgs(s *settings, home string) (args []string, keyPath string) {
	args = []string{"run", "--server", s.server.String(), "--family", s.family.String()}
	if s.ttl > 0 {
		args = append(args, "--ttl", strconv.FormatInt(int64(s.ttl/time.Second), 10))
	}
	if s.ip != "" {
		args = append(args, "--ip", s.ip)
	}
	for _, d := range []struct {
		name     string
		val, def time.Duration
	}{
		{"timeout", s.timeout, defaultTimeout},
		{"check-interval", s.checkInterval, defaultCheckInterval},
		{"retry-min", s.retryMin, defaultRetryMin},
		{"retry-max", s.retryMax, defaultRetryMax},
	} {
		if d.val != d.def {
			args = append(args, "--"+d.name, d.val.String())
		}
	}
	switch {
	case s.keyFile != "":
		args = append(args, "--key-file", s.keyFile)
	case s.keyInFile:
		path := s.keyConfig
		if abs, err := filepath.Abs(path); err == nil {
			path = abs
		}
		args = append(args, "--config", path)
	default:
		keyPath = filepath.Join(home, "knocker", "key")
		args = append(args, "--key-file", keyPath)
	}
	return args, keyPath
}

// renderUnit writes the systemd unit running exe with args.
func renderUnit(exe string, args []string) (string, error) {
	words := make([]string, 0, len(args)+1)
	for _, a := range append([]string{exe}, args...) {
		q, err := systemdQuote(a)
		if err != nil {
			return "", err
		}
		words = append(words, q)
	}
	return fmt.Sprintf(`# Written by "knocker install" (knocker-cli %s); remove with "knocker uninstall".
# The API key is not in this file: the service reads it from the file named below.
[Unit]
Description=Knocker client: keeps this device whitelisted
Documentation=https://github.com/caddy-knocker/knocker

[Service]
Type=simple
ExecStart=%s
Restart=on-failure
RestartSec=30s
NoNewPrivileges=yes

[Install]
WantedBy=default.target
`, cliVersion(), strings.Join(words, " ")), nil
}

// systemdQuote quotes one ExecStart word: specifiers (%) and variables ($)
// are escaped, and a word with anything but plain characters is put in
// double quotes with C-style escapes.
func systemdQuote(s string) (string, error) {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("%q contains a control character: it cannot be written into a unit", s)
		}
	}
	s = strings.NewReplacer("%", "%%", "$", "$$").Replace(s)
	plain := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@+=,%$[]", r)) {
			plain = false
			break
		}
	}
	if plain {
		return s, nil
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`, nil
}

func shellQuote(s string) string {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@+=,", r)) {
			return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
	}
	return s
}

func indent(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	var b strings.Builder
	for _, l := range lines {
		if l != "" && l != "\n" {
			b.WriteString(prefix)
		}
		b.WriteString(l)
	}
	return b.String()
}

// systemdAvailable reports whether a systemd user manager can be asked to
// run the service.
func (c *cli) systemdAvailable(ctx context.Context) (bool, string) {
	if c.goos != "linux" {
		return false, "not Linux"
	}
	if _, err := c.lookPath("systemctl"); err != nil {
		return false, "systemctl not found"
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if out, err := c.runCommand(ctx, "systemctl", "--user", "show-environment"); err != nil {
		msg := strings.TrimSpace(firstLine(string(out)))
		if msg == "" {
			msg = err.Error()
		}
		return false, "no systemd user manager: " + sanitize(msg)
	}
	return true, ""
}

func (c *cli) systemctl(ctx context.Context, out io.Writer, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	fmt.Fprintf(out, "systemctl %s\n", strings.Join(args, " "))
	if b, err := c.runCommand(ctx, "systemctl", args...); err != nil {
		return fmt.Errorf("systemctl %s failed: %v\n%s", strings.Join(args, " "), err, strings.TrimSpace(string(b)))
	}
	return nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// writeFileAtomic writes data to path with mode 0600 (its directory 0700
// when created) through a temporary file and a rename.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

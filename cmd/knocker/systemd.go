package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"
)

// Linux uses its own systemd code rather than kardianos/service's, which
// (v1.3.0) for a user service quotes ExecStart words without escaping % or $
// or backslashes, writes the unit 0644 in place and refuses to overwrite
// it, ignores $XDG_CONFIG_HOME, runs "enable" without starting, reports a
// failed unit as an error rather than stopped, and cannot tell "no systemd
// user manager" from "not installed" (it detects systemd by the system
// manager and falls back to SysV scripts, which have no user services).

const unitName = serviceName + ".service"

// systemdBackend is the systemd user service (~/.config/systemd/user).
type systemdBackend struct {
	c        *cli
	unitPath string
}

func (b *systemdBackend) available(ctx context.Context) (bool, string) {
	return b.c.systemdAvailable(ctx)
}

func (b *systemdBackend) location() string { return b.unitPath }

func (b *systemdBackend) logHint() string { return "journalctl --user -u " + unitName + " -f" }

func (b *systemdBackend) definition(exe string, args []string) (string, error) {
	return renderUnit(exe, args)
}

func (b *systemdBackend) printInstall(w io.Writer, step int, unit string) {
	fmt.Fprintf(w, "%d. Save this unit as %s (mode 0600):\n\n%s\n", step, b.unitPath, indent(unit, "   "))
	fmt.Fprintf(w, "%d. Then run:\n\n   systemctl --user daemon-reload\n   systemctl --user enable --now %s\n\n", step+1, unitName)
}

func (b *systemdBackend) printUninstall(w io.Writer) {
	fmt.Fprintf(w, "   systemctl --user disable --now %s\n   rm -f %s\n   systemctl --user daemon-reload\n", unitName, shellQuote(b.unitPath))
}

func (b *systemdBackend) install(ctx context.Context, out io.Writer, _ string, _ []string, unit string) error {
	if err := writeFileAtomic(b.unitPath, []byte(unit)); err != nil {
		return fmt.Errorf("cannot write the unit: %v", err)
	}
	fmt.Fprintf(out, "Wrote %s.\n", b.unitPath)
	for _, a := range [][]string{{"--user", "daemon-reload"}, {"--user", "enable", "--now", unitName}} {
		if err := b.c.systemctl(ctx, out, a...); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "To keep it running while you are logged out: loginctl enable-linger\n")
	return nil
}

func (b *systemdBackend) uninstall(ctx context.Context, out io.Writer) error {
	if err := b.c.systemctl(ctx, out, "--user", "disable", "--now", unitName); err != nil {
		fmt.Fprintf(b.c.stderr, "knocker uninstall: warning: %v\n", err)
	}
	if err := os.Remove(b.unitPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cannot remove the unit: %v", err)
	}
	fmt.Fprintf(out, "Removed %s.\n", b.unitPath)
	return b.c.systemctl(ctx, out, "--user", "daemon-reload")
}

func (b *systemdBackend) start(ctx context.Context, out io.Writer) error {
	return b.c.systemctl(ctx, out, "--user", "start", unitName)
}

func (b *systemdBackend) stop(ctx context.Context, out io.Writer) error {
	return b.c.systemctl(ctx, out, "--user", "stop", unitName)
}

// status: no unit file is "not installed" (with or without systemd);
// otherwise `systemctl --user is-active` decides.
func (b *systemdBackend) status(ctx context.Context) (serviceState, string) {
	if _, err := os.Stat(b.unitPath); errors.Is(err, fs.ErrNotExist) {
		return stateNotInstalled, ""
	}
	if ok, why := b.c.systemdAvailable(ctx); !ok {
		return stateUnknown, why
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// is-active exits non-zero unless active; its output is the state.
	out, err := b.c.runCommand(ctx, "systemctl", "--user", "is-active", unitName)
	switch state := firstLine(string(out)); state {
	case "activating":
		// A unit waiting to be restarted after a failure (Restart=) is
		// "activating" most of the time: that is a crash loop, not running.
		if sub, _ := b.c.runCommand(ctx, "systemctl", "--user", "show", "-p", "SubState", "--value", unitName); firstLine(string(sub)) == "auto-restart" {
			return stateStopped, "failing and being restarted (auto-restart): see journalctl --user -u " + unitName
		}
		return stateRunning, ""
	case "active", "reloading", "refreshing":
		return stateRunning, ""
	case "inactive":
		return stateStopped, ""
	case "failed", "deactivating":
		return stateStopped, state
	case "":
		if err != nil {
			return stateUnknown, "systemctl --user is-active: " + sanitize(err.Error())
		}
		return stateUnknown, ""
	default:
		return stateUnknown, "systemctl --user is-active: " + sanitize(state)
	}
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

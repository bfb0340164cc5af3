package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const aboutInstall = `Installs "knocker run" as a per-user service with the settings resolved now
from flags, environment and config file, and starts it:
  Linux    a systemd user unit, $XDG_CONFIG_HOME/systemd/user/knocker.service
           (mode 0600); then "systemctl --user daemon-reload" and
           "systemctl --user enable --now knocker.service".
  macOS    a launchd agent, ~/Library/LaunchAgents/knocker.plist (label
           knocker, started at login, restarted if it fails); then
           "launchctl load". Log: ~/Library/Logs/knocker.log.
  Windows  the service "knocker" (automatic start, restarted if it fails),
           running as LocalSystem; needs an elevated (administrator) prompt.
           Log: the Application event log, source knocker.
An installed service is replaced.

The key never appears in the service's definition or arguments: a key read
from a file is referenced with --key-file, a key written in the config file
with --config, and a key given with --key or KNOCKER_KEY is saved to
knocker/key in the user's config directory (mode 0600) and referenced with
--key-file.

With --print, or where the service manager cannot be used (Linux without
systemctl or a systemd user manager, other systems), it changes nothing and
prints the service definition and the commands to install it by hand.`

const aboutUninstall = `Stops and removes the service written by "knocker install" (Linux:
systemctl --user disable --now, then daemon-reload; macOS: launchctl unload
and the plist removed; Windows: the service deleted). A key file saved by
install is left in place. With --print, or without the service manager, it
changes nothing and prints the commands.`

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
	b := c.backend(home)
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
	runArgs, keyPath, def, err := c.serviceDefinition(b, s, home, exe)
	if err != nil {
		return fail("%v", err)
	}

	available, why := b.available(ctx)
	if p.bool("print") || !available {
		if available {
			fmt.Fprintf(stdout, "Nothing was changed (--print). To install the service by hand:\n\n")
		} else {
			fmt.Fprintf(stdout, "The service manager cannot be used (%s): nothing was changed.\nTo install the service by hand:\n\n", why)
		}
		step := 1
		if keyPath != "" {
			fmt.Fprintf(stdout, "%d. Save your API key, readable by you only, in %s:\n\n   mkdir -p -m 700 %s && (umask 077 && cat > %s)\n   (type or paste the key, then Enter and Ctrl-D)\n\n",
				step, keyPath, shellQuote(filepath.Dir(keyPath)), shellQuote(keyPath))
			step++
		}
		b.printInstall(stdout, step, def)
		fmt.Fprintf(stdout, "Its log: %s\n", b.logHint())
		return exitOK
	}

	if keyPath != "" {
		if err := writeFileAtomic(keyPath, []byte(s.key+"\n")); err != nil {
			return fail("cannot save the key: %v", err)
		}
		fmt.Fprintf(stdout, "Saved the API key (from %s) to %s (mode 0600).\n", s.keyOrigin, keyPath)
	}
	if err := b.install(ctx, stdout, exe, runArgs, def); err != nil {
		return fail("%v%s", err, c.privilegeHint(err))
	}
	fmt.Fprintf(stdout, "Started the service (%s).\nIts log: %s\n", b.location(), b.logHint())
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
	b := c.backend(home)
	keyPath := filepath.Join(home, "knocker", "key")
	available, why := b.available(ctx)
	if p.bool("print") || !available {
		if available {
			fmt.Fprintf(c.stdout, "Nothing was changed (--print). To remove the service by hand:\n\n")
		} else {
			fmt.Fprintf(c.stdout, "The service manager cannot be used (%s): nothing was changed.\nTo remove the service by hand:\n\n", why)
		}
		b.printUninstall(c.stdout)
		return exitOK
	}
	if state, _ := b.status(ctx); state == stateNotInstalled {
		fmt.Fprintf(c.stdout, "The service is not installed (%s).\n", b.location())
		return exitOK
	}
	if err := b.uninstall(ctx, c.stdout); err != nil {
		fmt.Fprintf(c.stderr, "knocker uninstall: %v%s\n", err, c.privilegeHint(err))
		return exitError
	}
	if _, err := os.Stat(keyPath); err == nil {
		fmt.Fprintf(c.stdout, "The API key saved by install is still in %s: delete it if you no longer need it.\n", keyPath)
	}
	return exitOK
}

// serviceDefinition is what install writes for b: the arguments of
// `knocker run`, where the key must be saved ("" if nowhere), and the
// service's definition (unit, plist, configuration).
func (c *cli) serviceDefinition(b serviceBackend, s *settings, home, exe string) (runArgs []string, keyPath, def string, err error) {
	runArgs, keyPath = c.serviceArgs(s, home)
	def, err = b.definition(exe, runArgs)
	return runArgs, keyPath, def, err
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
	if s.ipCheckURL != "" {
		args = append(args, "--ip-check-url", s.ipCheckURL)
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

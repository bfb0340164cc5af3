package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"syscall"

	"github.com/kardianos/service"
)

// libBackend drives launchd (macOS) and the Windows service manager through
// kardianos/service. Its configuration comes from serviceConfig, which the
// golden-file tests call too.
type libBackend struct {
	c    *cli
	goos string
}

// available: the library acts on the system this binary runs on, so a
// c.goos set otherwise (tests) can only print.
func (b *libBackend) available(context.Context) (bool, string) {
	if b.goos != runtime.GOOS {
		return false, "this binary runs on " + runtime.GOOS + ", not " + b.goos
	}
	return true, ""
}

func (b *libBackend) home() string {
	if h := b.c.getenv("HOME"); h != "" {
		return h
	}
	h, _ := os.UserHomeDir()
	return h
}

func (b *libBackend) location() string {
	if b.goos == "darwin" {
		return launchAgentPath(b.home())
	}
	return `the Windows service "` + serviceName + `"`
}

func (b *libBackend) logHint() string {
	if b.goos == "darwin" {
		return "tail -f " + shellQuote(launchdLogPath(b.home()))
	}
	return `Get-EventLog -LogName Application -Source ` + serviceName + ` -Newest 20 (or Event Viewer: Windows Logs > Application)`
}

func (b *libBackend) definition(exe string, args []string) (string, error) {
	cfg, err := serviceConfig(b.goos, exe, args, b.home())
	if err != nil {
		return "", err
	}
	if b.goos == "darwin" {
		plist, _ := cfg.Option[optLaunchdConfig].(string)
		return plist, nil
	}
	return describeWindowsService(cfg), nil
}

func (b *libBackend) printInstall(w io.Writer, step int, def string) {
	if b.goos == "darwin" {
		path := launchAgentPath(b.home())
		fmt.Fprintf(w, "%d. Save this file as %s:\n\n%s\n", step, path, indent(def, "   "))
		fmt.Fprintf(w, "%d. Then run:\n\n   launchctl load %s\n\n", step+1, shellQuote(path))
		return
	}
	fmt.Fprintf(w, "%d. From an elevated (administrator) prompt, \"knocker install\" creates this service:\n\n%s\n", step, indent(def, "   "))
}

func (b *libBackend) printUninstall(w io.Writer) {
	if b.goos == "darwin" {
		path := shellQuote(launchAgentPath(b.home()))
		fmt.Fprintf(w, "   launchctl unload %s\n   rm -f %s\n", path, path)
		return
	}
	fmt.Fprintf(w, "   sc.exe stop %s\n   sc.exe delete %s\n", serviceName, serviceName)
}

// service is the library's handle; exe and args matter only to Install.
func (b *libBackend) service(exe string, args []string) (service.Service, error) {
	cfg, err := serviceConfig(b.goos, exe, args, b.home())
	if err != nil {
		return nil, err
	}
	return service.New(&program{c: b.c}, cfg)
}

// install replaces an installed service (the library refuses to overwrite
// one), then starts it.
func (b *libBackend) install(ctx context.Context, out io.Writer, exe string, args []string, _ string) error {
	s, err := b.service(exe, args)
	if err != nil {
		return err
	}
	if _, err := s.Status(); !errors.Is(err, service.ErrNotInstalled) {
		fmt.Fprintf(out, "Replacing the installed service.\n")
		_ = s.Stop() // it may be stopped already
		if err := s.Uninstall(); err != nil {
			return fmt.Errorf("cannot remove the installed service: %v", err)
		}
	}
	if err := s.Install(); err != nil {
		return err
	}
	fmt.Fprintf(out, "Installed %s.\n", b.location())
	return s.Start()
}

func (b *libBackend) uninstall(ctx context.Context, out io.Writer) error {
	s, err := b.service("", nil)
	if err != nil {
		return err
	}
	_ = s.Stop() // it may be stopped already; Uninstall says if it is gone
	if err := s.Uninstall(); err != nil {
		return err
	}
	fmt.Fprintf(out, "Removed %s.\n", b.location())
	return nil
}

func (b *libBackend) start(ctx context.Context, out io.Writer) error {
	s, err := b.service("", nil)
	if err != nil {
		return err
	}
	return s.Start()
}

func (b *libBackend) stop(ctx context.Context, out io.Writer) error {
	s, err := b.service("", nil)
	if err != nil {
		return err
	}
	return s.Stop()
}

func (b *libBackend) status(ctx context.Context) (serviceState, string) {
	if ok, why := b.available(ctx); !ok {
		return stateUnknown, why
	}
	s, err := b.service("", nil)
	if err != nil {
		return stateUnknown, err.Error()
	}
	st, err := s.Status()
	switch {
	case errors.Is(err, service.ErrNotInstalled):
		return stateNotInstalled, ""
	case err != nil:
		return stateUnknown, sanitize(err.Error())
	case st == service.StatusRunning:
		return stateRunning, ""
	case st == service.StatusStopped:
		return stateStopped, ""
	}
	return stateUnknown, ""
}

// privilegeHint explains an access-denied error from the Windows service
// manager, which only administrators may change.
func (c *cli) privilegeHint(err error) string {
	if c.goos == "windows" && errors.Is(err, syscall.Errno(5)) { // ERROR_ACCESS_DENIED
		return " (managing a Windows service needs an elevated prompt: run as administrator)"
	}
	return ""
}

package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
)

// The service's names, as knocker-cli used them: the systemd unit
// knocker.service, the launchd label knocker (~/Library/LaunchAgents/
// knocker.plist) and the Windows service knocker.
const (
	serviceName        = "knocker"
	serviceDisplayName = "Knocker IP Whitelist Service"
	serviceDescription = "Automatically whitelists the external IP of this device."
)

// Exit codes of `status --service`, `start` and `stop` about the service
// itself; they extend the table in main.go without reusing its numbers.
const (
	exitServiceStopped      = 9  // installed, not running
	exitServiceNotInstalled = 10 // not installed
)

type serviceState int

const (
	stateUnknown serviceState = iota
	stateRunning
	stateStopped
	stateNotInstalled
)

func (s serviceState) String() string {
	switch s {
	case stateRunning:
		return "running"
	case stateStopped:
		return "stopped"
	case stateNotInstalled:
		return "not installed"
	}
	return "unknown"
}

// serviceBackend installs and controls the per-user service on one
// platform: systemd (our own code, systemd.go) on Linux, launchd and the
// Windows service manager through kardianos/service (servicelib.go).
type serviceBackend interface {
	// available reports whether the service manager can be driven from
	// here; why says why not.
	available(ctx context.Context) (ok bool, why string)
	// location is where the service is defined (a file, or a Windows
	// service name); logHint how to read its log.
	location() string
	logHint() string
	// definition is what install writes: a unit, a plist, a configuration.
	definition(exe string, args []string) (string, error)
	// printInstall and printUninstall print the manual steps (after the
	// key step) when nothing may be changed.
	printInstall(w io.Writer, step int, def string)
	printUninstall(w io.Writer)
	install(ctx context.Context, out io.Writer, exe string, args []string, def string) error
	uninstall(ctx context.Context, out io.Writer) error
	start(ctx context.Context, out io.Writer) error
	stop(ctx context.Context, out io.Writer) error
	// status is the service's state; detail qualifies it ("failed", or why
	// the state is unknown).
	status(ctx context.Context) (state serviceState, detail string)
}

// backend returns the service backend for c.goos. home is the user's
// configuration directory.
func (c *cli) backend(home string) serviceBackend {
	switch c.goos {
	case "darwin", "windows":
		return &libBackend{c: c, goos: c.goos}
	}
	return &systemdBackend{c: c, unitPath: filepath.Join(home, "systemd", "user", unitName)}
}

const aboutStart = `Starts the service written by "knocker install" (systemctl --user start
knocker.service; launchctl load ~/Library/LaunchAgents/knocker.plist; the
Windows service "knocker"). Exit code 10 if it is not installed.`

const aboutStop = `Stops the service written by "knocker install" until the next start or login
(systemctl --user stop knocker.service; launchctl unload; the Windows
service "knocker"). Exit code 10 if it is not installed.`

func (c *cli) cmdStart(ctx context.Context, args []string) int {
	return c.controlService(ctx, "start", aboutStart, args, serviceBackend.start)
}

func (c *cli) cmdStop(ctx context.Context, args []string) int {
	return c.controlService(ctx, "stop", aboutStop, args, serviceBackend.stop)
}

func (c *cli) controlService(ctx context.Context, cmd, about string, args []string, act func(serviceBackend, context.Context, io.Writer) error) int {
	if _, code, done := c.parseFlags(cmd, "", about, nil, args); done {
		return code
	}
	home, err := c.configHome()
	if err != nil {
		fmt.Fprintf(c.stderr, "knocker %s: cannot find the user's config directory: %v\n", cmd, err)
		return exitError
	}
	b := c.backend(home)
	if ok, why := b.available(ctx); !ok {
		fmt.Fprintf(c.stderr, "knocker %s: cannot %s the service: %s\n", cmd, cmd, why)
		return exitError
	}
	state, detail := b.status(ctx)
	switch {
	case state == stateNotInstalled:
		fmt.Fprintf(c.stderr, "knocker %s: the service is not installed (%s); see knocker install\n", cmd, b.location())
		return exitServiceNotInstalled
	case cmd == "start" && state == stateRunning, cmd == "stop" && state == stateStopped:
		fmt.Fprintf(c.stdout, "The service is already %s%s.\n", state, parenthesized(detail))
		return exitOK
	}
	if err := act(b, ctx, c.stdout); err != nil {
		fmt.Fprintf(c.stderr, "knocker %s: %v%s\n", cmd, err, c.privilegeHint(err))
		return exitError
	}
	state, detail = b.status(ctx)
	fmt.Fprintf(c.stdout, "The service is %s%s.\n", state, parenthesized(detail))
	if cmd == "start" {
		fmt.Fprintf(c.stdout, "Its log: %s\n", b.logHint())
	}
	return exitOK
}

// serviceStatus is the service part of `knocker status`.
type serviceStatus struct {
	State    string `json:"state"`
	Detail   string `json:"detail,omitempty"`
	Location string `json:"location"`
}

func (c *cli) serviceStatus(ctx context.Context) serviceStatus {
	home, err := c.configHome()
	if err != nil {
		return serviceStatus{State: stateUnknown.String(), Detail: err.Error()}
	}
	b := c.backend(home)
	state, detail := b.status(ctx)
	return serviceStatus{State: state.String(), Detail: detail, Location: b.location()}
}

// serviceExitCode maps a state to the exit code of `status --service`.
func serviceExitCode(state string) int {
	switch state {
	case stateRunning.String():
		return exitOK
	case stateStopped.String():
		return exitServiceStopped
	case stateNotInstalled.String():
		return exitServiceNotInstalled
	}
	return exitError
}

func parenthesized(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

package main

import (
	"encoding/xml"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/kardianos/service"
)

// Option names of kardianos/service (its constants are unexported, but
// documented on service.Config).
const (
	optUserService      = "UserService"
	optLaunchdConfig    = "LaunchdConfig"
	optStartType        = "StartType"
	optDelayedAutoStart = "DelayedAutoStart"
	optOnFailure        = "OnFailure"
	optOnFailureDelay   = "OnFailureDelayDuration"
	optOnFailureReset   = "OnFailureResetPeriod"
)

// serviceConfig is the kardianos/service configuration install uses on
// goos ("darwin" or "windows") to run exe with args; home is the user's
// home directory (macOS). Tests render it into golden files.
func serviceConfig(goos, exe string, args []string, home string) (*service.Config, error) {
	cfg := &service.Config{
		Name:        serviceName,
		DisplayName: serviceDisplayName,
		Description: serviceDescription,
		Executable:  exe,
		Arguments:   args,
		Option:      service.KeyValue{},
	}
	switch goos {
	case "darwin":
		// The library's own plist would log to ~/knocker.err.log, restart
		// even after a clean exit, and reach its template engine with our
		// arguments unescaped: we give it the finished plist as its
		// "template" (launchdPlist leaves no "{{" in it).
		plist, err := launchdPlist(exe, args, home)
		if err != nil {
			return nil, err
		}
		cfg.Option[optUserService] = true
		cfg.Option[optLaunchdConfig] = plist
	case "windows":
		// Started at boot once the network is likely up; restarted 30s
		// after a failure, the failure count reset after a day.
		cfg.Option[optStartType] = "automatic"
		cfg.Option[optDelayedAutoStart] = true
		cfg.Option[optOnFailure] = "restart"
		cfg.Option[optOnFailureDelay] = "30s"
		cfg.Option[optOnFailureReset] = 86400
	default:
		return nil, fmt.Errorf("no service configuration for %s", goos)
	}
	return cfg, nil
}

func launchAgentPath(home string) string {
	return path.Join(home, "Library", "LaunchAgents", serviceName+".plist")
}

func launchdLogPath(home string) string {
	return path.Join(home, "Library", "Logs", serviceName+".log")
}

// launchdPlist is the launch agent: run at login, restarted (at most every
// 30s) when it exits with an error, as Restart=on-failure on Linux; both
// output streams to ~/Library/Logs/knocker.log.
func launchdPlist(exe string, args []string, home string) (string, error) {
	var b strings.Builder
	str := func(indent, s string) error {
		e, err := plistEscape(s)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s<string>%s</string>\n", indent, e)
		return nil
	}
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- Written by "knocker install"; remove with "knocker uninstall".
     The API key is not in this file: the agent reads it from the file named below. -->
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>` + serviceName + `</string>
	<key>ProgramArguments</key>
	<array>
`)
	for _, a := range append([]string{exe}, args...) {
		if err := str("\t\t", a); err != nil {
			return "", err
		}
	}
	b.WriteString(`	</array>
	<key>RunAtLoad</key>
	<true/>
	<key>KeepAlive</key>
	<dict>
		<key>SuccessfulExit</key>
		<false/>
	</dict>
	<key>ThrottleInterval</key>
	<integer>30</integer>
	<key>ProcessType</key>
	<string>Background</string>
`)
	for _, k := range []string{"StandardOutPath", "StandardErrorPath"} {
		fmt.Fprintf(&b, "\t<key>%s</key>\n", k)
		if err := str("\t", launchdLogPath(home)); err != nil {
			return "", err
		}
	}
	b.WriteString("</dict>\n</plist>\n")
	return b.String(), nil
}

// plistEscape escapes s for XML text, and "{" too, so that the library's
// template engine, which reads the plist, finds no action in it.
func plistEscape(s string) (string, error) {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("%q contains a control character: it cannot be written into a plist", s)
		}
	}
	var b strings.Builder
	if err := xml.EscapeText(&b, []byte(s)); err != nil {
		return "", err
	}
	return strings.ReplaceAll(b.String(), "{", "&#123;"), nil
}

// describeWindowsService renders the configuration the library turns into
// the Windows service (CreateService, recovery actions, event source).
func describeWindowsService(cfg *service.Config) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Name: %s\nDisplayName: %s\nDescription: %s\nAccount: LocalSystem\nExecutable: %s\nArguments:\n",
		cfg.Name, cfg.DisplayName, cfg.Description, cfg.Executable)
	for _, a := range cfg.Arguments {
		fmt.Fprintf(&b, "  %s\n", a)
	}
	keys := make([]string, 0, len(cfg.Option))
	for k := range cfg.Option {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %v\n", k, cfg.Option[k])
	}
	fmt.Fprintf(&b, "Log: the Application event log, source %s\n", cfg.Name)
	return b.String()
}

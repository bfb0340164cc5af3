package main

import "strings"

// The services knocker-cli installs start the bare binary (its systemd
// unit's ExecStart, its launchd agent, its Windows service take no
// arguments), and its root command then runs the service. So that a
// replaced binary keeps such a service working, no arguments under a
// service manager mean "run".

// serviceArgs0 returns ["run"] for no arguments under a service manager,
// else args: a systemd service's standard error is its journal stream,
// launchd names the job in XPC_SERVICE_NAME (Terminal sets it to "0"), and
// the caller detects the Windows service manager.
func (c *cli) serviceArgs0(args []string, underServiceManager bool) []string {
	launchd := c.getenv("XPC_SERVICE_NAME") != "" && c.getenv("XPC_SERVICE_NAME") != "0"
	if len(args) == 0 && (underServiceManager || launchd || c.stderrIsJournal != nil && c.stderrIsJournal()) {
		return []string{"run"}
	}
	return args
}

// persistentFlags are knocker-cli's flags that may precede the command
// (cobra persistent flags): `knocker --config k.yaml run` works as there.
var persistentFlags = map[string]bool{"config": true, "ttl": true, "check_interval": true, "ip_check_url": true}

// hoistFlags moves knocker-cli's persistent flags given before the command
// to after it, where the command's own flag parsing reads them.
func hoistFlags(args []string) []string {
	var moved []string
	i := 0
	for i < len(args) && strings.HasPrefix(args[i], "-") {
		name, _, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if !persistentFlags[name] {
			break
		}
		if hasValue || i+1 >= len(args) {
			moved = append(moved, args[i])
			i++
			continue
		}
		moved = append(moved, args[i], args[i+1])
		i += 2
	}
	if len(moved) == 0 || i >= len(args) {
		return args
	}
	out := append([]string{args[i]}, args[i+1:]...)
	return append(out, moved...)
}

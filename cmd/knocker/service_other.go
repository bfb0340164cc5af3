//go:build !windows

package main

// runAsService is Windows-only: elsewhere the service manager runs
// `knocker run`, which stops on SIGTERM.
func (c *cli) runAsService([]string) (int, bool) { return 0, false }

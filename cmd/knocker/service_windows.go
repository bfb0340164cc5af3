package main

import (
	"fmt"
	"os"

	"github.com/kardianos/service"
)

// runAsService runs `knocker run` as a Windows service when the service
// manager started the binary: kardianos/service's Run answers the service
// manager, and its stop request ends the run loop cleanly. Its output goes
// to the Application event log. ok is false when started otherwise.
func (c *cli) runAsService(args []string) (code int, ok bool) {
	if service.Interactive() {
		return 0, false
	}
	args = c.serviceArgs0(hoistFlags(args), true)
	if len(args) == 0 || args[0] != "run" {
		return 0, false
	}
	p := &program{c: c, args: args[1:], exit: os.Exit}
	s, err := service.New(p, &service.Config{Name: serviceName})
	if err != nil {
		return exitError, true
	}
	if l, err := s.Logger(nil); err == nil {
		w := &eventLogWriter{l: l}
		c.stdout, c.stderr = w, w
	}
	c.signals = nil   // the service manager stops it through p.Stop
	c.plainLog = true // the event log has its own timestamps
	if err := s.Run(); err != nil {
		fmt.Fprintf(c.stderr, "knocker run: as a service: %v\n", err)
		return exitError, true
	}
	return p.code, true
}

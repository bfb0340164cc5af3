package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/kardianos/service"
)

// errServiceStop is why `knocker run` stops when the service manager asks.
var errServiceStop = errors.New("the service manager asked the service to stop")

// program runs `knocker run` for a service manager that starts and stops
// it by calls rather than by signals: the Windows service manager, through
// kardianos/service's Run.
type program struct {
	c    *cli
	args []string // of run
	// exit is called when run ends on its own (a configuration error), so
	// that the service manager sees the service fail; nil: no call.
	exit func(code int)

	cancel context.CancelCauseFunc
	done   chan struct{}
	code   int
}

func (p *program) Start(service.Service) error {
	ctx, cancel := context.WithCancelCause(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	go func() {
		p.code = p.c.cmdRun(ctx, p.args)
		close(p.done)
		if ctx.Err() == nil && p.exit != nil {
			p.exit(p.code)
		}
	}()
	return nil
}

// Stop ends the run loop and waits until it has logged that it stopped.
func (p *program) Stop(service.Service) error {
	p.cancel(errServiceStop)
	<-p.done
	return nil
}

// eventLogWriter sends each line written to it to a service logger (the
// Windows event log): warnings and failures as warnings, the error that
// stops run as an error, the rest as information.
type eventLogWriter struct {
	mu  sync.Mutex
	l   service.Logger
	buf []byte
}

func (w *eventLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(w.buf[:i])
		w.buf = w.buf[i+1:]
		switch {
		case strings.Contains(line, "warning") || strings.Contains(line, "failed"):
			_ = w.l.Warning(line)
		case strings.HasPrefix(line, "knocker run: "): // an error that stops run
			_ = w.l.Error(line)
		default:
			_ = w.l.Info(line)
		}
	}
}

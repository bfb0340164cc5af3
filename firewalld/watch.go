//go:build !(illumos || solaris || dragonfly)

package firewalld

import (
	"time"

	"github.com/godbus/dbus/v5"
	"go.uber.org/zap"
)

// watch follows firewalld's signals and keeps the connection alive. It
// never touches firewalld itself: it asks the worker to.
func (r *reconciler) watch(signals chan *dbus.Signal) {
	defer r.wg.Done()
	for {
		select {
		case <-r.ctx.Done():
			return
		case sig, ok := <-signals:
			if !ok { // godbus closes the channel when the connection dies
				if signals = r.reconnect(); signals == nil {
					return
				}
				r.requestResync("D-Bus connection re-established")
				continue
			}
			r.handleSignal(sig)
		}
	}
}

func (r *reconciler) handleSignal(sig *dbus.Signal) {
	switch sig.Name {
	case sigReloaded:
		r.requestResync("firewalld reloaded")
	case sigNameOwnerChanged:
		if len(sig.Body) < 3 {
			return
		}
		if name, _ := sig.Body[0].(string); name != busName {
			return
		}
		if owner, _ := sig.Body[2].(string); owner != "" {
			r.requestResync("firewalld restarted")
		} else {
			r.log.Warn("firewalld stopped: protection is down until it starts again")
		}
	case sigRichRuleRemoved:
		if len(sig.Body) < 2 {
			return
		}
		text, _ := sig.Body[1].(string)
		if rule, ok := parseKnockerRule(text); ok && rule.action == actionAccept {
			r.enqueue(rule.source, pendingOp{verify: true})
		}
	}
}

// reconnect dials again with capped exponential backoff until it succeeds
// or the reconciler stops (then it returns nil).
func (r *reconciler) reconnect() chan *dbus.Signal {
	r.log.Warn("lost the D-Bus connection; reconnecting")
	r.clientMu.Lock()
	if r.cl != nil {
		r.cl.close()
		r.cl = nil
	}
	r.clientMu.Unlock()
	delay := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		select {
		case <-r.ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
		conn, err := r.dial()
		if err != nil {
			if attempt%20 == 1 {
				r.log.Warn("reconnecting to D-Bus", zap.Int("attempt", attempt), zap.Error(err))
			}
			continue
		}
		c := &client{conn: conn}
		signals := make(chan *dbus.Signal, 64)
		if err := c.subscribe(r.ctx, signals); err != nil {
			c.close()
			continue
		}
		r.setClient(c) // stop waits for this goroutine, then closes it
		r.log.Info("D-Bus connection re-established", zap.Int("attempts", attempt))
		return signals
	}
}

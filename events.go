package knocker

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"go.uber.org/zap"

	"github.com/caddy-knocker/knocker/store"
)

// The Caddy events the knocker app emits, one per whitelist change (see
// docs/configuration.md#events).
const (
	eventGrant  = "knocker.grant"  // an entry added or its expiry changed
	eventRevoke = "knocker.revoke" // an entry revoked, or evicted to make room
	eventExpire = "knocker.expire" // an expired entry swept
)

// maxQueuedEvents bounds the events waiting for their Caddy event handlers
// (about 80 bytes each); beyond it events are dropped, with a warning.
const maxQueuedEvents = 1 << 16

// stopWait is how long a stopping config waits for the event its handlers
// are running.
const stopWait = 5 * time.Second

// eventHub turns one store's changes into Caddy events. It lives with the
// store (one per whitelist file, across reloads): its single subscription
// queues each change, and its single goroutine emits them in order through
// the events app of the newest running config. During a reload the new
// config starts while the old one still runs; the new one takes over once
// its whole config has started (Caddy's "started" event: its events app is
// then started too), and the old one hands over as it stops. Each change
// is queued once and taken off the queue once, so it is emitted exactly
// once, by exactly one config; changes made while no config can emit (at
// startup, before the first "started") wait in the queue.
type eventHub struct {
	log    *zap.Logger
	cancel func() // the store subscription

	mu      sync.Mutex
	queue   []store.Event
	dropped int
	targets []*eventTarget // the configs that may emit, oldest first

	// newest is targets' last element, for the committer's cheap check.
	newest atomic.Pointer[eventTarget]
	wake   chan struct{} // capacity 1
	done   chan struct{} // closed when the store is closed
}

// eventTarget is one running config's way to emit: its events app and the
// knocker app's context (the events' origin).
type eventTarget struct {
	ctx    caddy.Context
	events *caddyevents.App
	// wants says, per event, whether emitting it can be observed (a
	// subscription, or the events app's debug log); fixed once the
	// config has started.
	wants    [3]bool // grant, revoke, expire
	inflight sync.WaitGroup
}

func newEventHub(s *store.Store) *eventHub {
	h := &eventHub{
		log:  newLongLivedLogger("knocker.events"),
		wake: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	h.cancel = s.Subscribe(h.enqueue)
	go h.run()
	return h
}

// close stops the hub once the store is closed; queued events are dropped
// (no config runs to emit them).
func (h *eventHub) close() {
	h.cancel()
	close(h.done)
}

// eventIndex maps a change to its event: 0 grant, 1 revoke, 2 expire.
func eventIndex(k store.Kind) int {
	switch k {
	case store.Added, store.Extended:
		return 0
	case store.Removed:
		return 1
	}
	return 2
}

var eventNames = [3]string{eventGrant, eventRevoke, eventExpire}

// enqueue runs on the store's committer: it must not block. When the
// newest config cannot observe the event, it costs an atomic load.
func (h *eventHub) enqueue(ev store.Event) {
	if t := h.newest.Load(); t != nil && !t.wants[eventIndex(ev.Kind)] {
		return
	}
	h.mu.Lock()
	if len(h.queue) >= maxQueuedEvents {
		h.dropped++
	} else {
		h.queue = append(h.queue, ev)
	}
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// run emits queued events, one at a time, through the newest config whose
// context is still live.
func (h *eventHub) run() {
	for {
		select {
		case <-h.wake:
		case <-h.done:
			return
		}
		for {
			h.mu.Lock()
			if h.dropped > 0 {
				h.log.Warn("knocker events dropped: their handlers fell too far behind", zap.Int("dropped", h.dropped), zap.Int("queued", len(h.queue)))
				h.dropped = 0
			}
			t := h.live()
			if t == nil || len(h.queue) == 0 {
				if len(h.queue) == 0 {
					h.queue = nil // let a burst's backing array go
				}
				h.mu.Unlock()
				break // wait for an event or a config to emit through
			}
			ev := h.queue[0]
			h.queue = h.queue[1:]
			t.inflight.Add(1)
			h.mu.Unlock()
			t.emit(ev)
			t.inflight.Done()
		}
	}
}

// live is the newest target whose config has not been cancelled (a config
// that fails after "started" is cleaned up without being stopped). h.mu
// must be held.
func (h *eventHub) live() *eventTarget {
	for i := len(h.targets) - 1; i >= 0; i-- {
		if h.targets[i].ctx.Err() == nil {
			return h.targets[i]
		}
	}
	return nil
}

// register makes t the newest target, the one that emits from now on.
func (h *eventHub) register(t *eventTarget) {
	h.mu.Lock()
	h.targets = append(h.targets, t)
	h.newest.Store(t)
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// unregister removes t and waits (up to stopWait) for the event it is
// emitting, so that it is not cut off when t's config is cancelled; the
// next-newest target, if any, takes over the queue.
func (h *eventHub) unregister(t *eventTarget) {
	h.mu.Lock()
	i := slices.Index(h.targets, t)
	if i >= 0 {
		h.targets = slices.Delete(h.targets, i, i+1)
		var newest *eventTarget
		if n := len(h.targets); n > 0 {
			newest = h.targets[n-1]
		}
		h.newest.Store(newest)
	}
	h.mu.Unlock()
	if i < 0 {
		return
	}
	select {
	case h.wake <- struct{}{}:
	default:
	}
	finished := make(chan struct{})
	go func() { t.inflight.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(stopWait):
		h.log.Warn("a knocker event handler is still running as its config stops; it may be cut off")
	}
}

func (t *eventTarget) emit(ev store.Event) {
	i := eventIndex(ev.Kind)
	if !t.wants[i] {
		return
	}
	t.events.Emit(t.ctx, eventNames[i], eventData(ev))
}

// eventData is an event's data: what changed, never a secret (the key is
// named, as in the logs).
func eventData(ev store.Event) map[string]any {
	data := map[string]any{
		"entry":      store.FormatPrefix(ev.Entry.Prefix),
		"key":        ev.Entry.Owner,
		"expires_at": ev.Entry.Expires,
	}
	if len(ev.Entry.Scopes) > 0 { // absent: full access
		data["scopes"] = strings.Join(ev.Entry.Scopes, ",")
	}
	if ev.Remote { // absent: made on this node
		data["origin"] = "cluster"
	}
	switch ev.Kind {
	case store.Extended:
		data["previous_expires_at"] = ev.Previous
	case store.Removed:
		data["reason"] = "revoked"
		if ev.Evicted {
			data["reason"] = "evicted"
		}
	}
	return data
}

// provisionEvents finds this config's events app (Caddy loads it if the
// config has none) and arranges for this app to start emitting once the
// whole config has started.
func (a *App) provisionEvents(ctx caddy.Context) error {
	v, err := ctx.App("events")
	if err != nil {
		return fmt.Errorf("events app: %w", err)
	}
	events, ok := v.(*caddyevents.App)
	if !ok {
		return fmt.Errorf("events app has unexpected type %T", v)
	}
	a.run.target = &eventTarget{ctx: ctx, events: events}
	return events.On("started", configStarted{a.run})
}

// configStarted handles Caddy's "started" event of the app's config: every
// app, the events app included, has started, so the events app's
// subscriptions are final and this config may take over emitting.
type configStarted struct{ run *appState }

func (c configStarted) Handle(context.Context, caddy.Event) error {
	c.run.mu.Lock()
	defer c.run.mu.Unlock()
	t, h := c.run.target, c.run.hub
	if h == nil || c.run.released || c.run.emitting {
		return nil
	}
	for i, name := range eventNames {
		t.wants[i] = t.events.ShouldEmit(name)
	}
	c.run.emitting = true
	h.register(t)
	return nil
}

// stopEvents hands emitting over to the previous config, if it still runs.
func (a *App) stopEvents() {
	a.run.mu.Lock()
	t, h, emitting := a.run.target, a.run.hub, a.run.emitting
	a.run.emitting = false
	a.run.mu.Unlock()
	if emitting {
		h.unregister(t)
	}
}

// Interface guard.
var _ caddyevents.Handler = configStarted{}

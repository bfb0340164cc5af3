//go:build !(illumos || solaris || dragonfly)

package firewalld

import (
	"context"
	"fmt"
	"net/netip"
)

// One goroutine (work) performs every firewalld change of a reconciler,
// each holding r.sh.mu, so that no two changes (of this or another
// Backend in the process) ever interleave. It takes three kinds of work:
//
//   - jobs: PrepareGrant's rule changes, on a bounded queue; when it is
//     full, PrepareGrant fails at once with ErrBusy (the knock gets 503);
//   - a resync request (firewalld reloaded, restarted, reconnected);
//   - pending prefixes: store events, undos and firewalld's hints, kept as
//     one entry per prefix (the latest wins). The store's callback only
//     records them, so it never blocks; and unlike a bounded queue this
//     set cannot overflow (it never outgrows the whitelist), so no
//     revocation is ever left to firewalld's own timeout.
type job struct {
	ctx  context.Context
	run  func(ctx context.Context) error
	done chan error // buffered: the worker never blocks on a gone caller
}

// pendingOp is what the worker must do for one prefix.
type pendingOp struct {
	// sync: a store event; make the rules match the prefix's stored
	// grants.
	sync bool
	// fromStore: the same for an undo (the grant the rules were opened
	// for was not persisted), which a superseded configuration does too.
	fromStore bool
	// verify: firewalld says a rule went away; re-add it if the grant
	// is still active (see reviveRules).
	verify bool
}

// submit queues fn and waits for its result. It never blocks on a full
// queue: it returns ErrBusy instead.
func (r *reconciler) submit(ctx context.Context, fn func(ctx context.Context) error) error {
	j := &job{ctx: ctx, run: fn, done: make(chan error, 1)}
	select {
	case <-r.ctx.Done():
		return ErrStopped
	default:
	}
	select {
	case r.jobs <- j:
	default:
		return fmt.Errorf("%w (a queue of %d is full)", ErrBusy, cap(r.jobs))
	}
	select {
	case err := <-j.done:
		return err
	case <-r.workerDone:
		select { // the job may have finished just before the worker quit
		case err := <-j.done:
			return err
		default:
			return ErrStopped
		}
	}
}

// enqueue records op for p, merged with what is already pending, and wakes
// the worker. It never blocks (a short mutex only), so it is safe in the
// store's event callback.
func (r *reconciler) enqueue(p netip.Prefix, op pendingOp) {
	r.pendMu.Lock()
	cur := r.pending[p]
	// Both read the store when handled, so they accumulate.
	cur.sync = cur.sync || op.sync
	cur.fromStore = cur.fromStore || op.fromStore
	cur.verify = cur.verify || op.verify
	r.pending[p] = cur
	r.pendMu.Unlock()
	r.kick()
}

// requestResync asks the worker to re-verify the zones and re-apply every
// grant; requests coalesce.
func (r *reconciler) requestResync(reason string) {
	r.pendMu.Lock()
	if r.resyncReason == "" {
		r.resyncReason = reason
	}
	r.pendMu.Unlock()
	r.kick()
}

func (r *reconciler) kick() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// work is the worker goroutine.
func (r *reconciler) work() {
	defer close(r.workerDone)
	for {
		r.drain()
		select {
		case <-r.ctx.Done():
			return
		case j := <-r.jobs:
			r.runJob(j)
		case <-r.wake:
		}
	}
}

func (r *reconciler) runJob(j *job) {
	if err := j.ctx.Err(); err != nil { // the caller gave up while queued
		j.done <- err
		return
	}
	ctx, cancel := context.WithCancel(j.ctx)
	stop := context.AfterFunc(r.ctx, cancel)
	r.sh.mu.Lock()
	err := j.run(ctx)
	r.sh.mu.Unlock()
	stop()
	cancel()
	j.done <- err
}

// drain handles a requested resync, then the pending prefixes, until none
// is left; jobs waiting meanwhile are taken between prefixes so a knock
// does not wait for a long backlog.
func (r *reconciler) drain() {
	for r.ctx.Err() == nil {
		r.pendMu.Lock()
		reason := r.resyncReason
		r.resyncReason = ""
		var p netip.Prefix
		var op pendingOp
		found := false
		if reason == "" {
			for p, op = range r.pending {
				delete(r.pending, p)
				found = true
				break
			}
		}
		r.pendMu.Unlock()
		switch {
		case reason != "":
			r.resync(reason)
		case found:
			r.sh.mu.Lock()
			r.handlePending(p, op)
			r.sh.mu.Unlock()
		default:
			return
		}
		select {
		case j := <-r.jobs:
			r.runJob(j)
		default:
		}
	}
}

//go:build illumos || solaris || dragonfly

package firewalld

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"

	"go.uber.org/zap"

	"github.com/caddy-knocker/knocker/firewall"
	"github.com/caddy-knocker/knocker/store"
)

// The D-Bus client (godbus) does not build on these systems, and firewalld
// does not run on them: the backend still loads and validates its
// configuration, so one Caddyfile serves every platform, and Start says
// why it cannot protect anything.

var errUnsupported = fmt.Errorf("firewalld runs on Linux; there is no D-Bus client for %s", runtime.GOOS)

type reconciler struct{ sh *shared }

type pendingOp struct{ fromStore bool }

func systemBusAddress() (string, error) { return "", errUnsupported }

func newReconciler(settings, *zap.Logger, *store.Store, string, string) *reconciler {
	return &reconciler{}
}

func (r *reconciler) start() error                                    { return errUnsupported }
func (r *reconciler) stop()                                           {}
func (r *reconciler) requestResync(string)                            {}
func (r *reconciler) enqueue(netip.Prefix, pendingOp)                 {}
func (r *reconciler) verify(context.Context) error                    { return errUnsupported }
func (r *reconciler) openGrant(context.Context, firewall.Grant) error { return errUnsupported }
func (r *reconciler) submit(context.Context, func(context.Context) error) error {
	return ErrStopped
}

//go:build !(illumos || solaris || dragonfly)

package firewalld

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/godbus/dbus/v5"
)

// firewalld's D-Bus names (doc/xml/firewalld.dbus.xml).
const (
	busName         = "org.fedoraproject.FirewallD1"
	mainPath        = dbus.ObjectPath("/org/fedoraproject/FirewallD1")
	configPath      = dbus.ObjectPath("/org/fedoraproject/FirewallD1/config")
	ifaceMain       = "org.fedoraproject.FirewallD1"
	ifaceZone       = ifaceMain + ".zone"        // runtime zones, on mainPath
	ifaceConfig     = ifaceMain + ".config"      // permanent configuration, on configPath
	ifaceConfigZone = ifaceMain + ".config.zone" // one permanent zone, path from getZoneByName
	ifaceProperties = "org.freedesktop.DBus.Properties"
	ifaceDBus       = "org.freedesktop.DBus"

	// stateRunning is the value of firewalld's "state" property once it
	// has applied its configuration.
	stateRunning = "RUNNING"
)

const (
	callTimeout   = 10 * time.Second // a single firewalld method call
	reloadTimeout = 60 * time.Second // reload rebuilds the whole ruleset
)

// client is a private D-Bus connection to firewalld. Every call carries a
// deadline, so a hung firewalld cannot hang Caddy, and FlagNoAutoStart, so
// Knocker never bus-activates a firewalld the administrator stopped.
type client struct {
	conn *dbus.Conn
}

// systemBusAddress is the D-Bus system bus's address, as dbus.SystemBus
// finds it: DBUS_SYSTEM_BUS_ADDRESS, else the standard socket on Linux.
func systemBusAddress() (string, error) {
	return systemBusAddressOn(runtime.GOOS, os.Getenv("DBUS_SYSTEM_BUS_ADDRESS"))
}

func systemBusAddressOn(goos, env string) (string, error) {
	switch {
	case env != "":
		return env, nil
	case goos == "linux":
		return "unix:path=/var/run/dbus/system_bus_socket", nil
	}
	return "", fmt.Errorf("firewalld runs on Linux; there is no D-Bus system bus on %s (set DBUS_SYSTEM_BUS_ADDRESS to reach one)", goos)
}

// dialBus opens a private connection to the bus at addr. Never
// dbus.SystemBus(): that connection is shared process-wide and must not be
// closed by a module.
func dialBus(addr string) (*dbus.Conn, error) {
	conn, err := dbus.Connect(addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to the D-Bus system bus at %s: %w", addr, err)
	}
	return conn, nil
}

// dialSystemBus opens a private connection to the system bus.
func dialSystemBus() (*dbus.Conn, error) {
	addr, err := systemBusAddress()
	if err != nil {
		return nil, err
	}
	return dialBus(addr)
}

func (r *reconciler) dial() (*dbus.Conn, error) { return dialBus(r.bus) }

func (c *client) close() error { return c.conn.Close() }

// alive reports whether the connection is still open.
func (c *client) alive() bool { return c.conn.Connected() }

// call invokes method on firewalld at path and stores the reply in out.
func (c *client) call(ctx context.Context, path dbus.ObjectPath, method string, out []any, args ...any) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return c.callNoTimeout(ctx, path, method, out, args...)
}

func (c *client) callNoTimeout(ctx context.Context, path dbus.ObjectPath, method string, out []any, args ...any) error {
	call := c.conn.Object(busName, path).CallWithContext(ctx, method, dbus.FlagNoAutoStart, args...)
	if call.Err != nil {
		return fmt.Errorf("firewalld %s: %w", shortMethod(method), parseError(call.Err))
	}
	if len(out) > 0 {
		if err := call.Store(out...); err != nil {
			return fmt.Errorf("firewalld %s: unexpected reply: %w", shortMethod(method), err)
		}
	}
	return nil
}

// shortMethod drops the interface prefix for error messages:
// "org.fedoraproject.FirewallD1.zone.addRichRule" -> "zone.addRichRule".
func shortMethod(m string) string {
	if len(m) > len(ifaceMain)+1 && m[:len(ifaceMain)] == ifaceMain {
		return m[len(ifaceMain)+1:]
	}
	return m
}

// nameOwner returns the unique name owning firewalld's bus name, or "" if
// firewalld is not on the bus.
func (c *client) nameOwner(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	var owner string
	err := c.conn.BusObject().CallWithContext(ctx, ifaceDBus+".GetNameOwner", 0, busName).Store(&owner)
	if err != nil {
		if e, ok := parseError(err).(*Error); ok && e.Code == ErrNotRunning.Code {
			return "", nil
		}
		return "", fmt.Errorf("D-Bus GetNameOwner: %w", err)
	}
	return owner, nil
}

// property reads one string property of the main firewalld object.
func (c *client) property(ctx context.Context, name string) (string, error) {
	var v dbus.Variant
	if err := c.call(ctx, mainPath, ifaceProperties+".Get", []any{&v}, ifaceMain, name); err != nil {
		return "", err
	}
	s, ok := v.Value().(string)
	if !ok {
		return "", fmt.Errorf("firewalld property %s: got %s, want a string", name, v.Signature())
	}
	return s, nil
}

// state returns firewalld's state: INIT, RUNNING or FAILED.
func (c *client) state(ctx context.Context) (string, error) { return c.property(ctx, "state") }

// version returns firewalld's version, e.g. "1.3.3".
func (c *client) version(ctx context.Context) (string, error) { return c.property(ctx, "version") }

// defaultZone returns the runtime default zone.
func (c *client) defaultZone(ctx context.Context) (string, error) {
	var zone string
	err := c.call(ctx, mainPath, ifaceMain+".getDefaultZone", []any{&zone})
	return zone, err
}

// reload makes the permanent configuration the runtime one. It drops every
// runtime-only rule, Knocker's timed accepts included.
func (c *client) reload(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, reloadTimeout)
	defer cancel()
	return c.callNoTimeout(ctx, mainPath, ifaceMain+".reload", nil)
}

// Runtime rich rules (interface .zone on the main object).

func (c *client) runtimeRules(ctx context.Context, zone string) ([]string, error) {
	var rules []string
	err := c.call(ctx, mainPath, ifaceZone+".getRichRules", []any{&rules}, zone)
	return rules, err
}

// addRuntimeRule adds rule to zone for timeout seconds (0: until reload).
func (c *client) addRuntimeRule(ctx context.Context, zone, rule string, timeout int32) error {
	return c.call(ctx, mainPath, ifaceZone+".addRichRule", nil, zone, rule, timeout)
}

func (c *client) removeRuntimeRule(ctx context.Context, zone, rule string) error {
	return c.call(ctx, mainPath, ifaceZone+".removeRichRule", nil, zone, rule)
}

// queryRuntimeRule compares parsed rules, so it tolerates spelling
// differences that a string comparison of getRichRules would not.
func (c *client) queryRuntimeRule(ctx context.Context, zone, rule string) (bool, error) {
	var ok bool
	err := c.call(ctx, mainPath, ifaceZone+".queryRichRule", []any{&ok}, zone, rule)
	return ok, err
}

// Permanent rich rules (interface .config.zone on the zone's own object).

// permanentZone returns the object path of zone's permanent configuration;
// the error wraps ErrInvalidZone if the zone does not exist. Paths may
// change across reloads, so callers resolve them each time.
func (c *client) permanentZone(ctx context.Context, zone string) (dbus.ObjectPath, error) {
	var path dbus.ObjectPath
	err := c.call(ctx, configPath, ifaceConfig+".getZoneByName", []any{&path}, zone)
	return path, err
}

func (c *client) permanentRules(ctx context.Context, zonePath dbus.ObjectPath) ([]string, error) {
	var rules []string
	err := c.call(ctx, zonePath, ifaceConfigZone+".getRichRules", []any{&rules})
	return rules, err
}

func (c *client) addPermanentRule(ctx context.Context, zonePath dbus.ObjectPath, rule string) error {
	return c.call(ctx, zonePath, ifaceConfigZone+".addRichRule", nil, rule)
}

func (c *client) removePermanentRule(ctx context.Context, zonePath dbus.ObjectPath, rule string) error {
	return c.call(ctx, zonePath, ifaceConfigZone+".removeRichRule", nil, rule)
}

// Signals.

// Signal members Knocker reacts to.
const (
	sigReloaded         = ifaceMain + ".Reloaded"
	sigRichRuleRemoved  = ifaceZone + ".RichRuleRemoved"
	sigNameOwnerChanged = ifaceDBus + ".NameOwnerChanged"
)

// subscribe asks the bus for firewalld's Reloaded and RichRuleRemoved
// signals and for owner changes of its bus name (a restart), and delivers
// them to ch. godbus closes ch when the connection dies.
func (c *client) subscribe(ctx context.Context, ch chan<- *dbus.Signal) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	// Match rules naming a well-known sender follow the name to its
	// current owner, so they survive a firewalld restart.
	matches := [][]dbus.MatchOption{
		{dbus.WithMatchSender(busName), dbus.WithMatchObjectPath(mainPath),
			dbus.WithMatchInterface(ifaceMain), dbus.WithMatchMember("Reloaded")},
		{dbus.WithMatchSender(busName), dbus.WithMatchObjectPath(mainPath),
			dbus.WithMatchInterface(ifaceZone), dbus.WithMatchMember("RichRuleRemoved")},
		{dbus.WithMatchSender(ifaceDBus), dbus.WithMatchInterface(ifaceDBus),
			dbus.WithMatchMember("NameOwnerChanged"), dbus.WithMatchArg(0, busName)},
	}
	c.conn.Signal(ch)
	for _, m := range matches {
		if err := c.conn.AddMatchSignalContext(ctx, m...); err != nil {
			return fmt.Errorf("D-Bus AddMatch: %w", err)
		}
	}
	return nil
}

// timedRule is one runtime rule to add with its timeout.
type timedRule struct {
	text    string
	timeout int32
}

// addRuntimeRules adds many rules to zone, keeping up to window calls in
// flight so that firewalld never waits for a round trip; it returns one
// error per rule (nil for success).
func (c *client) addRuntimeRules(ctx context.Context, zone string, rules []timedRule, window int) []error {
	errs := make([]error, len(rules))
	replies := make(chan *dbus.Call, window)
	index := make(map[*dbus.Call]int, window)
	obj := c.conn.Object(busName, mainPath)
	inFlight := 0
	collect := func() {
		call := <-replies
		inFlight--
		if call.Err != nil {
			errs[index[call]] = fmt.Errorf("firewalld zone.addRichRule: %w", parseError(call.Err))
		}
		delete(index, call)
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout+time.Duration(len(rules))*100*time.Millisecond)
	defer cancel()
	for i, r := range rules {
		if inFlight == window {
			collect()
		}
		call := obj.GoWithContext(ctx, ifaceZone+".addRichRule", dbus.FlagNoAutoStart, replies, zone, r.text, r.timeout)
		index[call] = i
		inFlight++
	}
	for inFlight > 0 {
		collect()
	}
	return errs
}

const (
	exceptionName     = ifaceMain + ".Exception"
	notAuthorizedName = ifaceMain + ".NotAuthorizedException"
)

// parseError turns a D-Bus error from firewalld into an *Error; other
// errors (transport, context) are returned unchanged.
func parseError(err error) error {
	var de dbus.Error
	var dep *dbus.Error
	switch {
	case errors.As(err, &dep) && dep != nil:
		de = *dep
	case errors.As(err, &de):
	default:
		return err
	}
	switch de.Name {
	case exceptionName:
		return parseExceptionText(de.Error())
	case notAuthorizedName:
		return &Error{Code: ErrNotAuthorized.Code, Detail: de.Error()}
	case "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner":
		return &Error{Code: ErrNotRunning.Code, Detail: "D-Bus name " + busName + " has no owner"}
	}
	return err
}

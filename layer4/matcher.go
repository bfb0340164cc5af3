// Package knockerl4 is the caddy-l4 connection matcher knocked
// (layer4.matchers.knocked): it matches connections whose remote address
// holds an active knocker grant, so that caddy-l4 can gate raw TCP and UDP
// (SSH, game servers) without root or a firewall. It is a package of its
// own so that builds without caddy-l4 do not pull it in:
//
//	xcaddy build --with github.com/mholt/caddy-l4 --with github.com/caddy-knocker/knocker/layer4
package knockerl4

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/mholt/caddy-l4/layer4"

	"github.com/caddy-knocker/knocker"
	"github.com/caddy-knocker/knocker/internal/scope"
)

func init() {
	caddy.RegisterModule(MatchKnocked{})
}

// MatchKnocked matches connections whose remote address holds an active
// grant that admits Scope. The address is the connection's remote address
// as caddy-l4 exposes it: the peer's, or the one a proxy_protocol handler
// earlier in the routes read from the PROXY header. IPv4-mapped IPv6 counts
// as IPv4. A remote address that is no IP address (a unix socket) or
// carries an IPv6 zone, or a whitelist that cannot be read, is no match.
// It reads nothing from the connection, so it decides at once, also for
// protocols where the server speaks first (SSH).
type MatchKnocked struct {
	// Scope, when set, is the scope a grant must admit; a grant of an
	// unscoped key admits every scope. Empty: any grant of an unscoped key.
	Scope string `json:"scope,omitempty"`

	app *knocker.App
}

// CaddyModule returns the Caddy module information.
func (MatchKnocked) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "layer4.matchers.knocked",
		New: func() caddy.Module { return new(MatchKnocked) },
	}
}

// Provision checks the scope and finds the knocker app.
func (m *MatchKnocked) Provision(ctx caddy.Context) error {
	if err := scope.Check(m.Scope); err != nil {
		return fmt.Errorf("scope: %w", err)
	}
	app, err := knocker.AppFrom(ctx)
	if err != nil {
		return err
	}
	m.app = app
	return nil
}

// UnmarshalCaddyfile sets up the matcher from Caddyfile tokens. Syntax:
//
//	knocked [<scope>]
func (m *MatchKnocked) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	s, err := scope.ParseMatcher(d)
	m.Scope = s
	return err
}

// Match implements layer4.ConnMatcher.
func (m *MatchKnocked) Match(cx *layer4.Connection) (bool, error) {
	ip, ok := remoteIP(cx.RemoteAddr())
	if !ok {
		return false, nil
	}
	return m.app.Knocked(ip, m.Scope), nil
}

// remoteIP is addr's IP address, unmapped; ok is false for an address
// that is no IP address or has a zone (grants never have one).
func remoteIP(addr net.Addr) (ip netip.Addr, ok bool) {
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip = a.AddrPort().Addr()
	case *net.UDPAddr:
		ip = a.AddrPort().Addr()
	case nil:
		return netip.Addr{}, false
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Addr{}, false
		}
		ip = ap.Addr()
	}
	if !ip.IsValid() || ip.Zone() != "" {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

// Interface guards.
var (
	_ caddy.Provisioner     = (*MatchKnocked)(nil)
	_ caddyfile.Unmarshaler = (*MatchKnocked)(nil)
	_ layer4.ConnMatcher    = (*MatchKnocked)(nil)
)

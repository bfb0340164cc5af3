package knocker

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// client returns r's client address as Caddy resolved it (server options
// trusted_proxies, client_ip_headers, trusted_proxies_strict), with
// IPv4-mapped IPv6 unmapped so that a client has one identity whichever
// socket family carried it.
//
// ok is false, and the caller must fail closed, when Caddy resolved nothing,
// or when the peer is a trusted proxy whose headers gave no usable address:
// Caddy then falls back to the proxy's own address, and whitelisting the
// proxy would whitelist everyone behind it.
func (a *App) client(r *http.Request) (netip.Addr, bool) {
	c := a.resolveClient(r)
	return c.ip, c.ok
}

// resolvedClient is a request's client, resolved once per request.
type resolvedClient struct {
	ip    netip.Addr // valid when ok
	ok    bool
	actor netip.Addr     // who a knock counts against
	vars  map[string]any // Caddy's vars of the request (nil outside Caddy)
}

// resolveClient resolves r's client (see client) and who a knock from it
// counts against: the address Caddy resolved or, without one, the peer
// that sent the request. The first time a server without
// trusted_proxies_strict gets a request from a trusted proxy, it warns
// about the spoofing risk: Caddy then takes the left-most X-Forwarded-For
// address, which the client writes whenever the proxy appends to the
// header. (Caddy does not expose whether a server trusts any proxy before
// the first request, so the warning waits for one.)
func (a *App) resolveClient(r *http.Request) resolvedClient {
	vars, _ := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
	ip, trusted, ok := callerOf(r, vars)
	c := resolvedClient{ip: ip, ok: ok, actor: ip, vars: vars}
	if !ok {
		c.actor = netip.Addr{}
		if peer, ok := peerIP(r); ok {
			c.actor = peer.Unmap()
		}
	}
	if !trusted {
		return c
	}
	srv, _ := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if srv == nil {
		c.ip, c.ok = netip.Addr{}, false // no server: its proxies are unknown
		return c
	}
	info := a.serverOf(srv)
	if ok {
		// A hop Caddy did not recognise as one of the trusted proxies (an
		// IPv4-mapped form of one, see trustedproxies.go) is no client.
		if inside, readable := info.inTrustedProxies(r, ip); inside || !readable {
			c.ip, c.ok = netip.Addr{}, false
		}
	}
	if srv.TrustedProxiesStrict == 0 && !info.warned.Load() && info.warned.CompareAndSwap(false, true) {
		a.logger.Warn("this server trusts proxies without trusted_proxies_strict, so Caddy takes the LEFT-most X-Forwarded-For address, which a client can forge whenever its proxy appends to the header; knocker would then admit or whitelist the forged address. Enable trusted_proxies_strict in the servers global option unless every trusted proxy overwrites X-Forwarded-For",
			zap.Strings("listen", srv.Listen))
	}
	return c
}

// callerOf is the client Caddy resolved for r, unmapped, and whether the
// peer is a trusted proxy, from r's Caddy vars.
func callerOf(r *http.Request, vars map[string]any) (ip netip.Addr, trusted, ok bool) {
	s, _ := vars[caddyhttp.ClientIPVarKey].(string)
	trusted, _ = vars[caddyhttp.TrustedProxyVarKey].(bool)
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, trusted, false
	}
	ip = ip.Unmap()
	if trusted && r.RemoteAddr != unixPeer {
		// Compared unmapped, so a header naming the proxy as ::ffff:a.b.c.d
		// cannot pass for a client either.
		if peer, ok := peerIP(r); !ok || peer.Unmap() == ip {
			return netip.Addr{}, trusted, false
		}
	}
	return ip, trusted, true
}

// unixPeer is the RemoteAddr of a request that came over a unix socket.
// Caddy trusts such a peer as a proxy only under trusted_proxies_unix, and
// then resolves the client from its headers; without a usable header the
// client address is "@" itself, which parses as no address (fail closed).
const unixPeer = "@"

// isTrustedProxy reports whether Caddy found the direct peer in the server's
// trusted_proxies, which is what makes X-Forwarded-* headers believable.
func isTrustedProxy(r *http.Request) bool {
	trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool)
	return trusted
}

// peerIP is the address of the TCP peer, without port and zone.
func peerIP(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	host, _, _ = strings.Cut(host, "%")
	ip, err := netip.ParseAddr(host)
	return ip, err == nil
}

// isEarlyData reports a TLS 1.3 0-RTT request: its peer address has not been
// verified yet, so no decision may rest on it (as Caddy's own IP matchers do).
func isEarlyData(r *http.Request) bool {
	return r.TLS != nil && !r.TLS.HandshakeComplete
}

package knocker

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// clientIP returns the client address as Caddy resolved it (server options
// trusted_proxies, client_ip_headers, trusted_proxies_strict), with IPv4-mapped
// IPv6 unmapped so that a client has one identity whichever socket family
// carried it.
//
// ok is false, and the caller must fail closed, when Caddy resolved nothing,
// or when the peer is a trusted proxy whose headers gave no usable address:
// Caddy then falls back to the proxy's own address, and whitelisting the
// proxy would whitelist everyone behind it.
func clientIP(r *http.Request) (netip.Addr, bool) {
	ip, _, ok := resolveClient(r)
	return ip, ok
}

// resolveClient is clientIP that also reports whether the peer is a trusted
// proxy; it reads Caddy's vars map once (this runs on every gated request).
func resolveClient(r *http.Request) (ip netip.Addr, trusted, ok bool) {
	vars, _ := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
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

// rateLimitActor is who a knock is counted against: the resolved client, or,
// when the client cannot be resolved, the peer that sent the request.
func rateLimitActor(r *http.Request) netip.Addr {
	if ip, ok := clientIP(r); ok {
		return ip
	}
	if peer, ok := peerIP(r); ok {
		return peer.Unmap()
	}
	return netip.Addr{}
}

// isEarlyData reports a TLS 1.3 0-RTT request: its peer address has not been
// verified yet, so no decision may rest on it (as Caddy's own IP matchers do).
func isEarlyData(r *http.Request) bool {
	return r.TLS != nil && !r.TLS.HandshakeComplete
}

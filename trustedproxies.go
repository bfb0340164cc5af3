package knocker

import (
	"errors"
	"net/http"
	"net/netip"
	"reflect"
	"unsafe"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// A resolved client address inside the server's own trusted_proxies is a
// proxy, never a client: whitelisting it would admit everyone behind it.
// Caddy's strict walk can return one, because it compares an IPv4-mapped
// X-Forwarded-For hop (::ffff:a.b.c.d, as nginx or HAProxy on a dual-stack
// socket writes it) with the IPv4 ranges as written and finds no match, so
// the hop is taken for the client; knocker unmaps it, and it is the proxy.
// So knocker checks the resolved address against the ranges itself.
//
// Caddy keeps a server's trusted_proxies source in an unexported field
// (Server.trustedProxies, provisioned from TrustedProxiesRaw, which it then
// clears) and has no accessor, so it is read by reflection, once per server
// and config. If a Caddy version renames the field, proxySource fails and
// every request through a trusted proxy is refused (fail closed); a test
// catches that before a release.

var ipRangeSourceType = reflect.TypeFor[caddyhttp.IPRangeSource]()

var errNoProxySource = errors.New("cannot read the server's trusted_proxies (Caddy's caddyhttp.Server has no trustedProxies field of type IPRangeSource in this version)")

// proxySourceOf is a cached proxySource result; IPRangeSource is nil for a
// server without trusted proxies.
type proxySourceOf struct{ caddyhttp.IPRangeSource }

// proxySource returns srv's trusted_proxies source (nil if it has none).
func proxySource(srv *caddyhttp.Server) (caddyhttp.IPRangeSource, error) {
	f := reflect.ValueOf(srv).Elem().FieldByName("trustedProxies")
	if !f.IsValid() || f.Type() != ipRangeSourceType {
		return nil, errNoProxySource
	}
	return *(*caddyhttp.IPRangeSource)(unsafe.Pointer(f.UnsafeAddr())), nil
}

// inTrustedProxies reports whether ip (unmapped) is inside the trusted
// proxy ranges of the server handling r. ok is false if they cannot be
// read; the caller must then fail closed.
func (a *App) inTrustedProxies(r *http.Request, ip netip.Addr) (inside, ok bool) {
	srv, _ := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if srv == nil {
		return false, false
	}
	v, found := a.run.proxySources.Load(srv)
	if !found {
		src, err := proxySource(srv)
		if err != nil {
			a.logger.Error("refusing every client behind a trusted proxy", zap.Error(err))
			v = err
		} else {
			v = proxySourceOf{src}
		}
		v, _ = a.run.proxySources.LoadOrStore(srv, v)
	}
	src, readable := v.(proxySourceOf)
	if !readable {
		return false, false
	}
	if src.IPRangeSource == nil {
		return false, true
	}
	mapped := netip.AddrFrom16(ip.As16()) // ::ffff:a.b.c.d for IPv4, ip itself for IPv6
	for _, p := range src.GetIPRanges(r) {
		if p.Contains(ip) || p.Contains(mapped) {
			return true, true
		}
	}
	return false, true
}

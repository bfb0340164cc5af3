package knocker

import (
	"errors"
	"net/http"
	"net/netip"
	"reflect"
	"sync/atomic"
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

// proxySource returns srv's trusted_proxies source (nil if it has none).
func proxySource(srv *caddyhttp.Server) (caddyhttp.IPRangeSource, error) {
	f := reflect.ValueOf(srv).Elem().FieldByName("trustedProxies")
	if !f.IsValid() || f.Type() != ipRangeSourceType {
		return nil, errNoProxySource
	}
	return *(*caddyhttp.IPRangeSource)(unsafe.Pointer(f.UnsafeAddr())), nil
}

// serverInfo is what the gate learns once per server and config: its
// trusted proxy ranges (or why they cannot be read) and whether the
// trusted_proxies_strict warning was logged.
type serverInfo struct {
	srv    *caddyhttp.Server
	ranges caddyhttp.IPRangeSource // nil: no trusted proxies
	err    error                   // the ranges cannot be read: fail closed
	warned atomic.Bool
}

// serverOf returns srv's serverInfo. The last one used is kept beside the
// map: most configs have one or two servers, and this runs on every
// request from a trusted proxy.
func (a *App) serverOf(srv *caddyhttp.Server) *serverInfo {
	if last := a.run.lastServer.Load(); last != nil && last.srv == srv {
		return last
	}
	v, found := a.run.servers.Load(srv)
	if !found {
		info := &serverInfo{srv: srv}
		if info.ranges, info.err = proxySource(srv); info.err != nil {
			a.logger.Error("refusing every client behind a trusted proxy", zap.Error(info.err))
		}
		v, _ = a.run.servers.LoadOrStore(srv, info)
	}
	info := v.(*serverInfo)
	a.run.lastServer.Store(info)
	return info
}

// inTrustedProxies reports whether ip (unmapped) is inside the trusted
// proxy ranges of the server. ok is false if they cannot be read; the
// caller must then fail closed.
func (info *serverInfo) inTrustedProxies(r *http.Request, ip netip.Addr) (inside, ok bool) {
	if info.err != nil {
		return false, false
	}
	if info.ranges == nil {
		return false, true
	}
	mapped := netip.AddrFrom16(ip.As16()) // ::ffff:a.b.c.d for IPv4, ip itself for IPv6
	for _, p := range info.ranges.GetIPRanges(r) {
		if p.Contains(ip) || p.Contains(mapped) {
			return true, true
		}
	}
	return false, true
}

package knocker

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-knocker/knocker/internal/knockapi"
)

// return_hosts is the knock site's half of the portal (portal.go is the
// gate's): the web app, sent a ?return= URL, navigates there after a knock
// only if its host is on this list, so that the knock page is no open
// redirect. The app reads the list from GET /knock/portal at each visit,
// never from its offline cache, and checks the URL as the browser parses
// it (a server-side check would parse it differently: "https://a\@b/" is
// host a for a browser and b for Go).

// parseReturnHosts normalises the return_hosts entries: a host name, an IP
// address, or *. and a host name for its subdomains (not the name itself);
// lower case, without a trailing dot, with IPv6 in brackets as browsers
// write URL hosts.
func parseReturnHosts(hosts []string) ([]string, error) {
	out := make([]string, 0, len(hosts))
	for i, h := range hosts {
		n, err := normalizeReturnHost(h)
		if err != nil {
			return nil, fmt.Errorf("return_hosts[%d]: %q: %v", i, h, err)
		}
		out = append(out, n)
	}
	return out, nil
}

func normalizeReturnHost(h string) (string, error) {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")); err == nil {
		switch {
		case ip.Zone() != "":
			return "", fmt.Errorf("an address with a zone is no URL host")
		case ip.Is4():
			return ip.String(), nil
		case ip.Is4In6():
			return "", fmt.Errorf("write the IPv4 address %s", ip.Unmap())
		}
		return "[" + ip.String() + "]", nil
	}
	name, wildcard := strings.CutPrefix(h, "*.")
	if len(name) == 0 || len(name) > 253 {
		return "", fmt.Errorf("want a host name, an IP address or *.<host name>")
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 {
			return "", fmt.Errorf("want a host name (labels of 1 to 63 characters), an IP address or *.<host name>")
		}
		for _, c := range []byte(l) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				if c == ':' {
					return "", fmt.Errorf("give the host without a port: any port matches")
				}
				if c >= 0x80 {
					return "", fmt.Errorf("write an internationalised name in its xn-- form, as browsers compare it")
				}
				return "", fmt.Errorf("%q is not allowed in a host name (a wildcard is only *. in front)", c)
			}
		}
	}
	if last := labels[len(labels)-1]; strings.Trim(last, "0123456789") == "" {
		// Browsers read a name ending in a number as an IPv4 address.
		return "", fmt.Errorf("not an IP address, nor a host name")
	}
	if wildcard {
		return "*." + name, nil
	}
	return name, nil
}

// servePortal answers GET /knock/portal: what the web app needs to know
// about the portal. No key: the knock page shows it to whoever opens it.
// No CORS header, and no caching: an allowed list must never outlive the
// config that set it.
func (k *Knock) servePortal(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if allowGet(w, r) {
		knockapi.WriteJSON(w, http.StatusOK, knockapi.PortalResponse{ReturnHosts: k.returnHosts})
	}
}

// returnHostsArgs reads the hosts of the knock directive's return_hosts,
// checked now so that a typo fails with its line.
func returnHostsArgs(d *caddyfile.Dispenser) ([]string, error) {
	hosts := d.RemainingArgs()
	if len(hosts) == 0 {
		return nil, d.ArgErr()
	}
	for _, h := range hosts {
		if _, err := normalizeReturnHost(h); err != nil {
			return nil, d.Errf("return_hosts: %q: %v", h, err)
		}
	}
	return hosts, nil
}

package knocker

import (
	"encoding/json"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-knocker/knocker/firewalld"
	"github.com/caddy-knocker/knocker/internal/knockapi"
	"github.com/caddy-knocker/knocker/internal/pathmatch"
	"github.com/caddy-knocker/knocker/store"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("knocker", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("knock", parseKnockDirective)
	httpcaddyfile.RegisterHandlerDirective("knocker", parseGateDirective)
	// Both run before any request manipulation (redir, rewrite, uri,
	// try_files), so the gate sees the path the client sent; knock comes
	// first so that its endpoints stay reachable in a gated site.
	httpcaddyfile.RegisterDirectiveOrder("knock", httpcaddyfile.Before, "redir")
	httpcaddyfile.RegisterDirectiveOrder("knocker", httpcaddyfile.Before, "redir")
}

// parseGlobalOption parses the knocker global option:
//
//	knocker {
//		whitelist_file   <path>
//		max_entries      <n>
//		cleanup_interval <duration>
//		ipv6_prefix      <bits>
//		key <name> <secret> {
//			max_ttl <duration>
//			allow_remote_whitelist
//			max_grants <n>
//			ipv6_prefix <bits>
//		}
//		rate_limit {
//			window  <duration>
//			success <n>
//			failure <n>
//		}
//		firewalld {
//			zone    <name...>
//			action  drop|reject
//			port    <port>/<tcp|udp>
//			monitor <cidr...>
//		}
//		cluster nats {
//			url       <url...>
//			secret    <secret>
//			bucket    <name>
//			node      <name>
//			replicas  <n>
//			creds <file> | user <u> password <p> | token <t> | nkey <file>
//			tls {
//				ca   <file>
//				cert <file>
//				key  <file>
//			}
//			when_down refuse|local
//			timeout   <duration>
//		}
//	}
//
// Repeated knocker blocks are merged.
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(App)
	if prev, ok := existing.(httpcaddyfile.App); ok {
		if err := json.Unmarshal(prev.Value, app); err != nil {
			return nil, err
		}
	}
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "knocker", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile sets up the app from Caddyfile tokens.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "whitelist_file":
			if a.WhitelistFile != "" {
				return d.Errf("whitelist_file: specified more than once")
			}
			if !d.AllArgs(&a.WhitelistFile) {
				return d.ArgErr()
			}
		case "max_entries":
			n, err := positiveIntArg(d, opt)
			if err != nil {
				return err
			}
			a.MaxEntries = n
		case "cleanup_interval":
			dur, err := durationArg(d, opt)
			if err != nil {
				return err
			}
			a.CleanupInterval = dur
		case "ipv6_prefix":
			bits, err := ipv6PrefixArg(d, opt)
			if err != nil {
				return err
			}
			a.IPv6Prefix = bits
		case "key":
			key, err := unmarshalKey(d)
			if err != nil {
				return err
			}
			for _, k := range a.Keys {
				if k.Name == key.Name {
					return d.Errf("key %q: defined more than once", key.Name)
				}
			}
			a.Keys = append(a.Keys, key)
		case "firewalld":
			if a.FirewallRaw != nil {
				return d.Errf("firewalld: specified more than once")
			}
			fw := new(firewalld.Backend)
			if err := fw.UnmarshalCaddyfile(d); err != nil {
				return err
			}
			a.FirewallRaw = caddyconfig.JSONModuleObject(fw, "backend", "firewalld", nil)
		case "cluster":
			if a.ClusterRaw != nil {
				return d.Errf("cluster: specified more than once")
			}
			if !d.NextArg() {
				return d.Errf("cluster: name the driver, e.g. cluster nats { ... }")
			}
			driver := d.Val()
			mod, err := caddyfile.UnmarshalModule(d, "knocker.cluster."+driver)
			if err != nil {
				return d.Errf("cluster %s: %v", driver, err)
			}
			a.ClusterRaw = caddyconfig.JSONModuleObject(mod, "driver", driver, nil)
		case "rate_limit":
			if a.RateLimit == nil {
				a.RateLimit = new(RateLimit)
			}
			if err := unmarshalRateLimit(d, a.RateLimit); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized knocker option %q", opt)
		}
	}
	return nil
}

func unmarshalKey(d *caddyfile.Dispenser) (APIKey, error) {
	var key APIKey
	if !d.Args(&key.Name, &key.Secret) || d.NextArg() {
		return key, d.Errf("key: want key <name> <secret> { max_ttl <duration> }")
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "max_ttl":
			dur, err := durationArg(d, "key "+strconv.Quote(key.Name)+": max_ttl")
			if err != nil {
				return key, err
			}
			key.MaxTTL = dur
		case "allow_remote_whitelist":
			if d.NextArg() {
				return key, d.Errf("key %q: allow_remote_whitelist takes no arguments", key.Name)
			}
			key.AllowRemoteWhitelist = true
		case "max_grants":
			n, err := positiveIntArg(d, "key "+strconv.Quote(key.Name)+": max_grants")
			if err != nil {
				return key, err
			}
			key.MaxGrants = n
		case "ipv6_prefix":
			bits, err := ipv6PrefixArg(d, "key "+strconv.Quote(key.Name)+": ipv6_prefix")
			if err != nil {
				return key, err
			}
			key.IPv6Prefix = bits
		case "scopes":
			if key.Scopes != nil {
				return key, d.Errf("key %q: scopes: specified more than once", key.Name)
			}
			args := d.RemainingArgs()
			if len(args) == 0 {
				return key, d.Errf("key %q: scopes: want scopes <scope>... (leave scopes out for full access)", key.Name)
			}
			set, err := store.CheckScopes(args)
			if err != nil {
				return key, d.Errf("key %q: scopes: %v", key.Name, err)
			}
			key.Scopes = set
		default:
			return key, d.Errf("key %q: unrecognized option %q", key.Name, opt)
		}
	}
	if key.MaxTTL == 0 {
		return key, d.Errf("key %q: max_ttl is required", key.Name)
	}
	return key, nil
}

func unmarshalRateLimit(d *caddyfile.Dispenser, rl *RateLimit) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "window":
			dur, err := durationArg(d, "rate_limit: window")
			if err != nil {
				return err
			}
			rl.Window = dur
		case "success", "failure":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				return d.Errf("rate_limit: %s: want 0 (unlimited) or a positive integer, got %q", opt, s)
			}
			if opt == "success" {
				rl.Success = &n
			} else {
				rl.Failure = &n
			}
		default:
			return d.Errf("rate_limit: unrecognized option %q", opt)
		}
	}
	return nil
}

func positiveIntArg(d *caddyfile.Dispenser, name string) (int, error) {
	var s string
	if !d.AllArgs(&s) {
		return 0, d.ArgErr()
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, d.Errf("%s: want a positive integer, got %q", name, s)
	}
	return n, nil
}

// ipv6PrefixArg reads an ipv6_prefix and checks it now, so that a bad
// value fails at adapt time with its line.
func ipv6PrefixArg(d *caddyfile.Dispenser, name string) (*int, error) {
	var s string
	if !d.AllArgs(&s) {
		return nil, d.ArgErr()
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return nil, d.Errf("%s: want a prefix length from %d to 128, got %q", name, knockapi.MinIPv6Prefix, s)
	}
	if err := knockapi.CheckIPv6Prefix(n); err != nil {
		return nil, d.Errf("%s: %v", name, err)
	}
	return &n, nil
}

func durationArg(d *caddyfile.Dispenser, name string) (caddy.Duration, error) {
	var s string
	if !d.AllArgs(&s) {
		return 0, d.ArgErr()
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil || dur <= 0 {
		return 0, d.Errf("%s: want a positive duration such as 90s or 1h, got %q", name, s)
	}
	return caddy.Duration(dur), nil
}

func parseGateDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	g := new(Gate)
	err := g.UnmarshalCaddyfile(h.Dispenser)
	return g, err
}

// UnmarshalCaddyfile sets up the gate from Caddyfile tokens:
//
//	knocker [<matcher>] {
//		always_allow <ranges...>
//		exclude      <path-prefixes...>
//		deny_status  <code>
//		deny status <code>   # the long form of deny_status
//		deny redirect <url>
//		scope        <name>
//	}
func (g *Gate) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "always_allow", "exclude":
			if err := g.AccessPolicy.unmarshalCaddyfile(d, opt); err != nil {
				return err
			}
		case "deny":
			if err := g.unmarshalDeny(d); err != nil {
				return err
			}
		case "deny_status":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			code, err := denyStatusCode(d, opt, s)
			if err != nil {
				return err
			}
			g.DenyStatus = code
		case "scope":
			if !d.AllArgs(&g.Scope) {
				return d.Errf("scope: want scope <name> (one scope per gate)")
			}
			if err := checkGateScope(g.Scope); err != nil {
				return d.Errf("%v", err)
			}
		default:
			return d.Errf("unrecognized knocker option %q", opt)
		}
	}
	return nil
}

func parseKnockDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	k := new(Knock)
	err := k.UnmarshalCaddyfile(h.Dispenser)
	return k, err
}

// UnmarshalCaddyfile sets up the knock API from Caddyfile tokens:
//
//	knock [<matcher>] {
//		cors_origin  <origin>
//		always_allow <ranges...>
//		exclude      <path-prefixes...>
//		exclude_host <host> <path-prefixes...>
//		web          on|off
//		return_hosts <host...>
//	}
func (k *Knock) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "always_allow", "exclude":
			if err := k.AccessPolicy.unmarshalCaddyfile(d, opt); err != nil {
				return err
			}
		case "cors_origin":
			if !d.AllArgs(&k.CORSOrigin) {
				return d.ArgErr()
			}
		case "exclude_host":
			if !d.NextArg() {
				return d.ArgErr()
			}
			host := d.Val()
			if pathmatch.NormalizeHost(host) == "" {
				return d.Errf("exclude_host: %q is not a host name", host)
			}
			paths, err := pathArgs(d, "exclude_host "+host)
			if err != nil {
				return err
			}
			if k.ExcludeHosts == nil {
				k.ExcludeHosts = make(map[string][]string)
			}
			k.ExcludeHosts[host] = append(k.ExcludeHosts[host], paths...)
		case "web":
			var v string
			if !d.AllArgs(&v) || v != "on" && v != "off" {
				return d.Errf("web: want on or off")
			}
			k.DisableWeb = v == "off"
		case "return_hosts":
			hosts, err := returnHostsArgs(d)
			if err != nil {
				return err
			}
			k.ReturnHosts = append(k.ReturnHosts, hosts...)
		default:
			return d.Errf("unrecognized knock option %q", opt)
		}
	}
	return nil
}

// unmarshalCaddyfile reads the policy's subdirective opt (always_allow or
// exclude), on which d is positioned.
func (p *AccessPolicy) unmarshalCaddyfile(d *caddyfile.Dispenser, opt string) error {
	if opt == "always_allow" {
		ranges, err := rangesArgs(d, opt)
		p.AlwaysAllow = append(p.AlwaysAllow, ranges...)
		return err
	}
	paths, err := pathArgs(d, opt)
	p.Exclude = append(p.Exclude, paths...)
	return err
}

// rangesArgs reads IP ranges and checks them now, so that a typo fails at
// adapt time with a line number.
func rangesArgs(d *caddyfile.Dispenser, name string) ([]string, error) {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.ArgErr()
	}
	if _, err := parseIPRanges(name, args); err != nil {
		return nil, d.Err(err.Error())
	}
	return args, nil
}

// pathArgs reads exclusion prefixes and refuses ones that exclude everything.
func pathArgs(d *caddyfile.Dispenser, name string) ([]string, error) {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.ArgErr()
	}
	if _, err := pathmatch.ParsePrefixes(name, args); err != nil {
		return nil, d.Err(err.Error())
	}
	return args, nil
}

// Interface guards.
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*Gate)(nil)
	_ caddyfile.Unmarshaler = (*Knock)(nil)
)

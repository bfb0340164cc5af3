package firewalld

import (
	"net/netip"
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-knocker/knocker/store"
)

// UnmarshalCaddyfile reads the firewalld block of the knocker global
// option; d is positioned on the "firewalld" token:
//
//	firewalld {
//		zone <name...>
//		action <drop|reject>
//		port <port>/<tcp|udp>... [scope <name>]  # repeatable
//		monitor <cidr...>
//		state_file <path>
//		queue_size <n>
//	}
//
// Values are checked here too, so `caddy adapt` reports bad ones with
// their line.
func (b *Backend) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.Errf("firewalld takes no arguments, only a block")
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		args := d.RemainingArgs()
		switch sub {
		case "zone", "action", "monitor", "state_file", "queue_size":
			if seen[sub] {
				return d.Errf("firewalld: %s: given twice", sub)
			}
			seen[sub] = true
		}
		switch sub {
		case "zone":
			if len(args) == 0 {
				return d.Errf("firewalld: zone: want one or more zone names")
			}
			for _, z := range args {
				if err := checkZoneName(z); err != nil {
					return d.Errf("firewalld: zone: %v", err)
				}
			}
			b.Zones = append(b.Zones, args...)
		case "action":
			if len(args) != 1 || args[0] != actionDrop && args[0] != actionReject {
				return d.Errf("firewalld: action: want drop or reject")
			}
			b.Action = args[0]
		case "port":
			ports, scope := args, ""
			if n := len(args); n >= 2 && args[n-2] == "scope" {
				ports, scope = args[:n-2], args[n-1]
				if _, err := store.CheckScopes([]string{scope}); err != nil {
					return d.Errf("firewalld: port: scope: %v", err)
				}
			}
			if len(ports) == 0 {
				return d.Errf("firewalld: port: want <port>/<tcp|udp>... [scope <name>], e.g. 22/tcp")
			}
			for _, p := range ports {
				if p == "scope" {
					return d.Errf("firewalld: port: want scope <name> once, after the ports")
				}
				if _, err := ParsePort(p); err != nil {
					return d.Errf("firewalld: port: %v", err)
				}
			}
			if scope == "" {
				b.Ports = append(b.Ports, ports...)
				break
			}
			if b.ScopedPorts == nil {
				b.ScopedPorts = map[string][]string{}
			}
			b.ScopedPorts[scope] = append(b.ScopedPorts[scope], ports...)
		case "monitor":
			if len(args) == 0 {
				return d.Errf("firewalld: monitor: want one or more CIDRs")
			}
			for _, m := range args {
				if _, err := netip.ParsePrefix(m); err != nil {
					return d.Errf("firewalld: monitor: %q is not a CIDR with an explicit mask", m)
				}
			}
			b.Monitor = args
		case "state_file":
			if len(args) != 1 {
				return d.Errf("firewalld: state_file: want one path")
			}
			b.StateFile = args[0]
		case "queue_size":
			n, err := 0, error(nil)
			if len(args) == 1 {
				n, err = strconv.Atoi(args[0])
			}
			if len(args) != 1 || err != nil || n < 1 || n > maxQueueSize {
				return d.Errf("firewalld: queue_size: want a number from 1 to %d", maxQueueSize)
			}
			b.QueueSize = n
		default:
			return d.Errf("firewalld: unknown subdirective %q", sub)
		}
	}
	// Whole-config checks (a port listed twice, no port at all, host bits).
	if _, err := b.parseSettings(); err != nil {
		return d.Errf("firewalld: %v", err)
	}
	return nil
}

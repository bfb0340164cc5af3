package firewalld

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/caddy-knocker/knocker/store"
)

const (
	defaultQueueSize = 32
	maxQueueSize     = 1 << 16
)

// settings is the validated form of the Backend's JSON fields.
type settings struct {
	zones     []string        // empty: firewalld's default zone, resolved at Start
	action    string          // drop or reject
	ports     []Port          // every gated port: unscoped first, then by scope
	portScope map[Port]string // the scope of each scoped port
	monitor   []netip.Prefix  // canonical; a /0 stands for its whole family
	stateFile string          // empty: beside the whitelist
	queueSize int
}

// parseSettings validates the Backend's fields. Errors name the field.
func (b *Backend) parseSettings() (settings, error) {
	s := settings{action: actionDrop, queueSize: defaultQueueSize, stateFile: b.StateFile}

	seenZone := map[string]bool{}
	for _, z := range b.Zones {
		if err := checkZoneName(z); err != nil {
			return s, fmt.Errorf("zones: %v", err)
		}
		if seenZone[z] {
			return s, fmt.Errorf("zones: %q listed twice", z)
		}
		seenZone[z] = true
		s.zones = append(s.zones, z)
	}

	switch b.Action {
	case "", actionDrop:
	case actionReject:
		s.action = actionReject
	default:
		return s, fmt.Errorf("action: %q is not drop or reject", b.Action)
	}

	if len(b.Ports) == 0 && len(b.ScopedPorts) == 0 {
		return s, fmt.Errorf("ports: at least one <port>/<tcp|udp> is required (in ports or scoped_ports)")
	}
	seenPort := map[Port]string{} // port -> the field it was listed in
	addPort := func(field, text string) error {
		p, err := ParsePort(text)
		if err != nil {
			return fmt.Errorf("%s: %v", field, err)
		}
		if where, dup := seenPort[p]; dup {
			if where == field {
				return fmt.Errorf("%s: %s listed twice", field, p)
			}
			return fmt.Errorf("%s: %s is also listed in %s: a port is gated once, unscoped or for one scope", field, p, where)
		}
		seenPort[p] = field
		s.ports = append(s.ports, p)
		return nil
	}
	for _, text := range b.Ports {
		if err := addPort("ports", text); err != nil {
			return s, err
		}
	}
	for _, scope := range slices.Sorted(maps.Keys(b.ScopedPorts)) {
		if _, err := store.CheckScopes([]string{scope}); err != nil {
			return s, fmt.Errorf("scoped_ports: %v", err)
		}
		field := "scoped_ports: " + scope
		if len(b.ScopedPorts[scope]) == 0 {
			return s, fmt.Errorf("%s: no ports listed", field)
		}
		for _, text := range b.ScopedPorts[scope] {
			if err := addPort(field, text); err != nil {
				return s, err
			}
			if s.portScope == nil {
				s.portScope = map[Port]string{}
			}
			s.portScope[s.ports[len(s.ports)-1]] = scope
		}
	}

	monitor := b.Monitor
	if len(monitor) == 0 {
		monitor = []string{"0.0.0.0/0", "::/0"}
	}
	var err error
	if s.monitor, err = parseMonitor(monitor); err != nil {
		return s, fmt.Errorf("monitor: %v", err)
	}

	switch {
	case b.QueueSize < 0 || b.QueueSize > maxQueueSize:
		return s, fmt.Errorf("queue_size: must be from 1 to %d, got %d", maxQueueSize, b.QueueSize)
	case b.QueueSize > 0:
		s.queueSize = b.QueueSize
	}
	return s, nil
}

// portsFor returns the ports a grant limited to scopes opens: the unscoped
// ports and those of its scopes; every port for a full-access grant
// (scopes nil), which admits every scope, as at the gates.
func (s settings) portsFor(scopes []string) []Port {
	if len(scopes) == 0 || len(s.portScope) == 0 {
		return s.ports
	}
	out := make([]Port, 0, len(s.ports))
	for _, p := range s.ports {
		if sc, scoped := s.portScope[p]; !scoped || slices.Contains(scopes, sc) {
			out = append(out, p)
		}
	}
	return out
}

// parseMonitor parses CIDRs with explicit masks into canonical prefixes.
// A /0 covers its family, so other prefixes of that family are dropped.
func parseMonitor(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	seen := map[netip.Prefix]bool{}
	all := map[bool]bool{} // by v6
	for _, text := range list {
		p, err := netip.ParsePrefix(text)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR with an explicit mask (e.g. 203.0.113.0/24, 2001:db8::/32, 0.0.0.0/0)", text)
		}
		switch {
		case p.Addr().Zone() != "":
			return nil, fmt.Errorf("%q: zoned IPv6 addresses are not supported", text)
		case p.Addr().Is4In6():
			return nil, fmt.Errorf("%q: IPv4-mapped IPv6; use the IPv4 form", text)
		case p != p.Masked():
			return nil, fmt.Errorf("%q has host bits set; use %s", text, p.Masked())
		case seen[p]:
			return nil, fmt.Errorf("%s listed twice", p)
		}
		seen[p] = true
		if p.Bits() == 0 {
			all[p.Addr().Is6()] = true
		}
		out = append(out, p)
	}
	kept := out[:0]
	for _, p := range out {
		if p.Bits() > 0 && all[p.Addr().Is6()] {
			continue
		}
		kept = append(kept, p)
	}
	return kept, nil
}

// checkZoneName rejects names firewalld could never have, and any text
// that could not be passed through safely.
func checkZoneName(z string) error {
	if z == "" {
		return fmt.Errorf("empty zone name")
	}
	if len(z) > 64 || strings.ContainsFunc(z, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-+.", r))
	}) {
		return fmt.Errorf("%q is not a valid zone name (letters, digits, _ - + . only)", z)
	}
	return nil
}

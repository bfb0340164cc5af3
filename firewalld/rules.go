package firewalld

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/caddy-knocker/knocker/store"
)

// Rich-rule priorities of Knocker's rules. Negative priorities run before
// the zone's own services and ports, so a monitored port is closed even if
// the zone opens it; lower runs first, so a grant's accept beats the drop.
// The values are unusual on purpose (far from the -1, -100, -1000 and
// -32768 people pick) so that, with the exact rule shape, they mark a rule
// as Knocker's, and they leave room on both sides: an administrator's rule
// below -27002 (a blocklist, say) still wins over any grant, and rules
// between -27000 and -1 still run before the zone's services.
const (
	PriorityAccept = -27002 // per grant, per port: timed runtime accept
	PriorityBlock  = -27001 // per zone, port and family: permanent drop/reject
)

// Actions of Knocker's rules.
const (
	actionAccept = "accept"
	actionDrop   = "drop"
	actionReject = "reject"
)

// Port is a monitored port: a number and tcp or udp.
type Port struct {
	Number   uint16
	Protocol string
}

func (p Port) String() string { return strconv.Itoa(int(p.Number)) + "/" + p.Protocol }

// ParsePort parses "22/tcp" (protocol tcp or udp, port 1-65535).
func ParsePort(s string) (Port, error) {
	num, proto, ok := strings.Cut(s, "/")
	if !ok {
		return Port{}, fmt.Errorf("%q: want <port>/<tcp|udp>, e.g. 22/tcp", s)
	}
	if proto != "tcp" && proto != "udp" {
		return Port{}, fmt.Errorf("%q: protocol must be tcp or udp", s)
	}
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil || n == 0 || strconv.FormatUint(n, 10) != num {
		return Port{}, fmt.Errorf("%q: port must be a number from 1 to 65535", s)
	}
	return Port{Number: uint16(n), Protocol: proto}, nil
}

// richRule is one of Knocker's rich rules. It is only ever built from
// validated values, so its text cannot carry anything firewalld would
// parse as another element.
type richRule struct {
	priority int
	v6       bool
	source   netip.Prefix // invalid: every source of the family
	port     Port
	action   string
}

// String returns the rule in firewalld's canonical form, the text
// getRichRules prints back (element order of Rich_Rule.__str__: priority,
// family, source, element, action; reject without a type; addresses as
// given, which for Knocker is store.FormatPrefix: a bare address for a
// single host, lower-case compressed IPv6).
func (r richRule) String() string {
	var b strings.Builder
	b.Grow(112)
	b.WriteString(`rule priority="`)
	b.WriteString(strconv.Itoa(r.priority))
	b.WriteString(`" family="`)
	b.WriteString(familyName(r.v6))
	b.WriteByte('"')
	if r.source.IsValid() {
		b.WriteString(` source address="`)
		b.WriteString(store.FormatPrefix(r.source))
		b.WriteByte('"')
	}
	b.WriteString(` port port="`)
	b.WriteString(strconv.Itoa(int(r.port.Number)))
	b.WriteString(`" protocol="`)
	b.WriteString(r.port.Protocol)
	b.WriteString(`" `)
	b.WriteString(r.action)
	return b.String()
}

func familyName(v6 bool) string {
	if v6 {
		return "ipv6"
	}
	return "ipv4"
}

// blockRules returns the default rules of one zone: per port, per
// monitored prefix, a drop or reject at PriorityBlock. A /0 prefix means
// the whole family, written without a source.
func blockRules(ports []Port, monitor []netip.Prefix, action string) []richRule {
	rules := make([]richRule, 0, len(ports)*len(monitor))
	for _, port := range ports {
		for _, m := range monitor {
			r := richRule{priority: PriorityBlock, v6: !m.Addr().Is4(), port: port, action: action}
			if m.Bits() > 0 {
				r.source = m
			}
			rules = append(rules, r)
		}
	}
	return rules
}

// acceptRules returns a grant's rules: per port, an accept for p at
// PriorityAccept in p's family.
func acceptRules(p netip.Prefix, ports []Port) []richRule {
	rules := make([]richRule, len(ports))
	for i, port := range ports {
		rules[i] = richRule{priority: PriorityAccept, v6: !p.Addr().Is4(), source: p, port: port, action: actionAccept}
	}
	return rules
}

var knockerShape = regexp.MustCompile(`^rule priority="(-?[0-9]+)" family="(ipv4|ipv6)"(?: source address="([^"]+)")? port port="([0-9]+)" protocol="(tcp|udp)" (accept|drop|reject)$`)

// parseKnockerRule recognises a rule Knocker could have written: its exact
// priority, shape and canonical spelling (an accept has a source and
// PriorityAccept; a drop or reject has PriorityBlock). Anything else,
// however similar, is someone else's and is never touched.
func parseKnockerRule(s string) (richRule, bool) {
	m := knockerShape.FindStringSubmatch(s)
	if m == nil {
		return richRule{}, false
	}
	r := richRule{v6: m[2] == "ipv6", action: m[6]}
	var err error
	if r.priority, err = strconv.Atoi(m[1]); err != nil {
		return richRule{}, false
	}
	switch {
	case r.action == actionAccept && r.priority == PriorityAccept && m[3] != "":
	case r.action != actionAccept && r.priority == PriorityBlock:
	default:
		return richRule{}, false
	}
	if m[3] != "" {
		if r.source, err = store.ParseEntryKey(m[3]); err != nil || r.source.Addr().Is4() == r.v6 {
			return richRule{}, false
		}
	}
	if r.port, err = ParsePort(m[4] + "/" + m[5]); err != nil {
		return richRule{}, false
	}
	if r.String() != s { // e.g. "10.0.0.1/32" or upper-case IPv6: not ours
		return richRule{}, false
	}
	return r, true
}

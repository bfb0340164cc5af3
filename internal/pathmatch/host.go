package pathmatch

import (
	"net/netip"
	"strings"
)

// NormalizeHost reduces a Host or X-Forwarded-Host value to a lower-case host
// name without port or brackets, taking the first of a comma-separated list.
// Values with userinfo are refused (""), unlike the Python Knocker, which read
// "evil.com@good.com" as good.com; an unbracketed IPv6 address stays whole.
func NormalizeHost(s string) string {
	s, _, _ = strings.Cut(s, ",")
	s = strings.TrimSpace(s)
	if s == "" || strings.ContainsAny(s, "@/ \t") {
		return ""
	}
	if s == "*" {
		return s
	}
	if rest, ok := strings.CutPrefix(s, "["); ok {
		host, _, found := strings.Cut(rest, "]")
		if !found {
			return ""
		}
		s = host
	} else if _, err := netip.ParseAddr(s); err != nil {
		if i := strings.LastIndexByte(s, ':'); i >= 0 && strings.Count(s, ":") == 1 {
			s = s[:i]
		}
	}
	return strings.TrimSuffix(strings.ToLower(s), ".")
}

// Package scope holds the rule for scope names and the Caddyfile syntax of
// the knocked matchers, which the HTTP matcher (the knocker package) and
// the caddy-l4 matcher (the layer4 package) share.
package scope

import (
	"fmt"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// MaxLen is the longest scope name.
const MaxLen = 32

// Check returns an error unless name is a scope name: a word of lowercase
// letters, digits, '_' and '-', starting with a letter or digit, at most
// MaxLen bytes ([a-z0-9][a-z0-9_-]{0,31}). The empty name, no scope, is
// valid. Names are this strict so that they read the same in a
// Caddyfile, JSON, logs and URLs.
func Check(name string) error {
	if name == "" {
		return nil
	}
	if len(name) > MaxLen {
		return fmt.Errorf("%q is not a scope name: longer than %d characters", name, MaxLen)
	}
	for i := range len(name) {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return fmt.Errorf("%q is not a scope name: use lowercase letters, digits, '_' and '-', starting with a letter or digit", name)
		}
	}
	return nil
}

// ParseMatcher parses a knocked matcher, `knocked [<scope>]`, and returns
// its scope ("" without one). d is positioned before the matcher's name,
// as Caddy hands matchers their tokens; a matcher given twice in one
// matcher set is an error, since its scopes would have to be ANDed.
func ParseMatcher(d *caddyfile.Dispenser) (string, error) {
	d.Next() // the matcher's name
	name := d.Val()
	var s string
	if d.NextArg() {
		s = d.Val()
		if err := Check(s); err != nil {
			return "", d.Errf("%s: %v", name, err)
		}
	}
	if d.NextArg() {
		return "", d.Errf("%s: too many arguments: want at most one scope, got %q after %q", name, d.Val(), s)
	}
	if d.NextBlock(0) {
		return "", d.Errf("%s: blocks are not supported", name)
	}
	if d.Next() {
		return "", d.Errf("%s: given more than once in one matcher set", name)
	}
	return s, nil
}

// Package scope holds the rule for scope names and the Caddyfile syntax of
// the knocked matchers, which the HTTP matcher (the knocker package) and
// the caddy-l4 matcher (the layer4 package) share.
package scope

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-knocker/knocker/store"
)

// Check returns an error unless name is a scope name (the rule is the
// store's, store.CheckScopes: a word of lowercase letters, digits, '_' and
// '-', starting with a letter or digit, at most 32 bytes). The empty name,
// no scope, is valid.
func Check(name string) error {
	if name == "" {
		return nil
	}
	_, err := store.CheckScopes([]string{name})
	return err
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

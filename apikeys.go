package knocker

import (
	"cmp"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-knocker/knocker/internal/keyring"
)

// APIKey is one knock credential.
type APIKey struct {
	// Name identifies the key in logs; it is not secret.
	Name string `json:"name"`
	// Secret is the key material. Use a placeholder such as {env.NAME} or
	// {file./path}: it is resolved when the config loads, so the secret
	// stays out of adapted and autosaved JSON.
	Secret string `json:"secret"`
	// MaxTTL caps the lifetime of a grant made with this key. Required.
	MaxTTL caddy.Duration `json:"max_ttl"`
	// AllowRemoteWhitelist lets the key whitelist any IP or CIDR, not only
	// the caller's own address.
	AllowRemoteWhitelist bool `json:"allow_remote_whitelist,omitempty"`
	// MaxGrants bounds the grants this key holds at once: a knock for a
	// further entry first evicts the key's soonest-expiring grant (0: no
	// bound but max_entries).
	MaxGrants int `json:"max_grants,omitempty"`
	// IPv6Prefix makes a knock for the caller's own IPv6 address grant its
	// network of this many bits (64: the /64 that temporary addresses
	// rotate in), 48 to 128; it overrides the app's ipv6_prefix.
	IPv6Prefix *int `json:"ipv6_prefix,omitempty"`
	// Scopes limits the key's grants to the gates of these scopes (and
	// /verify?scope=): a gate with `scope media` admits grants of keys with
	// scope media and of keys without scopes; a gate without scope admits
	// only grants of keys without scopes. Absent: full access, as before.
	Scopes []string `json:"scopes,omitempty"`
}

// newKeyring resolves keys' secrets with repl and validates the keys;
// ipv6Prefix is the app's default for keys that set none (nil: 128).
func newKeyring(keys []APIKey, ipv6Prefix *int, repl *caddy.Replacer) (keyring.Ring, []string, error) {
	specs := make([]keyring.Spec, len(keys))
	for i, k := range keys {
		specs[i] = keyring.Spec{Name: k.Name, Secret: k.Secret, MaxTTL: time.Duration(k.MaxTTL), AllowRemote: k.AllowRemoteWhitelist, MaxGrants: k.MaxGrants,
			IPv6Prefix: cmp.Or(k.IPv6Prefix, ipv6Prefix), Scopes: k.Scopes}
	}
	return keyring.New(specs, func(s string) (string, error) { return repl.ReplaceOrErr(s, true, true) })
}

// Package keyring holds the knock API keys: their validation, constant-time
// authentication and the eviction rule between keys' grants.
package keyring

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/caddy-knocker/knocker/internal/knockapi"
	"github.com/caddy-knocker/knocker/store"
)

// placeholderSecrets are substrings of example secrets that have been
// published; a key containing one is as good as public.
var placeholderSecrets = []string{"CHANGE_ME", "REPLACE_WITH"}

// minSecretLen is the length below which a secret draws a warning.
const minSecretLen = 16

// Reserved is the key name of grants made through the admin API; no
// configured key may take it, so that revoking by key name revokes what
// that key made and nothing else.
const Reserved = "admin-api"

// Spec is a key as configured.
type Spec struct {
	Name        string
	Secret      string // before resolve
	MaxTTL      time.Duration
	AllowRemote bool
	MaxGrants   int
	IPv6Prefix  *int     // ipv6_prefix (the key's, else the app's); nil: 128
	Scopes      []string // nil: full access
}

// Key is a provisioned key: only a digest of the secret is kept, so that
// comparisons take the same time whatever the presented key's length.
type Key struct {
	Name        string
	MaxTTL      int64 // seconds
	AllowRemote bool  // may whitelist any IP or CIDR
	MaxGrants   int   // 0: no bound but the whitelist's
	IPv6Prefix  int   // an own-address IPv6 knock grants this network (128: the address)
	// Scopes limits the key's grants to gates of these scopes, canonical
	// (sorted, no duplicates); nil: full access.
	Scopes []string
	digest [sha256.Size]byte
}

// Ring is the configured keys.
type Ring []Key

// New resolves (with resolve, which expands placeholders) and validates
// keys, and returns warnings to log. Errors name the key, never its secret.
func New(keys []Spec, resolve func(string) (string, error)) (Ring, []string, error) {
	if len(keys) == 0 {
		return nil, nil, fmt.Errorf("keys: at least one key is required (global option: knocker { key <name> <secret> { max_ttl <duration> } })")
	}
	var warnings []string
	ring := make(Ring, 0, len(keys))
	names := make(map[string]bool, len(keys))
	secrets := make(map[[sha256.Size]byte]string, len(keys))
	for i, k := range keys {
		if k.Name == "" {
			return nil, nil, fmt.Errorf("keys[%d]: name is required", i)
		}
		if k.Name == Reserved {
			return nil, nil, fmt.Errorf("key %q: the name is reserved for grants made through the admin API", k.Name)
		}
		if names[k.Name] {
			return nil, nil, fmt.Errorf("key %q: duplicate key name", k.Name)
		}
		if store.CheckOwnerName(k.Name) != nil { // the name is stored with the key's grants
			return nil, nil, fmt.Errorf("keys[%d]: name must be valid UTF-8 of at most 256 bytes", i)
		}
		names[k.Name] = true
		secret, err := resolve(k.Secret)
		if err != nil {
			return nil, nil, fmt.Errorf("key %q: secret: %v (is the environment variable or file set?)", k.Name, err)
		}
		if secret == "" {
			return nil, nil, fmt.Errorf("key %q: secret is empty", k.Name)
		}
		if err := presentable(secret); err != nil {
			return nil, nil, fmt.Errorf("key %q: secret %v, so no client could ever present it", k.Name, err)
		}
		upper := strings.ToUpper(secret)
		for _, p := range placeholderSecrets {
			if strings.Contains(upper, p) {
				return nil, nil, fmt.Errorf("key %q: secret looks like a published placeholder (contains %s); generate a random one, e.g. openssl rand -hex 32", k.Name, p)
			}
		}
		digest := sha256.Sum256([]byte(secret))
		if other, dup := secrets[digest]; dup {
			return nil, nil, fmt.Errorf("key %q: same secret as key %q; every key needs its own secret", k.Name, other)
		}
		secrets[digest] = k.Name
		if len(secret) < minSecretLen {
			warnings = append(warnings, fmt.Sprintf("key %q: secret is shorter than %d characters; a long random secret resists guessing", k.Name, minSecretLen))
		}
		ttl := int64(k.MaxTTL / time.Second)
		if ttl < 1 {
			return nil, nil, fmt.Errorf("key %q: max_ttl is required and must be at least 1s (e.g. max_ttl 1h)", k.Name)
		}
		if k.MaxGrants < 0 {
			return nil, nil, fmt.Errorf("key %q: max_grants must not be negative, got %d", k.Name, k.MaxGrants)
		}
		v6bits := 128
		if k.IPv6Prefix != nil {
			v6bits = *k.IPv6Prefix
			if err := knockapi.CheckIPv6Prefix(v6bits); err != nil {
				return nil, nil, fmt.Errorf("key %q: ipv6_prefix: %v", k.Name, err)
			}
		}
		var scopes []string
		if k.Scopes != nil {
			if scopes, err = store.CheckScopes(k.Scopes); err != nil || len(scopes) == 0 {
				if err == nil {
					err = errors.New("list at least one scope, or leave scopes out for full access")
				}
				return nil, nil, fmt.Errorf("key %q: scopes: %v", k.Name, err)
			}
		}
		ring = append(ring, Key{
			Name:        k.Name,
			MaxTTL:      min(ttl, knockapi.MaxTTL),
			AllowRemote: k.AllowRemote,
			MaxGrants:   k.MaxGrants,
			IPv6Prefix:  v6bits,
			Scopes:      scopes,
			digest:      digest,
		})
	}
	return ring, warnings, nil
}

// presentable reports why secret cannot arrive in an X-Api-Key header: HTTP
// strips a header value's leading and trailing whitespace (and the web app
// trims what is typed), and control characters cannot be sent at all. A
// stray space or an extra newline in a {file.*} secret would otherwise make
// a key that silently never matches. (Caddy's {file.*} already drops one
// trailing newline.)
func presentable(secret string) error {
	if strings.TrimSpace(secret) != secret {
		return errors.New("has leading or trailing whitespace (an extra newline at the end of its file?)")
	}
	for _, r := range secret {
		if unicode.IsControl(r) {
			return errors.New("contains a control character")
		}
	}
	return nil
}

// Authenticate returns the key matching presented, comparing against every
// key in constant time so that timing reveals neither which key matched nor
// how many there are.
func (ring Ring) Authenticate(presented string) *Key {
	if presented == "" {
		return nil
	}
	digest := sha256.Sum256([]byte(presented))
	var match *Key
	for i := range ring {
		if subtle.ConstantTimeCompare(digest[:], ring[i].digest[:]) == 1 {
			match = &ring[i]
		}
	}
	return match
}

// MayEvict is the eviction rule of grants made with k, for a full
// whitelist: a grant may evict the key's own grants (the store always
// allows that), grants of no configured key (imported from the Python
// Knocker's whitelist.json, or made by a key since removed), and, for a key
// with allow_remote_whitelist, grants of keys without it. Operator grants
// (Reserved) no key may evict. So a leaked guest key can push out only its
// own grants, never an administrator's, an operator's or another user's.
func (ring Ring) MayEvict(k *Key) func(owner string) bool {
	return func(owner string) bool {
		if owner == Reserved {
			return false
		}
		o := ring.named(owner)
		return o == nil || k.AllowRemote && !o.AllowRemote
	}
}

// named returns the key called name, or nil.
func (ring Ring) named(name string) *Key {
	for i := range ring {
		if ring[i].Name == name {
			return &ring[i]
		}
	}
	return nil
}

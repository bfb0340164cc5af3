package cluster

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/caddy-knocker/knocker/store"
)

// Record is one signed change in the bucket: a grant, a removal
// (tombstone) or a client's ban. Its key is derived from it (GrantKey,
// BanKey) and covered by the signature, so that a record cannot be
// replayed under another key.
type Record struct {
	V      int      `json:"v"`
	Op     string   `json:"op"`
	Entry  string   `json:"entry"` // the prefix, or the banned address
	Scopes []string `json:"scopes,omitempty"`
	// Expires is the grant's expiry, the ban's end, or for a tombstone
	// when the removed grant would have expired (unix seconds).
	Expires int64 `json:"expires"`
	// Reason is a tombstone's: revoked or evicted.
	Reason  string `json:"reason,omitempty"`
	KeyName string `json:"key,omitempty"`
	Client  string `json:"client,omitempty"`
	Created int64  `json:"created,omitempty"`
	Node    string `json:"node"`
	// Time is when the record was made (unix milliseconds): a node ignores
	// a record older than the last one it applied for the key.
	Time int64 `json:"time"`
}

// Record operations and tombstone reasons.
const (
	OpGrant  = "grant"
	OpRemove = "remove"
	OpBan    = "ban"

	ReasonRevoked = "revoked"
	ReasonEvicted = "evicted"
)

const recordVersion = 1

// sigLen is the hex HMAC that starts every value.
const sigLen = 2 * sha256.Size

// errForged is wrapped for a record that fails the signature check.
var errForged = errors.New("signature check failed (another secret, or a forged record)")

// seal is a record's value: the hex HMAC of the key and the JSON, then the JSON.
func seal(secret []byte, key string, rec *Record) []byte {
	rec.V = recordVersion
	body, _ := json.Marshal(rec) // a Record always marshals
	out := make([]byte, sigLen, sigLen+len(body))
	hex.Encode(out, mac(secret, key, body))
	return append(out, body...)
}

func mac(secret []byte, key string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(key))
	m.Write([]byte{0})
	m.Write(body)
	return m.Sum(nil)
}

// open checks value's signature for key and decodes it. It checks that the
// record is one the key names.
func open(secret []byte, key string, value []byte) (*Record, error) {
	if len(value) <= sigLen {
		return nil, fmt.Errorf("%w: %d bytes, too short", errForged, len(value))
	}
	sig := make([]byte, sha256.Size)
	if _, err := hex.Decode(sig, value[:sigLen]); err != nil {
		return nil, fmt.Errorf("%w: no signature", errForged)
	}
	body := value[sigLen:]
	if !hmac.Equal(sig, mac(secret, key, body)) {
		return nil, errForged
	}
	var rec Record
	if err := json.Unmarshal(body, &rec); err != nil {
		return nil, fmt.Errorf("signed record does not decode: %v", err)
	}
	if rec.V != recordVersion {
		return nil, fmt.Errorf("record version %d, this node reads %d (upgrade it)", rec.V, recordVersion)
	}
	want, err := rec.key()
	if err != nil {
		return nil, err
	}
	if want != key {
		return nil, fmt.Errorf("record for %s stored under %s", want, key)
	}
	return &rec, nil
}

// key is the bucket key rec belongs under.
func (rec *Record) key() (string, error) {
	switch rec.Op {
	case OpGrant, OpRemove:
		p, err := store.ParseEntryKey(rec.Entry)
		if err != nil {
			return "", fmt.Errorf("record entry %q: %v", rec.Entry, err)
		}
		scopes, err := store.CheckScopes(rec.Scopes)
		if err != nil {
			return "", fmt.Errorf("record scopes: %v", err)
		}
		return GrantKey(p, scopes), nil
	case OpBan:
		a, err := netip.ParseAddr(rec.Entry)
		if err != nil {
			return "", fmt.Errorf("ban record address %q: %v", rec.Entry, err)
		}
		return BanKey(a), nil
	}
	return "", fmt.Errorf("record operation %q unknown", rec.Op)
}

// Keys: "g.<prefix>[.<scope>/<scope>...]" for the entry of a prefix and
// scope set, "b.<address>" for a ban. Bucket keys allow only
// [-/_=.a-zA-Z0-9], and a dot separates tokens: an address's dots become
// '-', its colons '_', and '=' comes before the prefix length, so that
// 10.0.0.1/32 is g.10-0-0-1=32 and 2001:db8::/64 with scopes ssh and web
// is g.2001_db8__=64.ssh/web.

const (
	grantKeyPrefix = "g."
	banKeyPrefix   = "b."
)

var (
	toKey   = strings.NewReplacer(".", "-", ":", "_")
	fromKey = strings.NewReplacer("-", ".", "_", ":")
)

// GrantKey is the key of p's entry of the canonical scope set scopes.
func GrantKey(p netip.Prefix, scopes []string) string {
	k := grantKeyPrefix + toKey.Replace(p.Addr().String()) + "=" + strconv.Itoa(p.Bits())
	if len(scopes) > 0 {
		k += "." + strings.Join(scopes, "/")
	}
	return k
}

// BanKey is the key of a's ban.
func BanKey(a netip.Addr) string { return banKeyPrefix + toKey.Replace(a.String()) }

// parseGrantKey is GrantKey's inverse; ok is false for other keys.
func parseGrantKey(k string) (p netip.Prefix, scopes []string, ok bool) {
	rest, found := strings.CutPrefix(k, grantKeyPrefix)
	if !found {
		return p, nil, false
	}
	pk, set, _ := strings.Cut(rest, ".")
	addr, bits, found := strings.Cut(pk, "=")
	if !found {
		return p, nil, false
	}
	p, err := store.ParseEntryKey(fromKey.Replace(addr) + "/" + bits)
	if err != nil {
		return p, nil, false
	}
	if set != "" {
		if scopes, err = store.CheckScopes(strings.Split(set, "/")); err != nil {
			return p, nil, false
		}
	}
	return p, scopes, true
}

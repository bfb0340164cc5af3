package cluster

import (
	"errors"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

// validKey is what a NATS KV key may hold.
var validKey = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)

func TestGrantKeysRoundTrip(t *testing.T) {
	for _, c := range []struct {
		prefix string
		scopes []string
		want   string
	}{
		{"10.0.0.1/32", nil, "g.10-0-0-1=32"},
		{"192.168.0.0/24", []string{"ssh"}, "g.192-168-0-0=24.ssh"},
		{"2001:db8::/64", []string{"ssh", "web"}, "g.2001_db8__=64.ssh/web"},
		{"::1/128", nil, "g.__1=128"},
		{"2001:db8:0:1:2:3:4:5/128", []string{"a-b", "c_d"}, "g.2001_db8_0_1_2_3_4_5=128.a-b/c_d"},
	} {
		p := netip.MustParsePrefix(c.prefix)
		k := GrantKey(p, c.scopes)
		if k != c.want || !validKey.MatchString(k) {
			t.Errorf("GrantKey(%s, %v) = %q, want %q (a valid bucket key)", p, c.scopes, k, c.want)
		}
		got, scopes, ok := parseGrantKey(k)
		if !ok || got != p || !slices.Equal(scopes, c.scopes) {
			t.Errorf("parseGrantKey(%q) = %v %v %v, want %v %v", k, got, scopes, ok, p, c.scopes)
		}
	}
	if k := BanKey(netip.MustParseAddr("2001:db8::")); k != "b.2001_db8__" || !validKey.MatchString(k) {
		t.Errorf("BanKey = %q", k)
	}
	for _, k := range []string{"b.10-0-0-1", "g.10-0-0-1", "g.10-0-0-1=33", "g.10-0-0-x=32", "g.10-0-0-1=32.BAD", "x"} {
		if _, _, ok := parseGrantKey(k); ok {
			t.Errorf("parseGrantKey(%q) accepted it", k)
		}
	}
}

func TestSealedRecords(t *testing.T) {
	p := netip.MustParsePrefix("2001:db8::/64")
	key := GrantKey(p, []string{"ssh"})
	rec := &Record{Op: OpGrant, Entry: "2001:db8::/64", Scopes: []string{"ssh"}, Expires: 2000000000, KeyName: "phone", Node: "a", Time: 1}
	v := seal(secret, key, rec)
	got, err := open(secret, key, v)
	if err != nil || got.Entry != rec.Entry || got.KeyName != "phone" || got.V != recordVersion {
		t.Fatalf("open(seal) = %+v, %v", got, err)
	}
	if _, err := open([]byte("another secret, also 32 bytes long"), key, v); !errors.Is(err, errForged) {
		t.Errorf("another secret: %v, want errForged", err)
	}
	// A genuine record copied under another key (to admit another entry).
	other := GrantKey(netip.MustParsePrefix("2001:db8:1::/64"), []string{"ssh"})
	if _, err := open(secret, other, v); !errors.Is(err, errForged) {
		t.Errorf("a record moved to another key: %v, want errForged", err)
	}
	// One flipped byte anywhere.
	for i := range v {
		w := slices.Clone(v)
		w[i] ^= 1
		if _, err := open(secret, key, w); err == nil {
			t.Fatalf("byte %d flipped: accepted", i)
		}
	}
	// A correctly signed record that names another entry than its key.
	wrong := &Record{Op: OpGrant, Entry: "2001:db8:1::/64", Scopes: []string{"ssh"}, Expires: 2000000000, Node: "a", Time: 1}
	if _, err := open(secret, key, seal(secret, key, wrong)); err == nil || !strings.Contains(err.Error(), "stored under") {
		t.Errorf("signed record under another entry's key: %v", err)
	}
	for _, bad := range []*Record{
		{Op: OpGrant, Entry: "10.0.0.0/8", Node: "a"}, // another entry
		{Op: "delete-everything", Entry: "10.0.0.1/32", Node: "a"},
		{Op: OpGrant, Entry: "10.0.0.1/32", Scopes: []string{"NOT A SCOPE"}, Node: "a"},
	} {
		k := "g.10-0-0-1=32"
		if _, err := open(secret, k, seal(secret, k, bad)); err == nil {
			t.Errorf("record %+v under %s accepted", bad, k)
		}
	}
}

func FuzzOpen(f *testing.F) {
	key := "g.10-0-0-1=32"
	f.Add(key, seal(secret, key, &Record{Op: OpGrant, Entry: "10.0.0.1/32", Expires: 5, Node: "a"}))
	f.Add("b.10-0-0-1", []byte("00"))
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		rec, err := open(secret, key, value)
		if err != nil {
			return
		}
		// Whatever opens was sealed with the secret, for this key.
		if k, err := rec.key(); err != nil || k != key {
			t.Fatalf("opened a record for %q under %q (%v)", k, key, err)
		}
	})
}

package keyring

import (
	"testing"
	"time"
)

// TestMayEvict: the eviction rule between keys' grants, and that no key
// may evict an operator's grant.
func TestMayEvict(t *testing.T) {
	ring, _, err := New([]Spec{
		{Name: "admin", Secret: "admin-secret-0123456789", MaxTTL: time.Hour, AllowRemote: true},
		{Name: "guest", Secret: "guest-secret-0123456789", MaxTTL: time.Hour},
	}, func(s string) (string, error) { return s, nil })
	if err != nil {
		t.Fatal(err)
	}
	admin, guest := &ring[0], &ring[1]
	for _, tc := range []struct {
		key   *Key
		owner string
		want  bool
	}{
		{guest, "", true},        // imported
		{guest, "removed", true}, // a key since removed
		{guest, "admin", false},  // an administrator's
		{guest, Reserved, false}, // an operator's
		{admin, "guest", true},   // an admin key over a plain key
		{admin, "admin", false},  // not another admin key's (its own: the store decides)
		{admin, Reserved, false}, // an operator's
	} {
		if got := ring.MayEvict(tc.key)(tc.owner); got != tc.want {
			t.Errorf("MayEvict(%s)(%q) = %v, want %v", tc.key.Name, tc.owner, got, tc.want)
		}
	}
}

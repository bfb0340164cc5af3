package knocker

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-knocker/knocker/internal/knockapi"
)

func TestKeyringAuthenticate(t *testing.T) {
	t.Setenv("KNOCKER_TEST_SECRET", "from-the-environment-0123456789")
	ring, warnings, err := newKeyring([]APIKey{
		{Name: "admin", Secret: "admin-secret-0123456789abcdef", MaxTTL: caddy.Duration(time.Hour), AllowRemoteWhitelist: true},
		{Name: "env", Secret: "{env.KNOCKER_TEST_SECRET}", MaxTTL: caddy.Duration(20 * 365 * 24 * time.Hour)},
		{Name: "short", Secret: "tiny", MaxTTL: caddy.Duration(90 * time.Second)},
	}, nil, caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], `"short"`) || strings.Contains(warnings[0], "tiny") {
		t.Errorf("warnings = %q, want one naming the short key without its secret", warnings)
	}
	if k := ring.Authenticate("admin-secret-0123456789abcdef"); k == nil || k.Name != "admin" || !k.AllowRemote || k.MaxTTL != 3600 {
		t.Errorf("admin key: %+v", k)
	}
	if k := ring.Authenticate("from-the-environment-0123456789"); k == nil || k.Name != "env" || k.MaxTTL != knockapi.MaxTTL {
		t.Errorf("env key (max_ttl capped at ten years): %+v", k)
	}
	for _, bad := range []string{"", "ADMIN-SECRET-0123456789ABCDEF", "admin-secret-0123456789abcde", "{env.KNOCKER_TEST_SECRET}", "tïny"} {
		if k := ring.Authenticate(bad); k != nil {
			t.Errorf("authenticate(%q) = %s", bad, k.Name)
		}
	}
}

func TestKeyringRejects(t *testing.T) {
	hour := caddy.Duration(time.Hour)
	for _, tc := range []struct {
		keys []APIKey
		want string
	}{
		{nil, "at least one key"},
		{[]APIKey{{Secret: "s-0123456789abcdef", MaxTTL: hour}}, "name is required"},
		{[]APIKey{{Name: "a", Secret: "s-0123456789abcdef", MaxTTL: hour}, {Name: "a", Secret: "t-0123456789abcdef", MaxTTL: hour}}, "duplicate key name"},
		{[]APIKey{{Name: "a", Secret: "s-0123456789abcdef", MaxTTL: hour}, {Name: "b", Secret: "s-0123456789abcdef", MaxTTL: hour}}, `same secret as key "a"`},
		{[]APIKey{{Name: "a", Secret: "please-change_me-now", MaxTTL: hour}}, "CHANGE_ME"},
		{[]APIKey{{Name: "a", Secret: "REPLACE_WITH_A_SECRET", MaxTTL: hour}}, "REPLACE_WITH"},
		{[]APIKey{{Name: "a", Secret: "", MaxTTL: hour}}, "empty"},
		{[]APIKey{{Name: "a", Secret: "{env.KNOCKER_TEST_UNSET_VARIABLE}", MaxTTL: hour}}, "secret"},
		{[]APIKey{{Name: "a", Secret: "s-0123456789abcdef"}}, "max_ttl is required"},
		{[]APIKey{{Name: strings.Repeat("n", 257), Secret: "s-0123456789abcdef", MaxTTL: hour}}, "keys[0]: name must be valid UTF-8 of at most 256 bytes"},
		{[]APIKey{{Name: "bad\xff", Secret: "s-0123456789abcdef", MaxTTL: hour}}, "keys[0]: name must be valid UTF-8"},
		{[]APIKey{{Name: "a", Secret: " s-0123456789abcdef", MaxTTL: hour}}, "leading or trailing whitespace"},
		{[]APIKey{{Name: "a", Secret: "s-0123456789abcdef ", MaxTTL: hour}}, "leading or trailing whitespace"},
		{[]APIKey{{Name: "a", Secret: "s-0123456789abcdef\n", MaxTTL: hour}}, "an extra newline at the end of its file"},
		{[]APIKey{{Name: "a", Secret: "s-0123456789\u00a0abcdef\u2003", MaxTTL: hour}}, "leading or trailing whitespace"},
		{[]APIKey{{Name: "a", Secret: "s-01234\x0056789abcdef", MaxTTL: hour}}, "control character"},
		{[]APIKey{{Name: "a", Secret: "s-0123456789abcdef", MaxTTL: caddy.Duration(time.Millisecond)}}, "max_ttl"},
	} {
		_, _, err := newKeyring(tc.keys, nil, caddy.NewReplacer())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("keys %+v: error %v, want it to mention %q", tc.keys, err, tc.want)
			continue
		}
		for _, k := range tc.keys {
			if k.Secret != "" && !strings.HasPrefix(k.Secret, "{") && strings.Contains(err.Error(), k.Secret) {
				t.Errorf("error %q reveals a secret", err)
			}
		}
	}
}

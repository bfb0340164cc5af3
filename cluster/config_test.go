package cluster

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func TestConfigErrorsNameTheField(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir()) // the default node name reads Caddy's instance id there
	t.Setenv("KNOCKER_TEST_SECRET", "0123456789abcdef0123456789abcdef\n")
	good := "{env.KNOCKER_TEST_SECRET}"
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "secret: required"},
		{Config{Secret: "short"}, "secret: 5 characters, at least 32"},
		{Config{Secret: "{env.KNOCKER_TEST_UNSET_VARIABLE}"}, "secret: "},
		{Config{Secret: good, WhenDown: "queue"}, `when_down: "queue"`},
		{Config{Secret: good, Timeout: caddy.Duration(-time.Second)}, "timeout: "},
		{Config{Secret: good, Node: strings.Repeat("n", 65)}, "node: "},
	} {
		_, err := c.cfg.Resolve(caddy.NewReplacer())
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error starting %q", c.cfg, err, c.want)
		}
	}
	r, err := (&Config{Secret: good, Node: "home"}).Resolve(caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Secret) != "0123456789abcdef0123456789abcdef" || r.WhenDown != Refuse || r.Timeout != defaultTimeout || r.Node != "home" {
		t.Errorf("defaults: %+v", r)
	}
	if r, err := (&Config{Secret: good}).Resolve(caddy.NewReplacer()); err != nil || r.Node == "" {
		t.Errorf("default node name: %q %v", r.Node, err)
	}
}

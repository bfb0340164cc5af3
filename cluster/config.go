package cluster

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Config are the settings every cluster driver shares; a driver module
// embeds it, so that they sit beside the driver's own in JSON.
type Config struct {
	// Secret signs every record (HMAC-SHA256); every node needs the same
	// one. As an API key, it may be {env.NAME} or {file./path}: it is
	// resolved when the config loads and never written back. At least 32
	// characters.
	Secret string `json:"secret,omitempty"`
	// Node names this node in records and logs. Default: the host name and
	// Caddy's instance id.
	Node string `json:"node,omitempty"`
	// WhenDown says what a knock gets while the engine is unreachable:
	// "refuse" (503, the default) or "local" (granted on this node at once
	// and published when the engine is back).
	WhenDown string `json:"when_down,omitempty"`
	// Timeout bounds the wait for the engine's acknowledgement of a knock;
	// past it the engine counts as down for that knock. Default 2s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

// WhenDown values.
const (
	Refuse = "refuse"
	Local  = "local"
)

const (
	minSecret      = 32
	defaultTimeout = 2 * time.Second
)

// Resolved is a Config ready for use.
type Resolved struct {
	Secret   []byte
	Node     string
	WhenDown string
	Timeout  time.Duration
}

// Resolve checks c and resolves its placeholders. Errors name the field.
func (c *Config) Resolve(repl *caddy.Replacer) (Resolved, error) {
	var r Resolved
	if c.Secret == "" {
		return r, fmt.Errorf("secret: required: every node signs and checks records with it (use {env.NAME} or {file./path})")
	}
	secret, err := repl.ReplaceOrErr(c.Secret, true, true)
	if err != nil {
		return r, fmt.Errorf("secret: %v", err)
	}
	secret = strings.TrimRight(secret, "\r\n")
	if len(secret) < minSecret {
		return r, fmt.Errorf("secret: %d characters, at least %d needed (caddy knocker keygen makes one)", len(secret), minSecret)
	}
	r.Secret = []byte(secret)
	if r.Node, err = repl.ReplaceOrErr(c.Node, true, true); err != nil {
		return r, fmt.Errorf("node: %v", err)
	}
	if r.Node == "" {
		host, _ := os.Hostname()
		id, err := caddy.InstanceID()
		if err != nil {
			return r, fmt.Errorf("node: no name set and Caddy's instance id is unreadable: %v", err)
		}
		r.Node = strings.Trim(host+"-"+id.String()[:8], "-")
	}
	if len(r.Node) > 64 {
		return r, fmt.Errorf("node: %q is longer than 64 characters", r.Node)
	}
	switch c.WhenDown {
	case "", Refuse:
		r.WhenDown = Refuse
	case Local:
		r.WhenDown = Local
	default:
		return r, fmt.Errorf("when_down: %q: want %s or %s", c.WhenDown, Refuse, Local)
	}
	r.Timeout = time.Duration(c.Timeout)
	switch {
	case r.Timeout == 0:
		r.Timeout = defaultTimeout
	case r.Timeout < 0:
		return r, fmt.Errorf("timeout: %v: want a positive duration", r.Timeout)
	}
	return r, nil
}

// Package natscluster is the knocker.cluster.nats module: Knocker's
// cluster mode over a NATS JetStream key-value bucket. The cluster
// package does the replication; this package connects, keeps the bucket
// and follows it, with its own reconnect and re-subscribe logic (see
// follow.go).
package natscluster

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/caddy-knocker/knocker/cluster"
)

func init() {
	caddy.RegisterModule(NATS{})
}

// NATS shares the whitelist through a NATS JetStream key-value bucket
// (nats-server 2.11 or later, for per-key TTLs). Each node dials out to
// the NATS servers: a home node needs no port forward.
type NATS struct {
	cluster.Config
	// URLs are the NATS servers (nats:// or tls://); more than one for a
	// NATS cluster. Required.
	URLs []string `json:"urls,omitempty"`
	// Bucket is the key-value bucket; it is created when missing.
	// Default knocker.
	Bucket string `json:"bucket,omitempty"`
	// Replicas is the bucket's replica count when this node creates it:
	// 1 with one NATS server, 3 with a three-server cluster (quorum).
	// Default 1.
	Replicas int `json:"replicas,omitempty"`

	// Credentials: at most one of a creds file, a user and password, a
	// token, or an nkey seed file. Password and token may be {env.NAME}
	// or {file./path}, resolved when the config loads.
	Creds    string `json:"creds,omitempty"`
	User     string `json:"user,omitempty"`
	Password string `json:"password,omitempty"`
	Token    string `json:"token,omitempty"`
	NKey     string `json:"nkey,omitempty"`
	// TLS configures TLS to the servers (tls:// URLs use it too).
	TLS *TLS `json:"tls,omitempty"`

	cfg      cluster.Resolved
	urls     []string // resolved
	files    files    // resolved
	password string
	token    string
	d        *driver
}

// files are the resolved user name and file paths.
type files struct{ user, creds, nkey, ca, cert, key string }

// TLS names the files for TLS to NATS.
type TLS struct {
	CA   string `json:"ca,omitempty"`   // CA bundle to verify the servers; default the system's
	Cert string `json:"cert,omitempty"` // client certificate, with Key, for mutual TLS
	Key  string `json:"key,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (NATS) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "knocker.cluster.nats",
		New: func() caddy.Module { return new(NATS) },
	}
}

const defaultBucket = "knocker"

var bucketName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// Provision checks the settings and resolves secrets; it connects to
// nothing (Open does).
func (n *NATS) Provision(ctx caddy.Context) error {
	repl := caddy.NewReplacer()
	cfg, err := n.Config.Resolve(repl)
	if err != nil {
		return err
	}
	n.cfg = cfg
	if len(n.URLs) == 0 {
		return fmt.Errorf("url: at least one NATS server URL is required, e.g. nats://127.0.0.1:4222")
	}
	n.urls = make([]string, len(n.URLs))
	for i, raw := range n.URLs {
		u, err := repl.ReplaceOrErr(raw, true, true)
		if err == nil {
			err = checkURL(u)
		}
		if err != nil {
			return fmt.Errorf("url: %q: %v", redacted(raw), err)
		}
		n.urls[i] = u
	}
	// Placeholders ({env.NAME}) in the names and paths, as in the secrets.
	n.files = files{user: n.User, creds: n.Creds, nkey: n.NKey}
	if n.TLS != nil {
		n.files.ca, n.files.cert, n.files.key = n.TLS.CA, n.TLS.Cert, n.TLS.Key
	}
	for field, p := range map[string]*string{"user": &n.files.user, "creds": &n.files.creds, "nkey": &n.files.nkey,
		"tls ca": &n.files.ca, "tls cert": &n.files.cert, "tls key": &n.files.key} {
		if *p, err = repl.ReplaceOrErr(*p, true, true); err != nil {
			return fmt.Errorf("%s: %v", field, err)
		}
	}
	if n.Bucket == "" {
		n.Bucket = defaultBucket
	}
	if !bucketName.MatchString(n.Bucket) {
		return fmt.Errorf("bucket: %q: use 1 to 64 letters, digits, '_' and '-'", n.Bucket)
	}
	switch {
	case n.Replicas == 0:
		n.Replicas = 1
	case n.Replicas < 0 || n.Replicas > 5:
		return fmt.Errorf("replicas: %d: want 1 to 5", n.Replicas)
	}
	auths := 0
	for _, set := range []bool{n.Creds != "", n.User != "" || n.Password != "", n.Token != "", n.NKey != ""} {
		if set {
			auths++
		}
	}
	if auths > 1 {
		return fmt.Errorf("creds, user/password, token and nkey: give at most one way to authenticate")
	}
	if (n.User == "") != (n.Password == "") {
		return fmt.Errorf("user and password: give both or neither")
	}
	if n.password, err = resolveSecret(repl, "password", n.Password); err != nil {
		return err
	}
	if n.token, err = resolveSecret(repl, "token", n.Token); err != nil {
		return err
	}
	if n.TLS != nil && (n.TLS.Cert == "") != (n.TLS.Key == "") {
		return fmt.Errorf("tls: cert and key: give both or neither")
	}
	n.d = &driver{n: n, reconnected: make(chan struct{}, 1), up: make(chan struct{}, 1), closed: make(chan struct{}), followDone: make(chan struct{})}
	return nil
}

func resolveSecret(repl *caddy.Replacer, field, v string) (string, error) {
	if v == "" {
		return "", nil
	}
	s, err := repl.ReplaceOrErr(v, true, true)
	if err != nil {
		return "", fmt.Errorf("%s: %v", field, err)
	}
	return strings.TrimRight(s, "\r\n"), nil
}

// redacted is raw without a password, for errors.
func redacted(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return "(unparsable)"
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Errorf("scheme %q: want nats, tls, ws or wss", u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("no host")
	}
	if u.User != nil {
		// It would show in logs and errors: the credentials have their own
		// fields, which may be placeholders.
		return fmt.Errorf("credentials in the URL: use user and password (or token) instead")
	}
	return nil
}

// ClusterConfig returns the shared cluster settings, resolved.
func (n *NATS) ClusterConfig() cluster.Resolved { return n.cfg }

// driver is the connection's run-time state, behind a pointer so that the
// module stays copyable.
type driver struct {
	n           *NATS
	mu          sync.Mutex
	nc          *nats.Conn
	js          jetstream.JetStream
	stream      string // KV_<bucket>
	subject     string // $KV.<bucket>.
	bucketID    string // set once the bucket is checked; "" when not
	err         error  // why not usable, if not
	pending     atomic.Uint64
	following   atomic.Bool // Follow runs; followDone closes when it returns
	followDone  chan struct{}
	reconnected chan struct{} // a reconnect happened
	up          chan struct{} // a connection is up
	closed      chan struct{}
	closeOnce   sync.Once
	log         *zap.Logger
}

// Interface guards.
var (
	_ caddy.Provisioner = (*NATS)(nil)
	_ cluster.Module    = (*NATS)(nil)
)

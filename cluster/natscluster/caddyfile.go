package natscluster

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// UnmarshalCaddyfile reads the block of `cluster nats { ... }` (see the
// knocker global option). Errors name the subdirective.
func (n *NATS) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the driver's name
	if d.NextArg() {
		return d.Errf("cluster nats takes no arguments, only a block")
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if seen[sub] {
			return d.Errf("cluster nats: %s: given twice", sub)
		}
		seen[sub] = true
		if sub == "tls" {
			if err := n.unmarshalTLS(d); err != nil {
				return err
			}
			continue
		}
		args := d.RemainingArgs()
		if sub == "url" {
			if len(args) == 0 {
				return d.Errf("cluster nats: url: want one or more NATS server URLs")
			}
			n.URLs = args
			continue
		}
		if len(args) != 1 {
			return d.Errf("cluster nats: %s: want one value", sub)
		}
		v := args[0]
		strs := map[string]*string{"secret": &n.Secret, "bucket": &n.Bucket, "node": &n.Node, "creds": &n.Creds,
			"user": &n.User, "password": &n.Password, "token": &n.Token, "nkey": &n.NKey, "when_down": &n.WhenDown}
		if p, ok := strs[sub]; ok {
			*p = v
			continue
		}
		switch sub {
		case "replicas":
			r, err := strconv.Atoi(v)
			if err != nil || r <= 0 {
				return d.Errf("cluster nats: replicas: %q is not a positive number", v)
			}
			n.Replicas = r
		case "timeout":
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return d.Errf("cluster nats: timeout: %v", err)
			}
			n.Timeout = caddy.Duration(dur)
		default:
			return d.Errf("cluster nats: unrecognized option %q", sub)
		}
	}
	return nil
}

func (n *NATS) unmarshalTLS(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.Errf("cluster nats: tls takes a block")
	}
	n.TLS = new(TLS)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if !d.NextArg() {
			return d.Errf("cluster nats: tls: %s: want a file", sub)
		}
		v := d.Val()
		if d.NextArg() {
			return d.Errf("cluster nats: tls: %s: want one file", sub)
		}
		switch sub {
		case "ca":
			n.TLS.CA = v
		case "cert":
			n.TLS.Cert = v
		case "key":
			n.TLS.Key = v
		default:
			return d.Errf("cluster nats: tls: unrecognized option %q", sub)
		}
	}
	return nil
}

// Interface guard.
var _ caddyfile.Unmarshaler = (*NATS)(nil)

// Command caddy is Caddy with its standard modules, caddy-l4 and the
// knocker plugin (with its caddy-l4 matcher), for development, tests and
// the quickstart. Production builds use xcaddy.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/mholt/caddy-l4"

	_ "github.com/caddy-knocker/knocker"
	_ "github.com/caddy-knocker/knocker/layer4"
)

func main() {
	caddycmd.Main()
}

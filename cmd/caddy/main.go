// Command caddy is Caddy with its standard modules and the knocker plugin,
// for development, tests and the quickstart. Production builds use xcaddy.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-knocker/knocker"
)

func main() {
	caddycmd.Main()
}

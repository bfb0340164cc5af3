// Package firewalld extends Knocker's gate to the network level: with
// firewalld on the host, a knock also opens chosen ports (SSH, game
// servers, anything not served by Caddy) for the knocked address or
// network, for exactly the grant's lifetime. It talks to firewalld over
// D-Bus (github.com/godbus/dbus/v5), not by running firewall-cmd.
//
// # Layout: rules inside the zones that already serve the traffic
//
// In each protected zone (default: firewalld's default zone) Knocker keeps
// permanent rich rules that drop (or reject) the monitored ports, per
// family, from the monitored sources (default: everyone, written without
// a source):
//
//	rule priority="-27001" family="ipv4" port port="22" protocol="tcp" drop
//
// and, per grant and port, a timed runtime rule that accepts it, with the
// grant's remaining time as firewalld's timeout, so a grant also closes at
// the firewall if Caddy is down:
//
//	rule priority="-27002" family="ipv4" source address="203.0.113.5" port port="22" protocol="tcp" accept
//
// Ports may be tied to access scopes (scoped_ports): a grant opens the
// unscoped ports and those of its scopes, a full-access grant every port.
// One prefix may hold grants of several scope sets (see the store), so
// the rules are kept per prefix and port: each lasts until the latest
// expiry among the prefix's grants that open its port, and a port closes
// when none does.
//
// Negative-priority rich rules run before the zone's own services and
// ports, so a monitored port is closed even if the zone opens it, and
// every other port behaves exactly as the host's zones say. The Python
// Knocker used a dedicated zone bound to the monitored sources
// instead; since firewalld hands a packet to exactly one zone, that zone's
// target then decided every unmonitored port too (rejecting them, the
// HTTPS port of the knock endpoint included, or accepting all). No zone
// priority is needed here, so firewalld 1.x works as well as 2.x.
//
// The priorities and the exact shape mark Knocker's rules; a state file
// beside the whitelist lists the permanent ones it installed, so that a
// changed configuration prunes exactly those and never a user's rule.
// Changes are written to the permanent configuration and mirrored at
// runtime, without a reload: a reload would drop every runtime-only rule,
// the grants' and other tools' alike.
//
// # Lifecycle
//
// Backend is the knocker.firewall.firewalld module, a guest of the knocker
// app, configured in its firewall object ("backend": "firewalld") or the
// Caddyfile's firewalld block. It touches nothing in Provision. The
// knocker app starts it once the whitelist is open: Start verifies
// firewalld runs, sets up and verifies the zones, restores the accept
// rules of every active grant from the whitelist store, and then follows
// the store's events (revocation and expiry close the ports at once) and
// firewalld's signals (after a reload or a restart every grant is
// re-applied with its remaining time). Stop leaves every rule in place.
// The knock handler calls PrepareGrant before answering, and Ready backs
// /ready.
//
// # Docker published ports
//
// firewalld cannot gate ports that Docker publishes (docker run -p): Docker
// rewrites (DNAT) connections to them before the host's input path and
// forwards them to the container through its own chains, so the zone's
// rich rules, Knocker's drop and accept included, never see them. Publish
// such a container on the loopback address only (-p 127.0.0.1:2222:22)
// and reach it through a service on the host that Knocker protects, or run
// it with host networking (--network host) so that its port is an ordinary
// host port. Filtering in Docker's DOCKER-USER chain is possible but is
// not managed by Knocker.
package firewalld

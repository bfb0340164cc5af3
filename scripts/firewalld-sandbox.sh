#!/usr/bin/env bash
# firewalld-sandbox.sh - run a real firewalld isolated from the host's networking.
#
# firewalld runs inside its own network namespace, attached to a private D-Bus
# "system" bus (its own dbus-daemon listening on a unix socket in the state
# directory), with its permanent configuration in a private copy of
# /etc/firewalld. So nothing touches the host's firewall rules, the host's
# /etc/firewalld or the host's system bus. Clients (firewall-cmd, Go code that
# uses godbus) may run in the host namespace: the bus is a path-based unix
# socket, which works across network namespaces.
#
# Usage (as root):
#   eval "$(firewalld-sandbox.sh start)"  # idempotent; prints the export lines
#   firewall-cmd --state                  # uses $DBUS_SYSTEM_BUS_ADDRESS
#   firewalld-sandbox.sh exec nft list ruleset   # command inside the fw netns
#   firewalld-sandbox.sh cexec curl ...          # command inside the client netns
#   firewalld-sandbox.sh env | status | logs
#   firewalld-sandbox.sh restart-firewalld  # only firewalld (bus, netns, config stay)
#   firewalld-sandbox.sh stop             # idempotent; kills only its own PIDs
#
# Settings (environment):
#   FWSB_DIR      state directory        (default /tmp/firewalld-sandbox)
#   FWSB_NETNS    firewall netns name    (default fwsb)
#   FWSB_CLIENT   1 = also create a client netns "${FWSB_NETNS}-c" joined to the
#                 firewall netns by a veth pair, for real packet tests (default 0)
#   FWSB_SERVER_ADDR   address on the firewall side   (default 203.0.113.1/24)
#   FWSB_CLIENT_ADDRS  addresses on the client side   (default
#                      "203.0.113.5/24 203.0.113.6/24")
#   FWSB_DEBUG    firewalld --debug level, empty = off (default empty)
#   FWSB_TIMEOUT  seconds to wait for firewalld to answer (default 30)
#   FWSB_KEEP     1 = keep the state directory on stop (default 0)
#
# Needs: root, ip (iproute2), dbus-daemon, firewalld, firewall-cmd, nft.
# Debian 12 ships firewalld 1.3.3 (no zone priority); install-firewalld.sh beside
# this script installs firewalld >= 2.0 from Debian 13 (trixie), whose
# dependencies bookworm already meets.
set -euo pipefail

DIR=${FWSB_DIR:-/tmp/firewalld-sandbox}
NS=${FWSB_NETNS:-fwsb}
CNS="${NS}-c"
CLIENT=${FWSB_CLIENT:-0}
SERVER_ADDR=${FWSB_SERVER_ADDR:-203.0.113.1/24}
CLIENT_ADDRS=${FWSB_CLIENT_ADDRS:-203.0.113.5/24 203.0.113.6/24}
DEBUG=${FWSB_DEBUG:-}
TIMEOUT=${FWSB_TIMEOUT:-30}
KEEP=${FWSB_KEEP:-0}

SOCK="$DIR/system_bus_socket"
ADDR="unix:path=$SOCK"

log() { echo "firewalld-sandbox: $*" >&2; }
die() { log "error: $*"; exit 1; }

need() {
	[ "$(id -u)" = 0 ] || die "must run as root"
	local c
	for c in ip dbus-daemon firewalld firewall-cmd nft; do
		command -v "$c" >/dev/null 2>&1 || die "missing command: $c"
	done
}

# pid_ok PIDFILE MARK: true when the PID in PIDFILE is alive and its command
# line contains MARK (guards against killing an unrelated, reused PID).
pid_ok() {
	local f=$1 mark=$2 pid
	[ -s "$f" ] || return 1
	pid=$(cat "$f")
	[ -r "/proc/$pid/cmdline" ] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$mark"
}

# stop_pid PIDFILE MARK: SIGTERM, wait up to 15 s, then SIGKILL.
stop_pid() {
	local f=$1 mark=$2 pid i
	if pid_ok "$f" "$mark"; then
		pid=$(cat "$f")
		kill -TERM "$pid" 2>/dev/null || true
		for i in $(seq 1 150); do
			pid_ok "$f" "$mark" || break
			sleep 0.1
		done
		if pid_ok "$f" "$mark"; then
			log "PID $pid did not exit, sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$f"
}

ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qxF -- "$1"; }

fw_answers() {
	[ -S "$SOCK" ] || return 1
	[ "$(DBUS_SYSTEM_BUS_ADDRESS=$ADDR timeout 5 firewall-cmd --state 2>/dev/null)" = running ]
}

print_env() {
	echo "export DBUS_SYSTEM_BUS_ADDRESS='$ADDR'"
	echo "export FWSB_NETNS='$NS'"
	if ns_exists "$CNS"; then
		echo "export FWSB_CLIENT_NETNS='$CNS'"
	fi
}

write_dbus_conf() {
	cat >"$DIR/dbus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>$ADDR</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <!-- private test bus: root may own any name and call anything -->
    <allow user="root"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
EOF
}

start_client_ns() {
	ns_exists "$CNS" && return 0
	ip netns add "$CNS"
	ip -n "$CNS" link set lo up
	# both ends are created directly inside the namespaces: the host
	# namespace never sees them
	ip link add fwsb0 netns "$NS" type veth peer name fwsb1 netns "$CNS"
	ip -n "$NS" addr add "$SERVER_ADDR" dev fwsb0
	ip -n "$NS" link set fwsb0 up
	local a
	for a in $CLIENT_ADDRS; do ip -n "$CNS" addr add "$a" dev fwsb1; done
	ip -n "$CNS" link set fwsb1 up
}

# start_firewalld: run firewalld in the netns and wait until it answers.
start_firewalld() {
	local dbg=() i
	[ -n "$DEBUG" ] && dbg=(--debug="$DEBUG")
	# "ip netns exec" also enters a private mount namespace; /run/firewalld
	# (firewalld's temp files) is bind-mounted to the state dir there.
	mkdir -p /run/firewalld
	setsid ip netns exec "$NS" env DBUS_SYSTEM_BUS_ADDRESS="$ADDR" sh -c '
		mount --bind "$1/run" /run/firewalld 2>/dev/null || true
		shift
		exec "$@"' sh "$DIR" \
		firewalld --nofork --nopid --system-config "$DIR/etc" \
		--log-target console "${dbg[@]}" \
		>>"$DIR/firewalld.log" 2>&1 </dev/null &
	echo $! >"$DIR/firewalld.pid"

	local n=$((TIMEOUT * 10))
	for i in $(seq 1 "$n"); do
		fw_answers && break
		pid_ok "$DIR/firewalld.pid" "$DIR/etc" || { tail -20 "$DIR/firewalld.log" >&2; die "firewalld exited"; }
		sleep 0.1
	done
	fw_answers || { tail -20 "$DIR/firewalld.log" >&2; die "firewalld did not answer within ${TIMEOUT}s"; }
}

# cmd_restart_firewalld: restart only the firewalld process; the bus, the
# namespaces and the permanent configuration stay (a "systemctl restart
# firewalld").
cmd_restart_firewalld() {
	need
	pid_ok "$DIR/dbus.pid" "$DIR/dbus.conf" && ns_exists "$NS" || die "sandbox not running; use start"
	stop_pid "$DIR/firewalld.pid" "$DIR/etc"
	start_firewalld
	log "firewalld restarted (PID $(cat "$DIR/firewalld.pid"))"
}

cmd_start() {
	need
	if pid_ok "$DIR/firewalld.pid" "$DIR/etc" && pid_ok "$DIR/dbus.pid" "$DIR/dbus.conf" && fw_answers; then
		log "already running (firewalld PID $(cat "$DIR/firewalld.pid"))"
		[ "$CLIENT" = 1 ] && start_client_ns
		print_env
		return 0
	fi
	# something half-started or stale: clean up first
	FWSB_KEEP=0 cmd_stop_quiet
	mkdir -p "$DIR/etc" "$DIR/run"
	cp -a /etc/firewalld/. "$DIR/etc/"

	write_dbus_conf
	rm -f "$SOCK"
	setsid dbus-daemon --config-file="$DIR/dbus.conf" --nofork --nopidfile \
		>"$DIR/dbus.log" 2>&1 </dev/null &
	echo $! >"$DIR/dbus.pid"
	local i
	for i in $(seq 1 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
	[ -S "$SOCK" ] || die "dbus-daemon did not create $SOCK (see $DIR/dbus.log)"

	ns_exists "$NS" || ip netns add "$NS"
	ip -n "$NS" link set lo up
	[ "$CLIENT" = 1 ] && start_client_ns

	start_firewalld
	log "firewalld $(DBUS_SYSTEM_BUS_ADDRESS=$ADDR firewall-cmd --version) running in netns $NS (PID $(cat "$DIR/firewalld.pid")), logs in $DIR"
	print_env
}

cmd_stop_quiet() {
	stop_pid "$DIR/firewalld.pid" "$DIR/etc"
	stop_pid "$DIR/dbus.pid" "$DIR/dbus.conf"
	if ns_exists "$CNS"; then ip netns del "$CNS" || true; fi
	if ns_exists "$NS"; then ip netns del "$NS" || true; fi
	rm -f "$SOCK"
	if [ "${FWSB_KEEP:-$KEEP}" != 1 ]; then rm -rf "$DIR"; fi
}

cmd_stop() {
	[ "$(id -u)" = 0 ] || die "must run as root"
	cmd_stop_quiet
	log "stopped"
}

cmd_status() {
	if pid_ok "$DIR/firewalld.pid" "$DIR/etc" && fw_answers; then
		echo "running: firewalld PID $(cat "$DIR/firewalld.pid"), netns $NS, bus $ADDR"
	else
		echo "not running"
		return 1
	fi
}

cmd_exec() {
	ip netns exec "$NS" env DBUS_SYSTEM_BUS_ADDRESS="$ADDR" "$@"
}

cmd_cexec() {
	ip netns exec "$CNS" "$@"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
restart) cmd_stop; cmd_start ;;
restart-firewalld) cmd_restart_firewalld ;;
status) cmd_status ;;
env) print_env ;;
logs) cat "$DIR/firewalld.log" ;;
exec) shift; cmd_exec "$@" ;;
cexec) shift; cmd_cexec "$@" ;;
*)
	echo "usage: $0 start|stop|restart|restart-firewalld|status|env|logs|exec CMD...|cexec CMD..." >&2
	exit 2
	;;
esac

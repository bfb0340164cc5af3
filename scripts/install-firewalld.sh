#!/usr/bin/env bash
# install-firewalld.sh - install firewalld (and nft) on Debian 12 for the
# firewalld tests (scripts/firewalld-sandbox.sh runs it, isolated).
#
# Default (FIREWALLD_SERIES=2): firewalld 2.x. Debian 12 (bookworm) ships
# firewalld 1.3.3; firewalld 2.x from Debian 13 (trixie) is
# architecture-independent and its dependencies are met by bookworm, so only
# firewalld and python3-firewall are taken from trixie; a pin at priority 100
# keeps every other package on bookworm. The trixie source reuses the mirror
# this machine already uses.
# FIREWALLD_SERIES=1: Debian 12's own firewalld 1.3.3 (downgrading a 2.x).
# Knocker supports both. nftables provides the nft command the sandbox needs.
# Idempotent; needs root. Prints the installed version.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "install-firewalld: must run as root" >&2; exit 1; }
series=${FIREWALLD_SERIES:-2}

have_ok() {
	command -v nft >/dev/null 2>&1 || return 1
	local v
	v=$(dpkg-query -W -f='${Version}' firewalld 2>/dev/null) || return 1
	[ "${v%%.*}" = "$series" ]
}

export DEBIAN_FRONTEND=noninteractive
if ! have_ok; then
	case $series in
	2)
		src=/etc/apt/sources.list.d/debian.sources
		uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "$src" 2>/dev/null || true)
		[ -n "$uri" ] || { echo "install-firewalld: no Debian mirror found in $src" >&2; exit 1; }
		if [ ! -f /etc/apt/sources.list.d/trixie.sources ]; then
			printf '%s\n' 'Types: deb' "URIs: $uri" 'Suites: trixie' 'Components: main' \
				'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' \
				>/etc/apt/sources.list.d/trixie.sources
			printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' >/etc/apt/preferences.d/trixie.pref
		fi
		apt-get update -qq
		apt-get install -y -qq firewalld/trixie python3-firewall/trixie nftables >/dev/null
		;;
	1)
		apt-get update -qq
		v=$(apt-cache madison firewalld | awk '$3 ~ /^1\./ {print $3; exit}')
		[ -n "$v" ] || { echo "install-firewalld: no firewalld 1.x in the configured sources" >&2; exit 1; }
		apt-get install -y -qq --allow-downgrades "firewalld=$v" "python3-firewall=$v" nftables >/dev/null
		;;
	*)
		echo "install-firewalld: FIREWALLD_SERIES must be 1 or 2" >&2
		exit 2
		;;
	esac
fi
dpkg-query -W -f='firewalld ${Version}\n' firewalld

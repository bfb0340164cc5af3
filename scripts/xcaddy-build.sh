#!/usr/bin/env bash
# xcaddy-build.sh OUTPUT - build Caddy with the knocker plugin from this
# checkout, exactly as users build it with xcaddy. The Dockerfile and the test
# command both run this script, so the documented build cannot rot.
# Versions are pinned: Caddy here, xcaddy in go.mod (go tool xcaddy).
set -euo pipefail
CADDY_VERSION=v2.11.9
out=${1:?usage: xcaddy-build.sh OUTPUT}
case $out in /*) ;; *) out="$PWD/$out" ;; esac
cd "$(dirname "$0")/.."

# xcaddy builds in a temporary module that requires the plugin by its
# module path; the path is replaced with this checkout, and the proxy must
# not be asked for it (",direct" would try the network for a module that
# only exists here), so the fallback after the first proxy is "off".
proxy=$(go env GOPROXY)
export GOPROXY="${proxy%%,*}|off"
export CGO_ENABLED=0
go tool xcaddy build "$CADDY_VERSION" --output "$out" \
	--with "github.com/caddy-knocker/knocker=$PWD"

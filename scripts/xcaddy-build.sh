#!/usr/bin/env bash
# xcaddy-build.sh OUTPUT [l4] - build Caddy with the knocker plugin from this
# checkout, exactly as users build it with xcaddy; with "l4", also caddy-l4
# and the plugin's caddy-l4 matcher (layer4.matchers.knocked). The
# Dockerfile and the test command both run this script, so the documented
# builds cannot rot. Versions are pinned: Caddy and caddy-l4 here (caddy-l4
# as in go.mod), xcaddy in go.mod (go tool xcaddy).
set -euo pipefail
CADDY_VERSION=v2.11.9
CADDY_L4_VERSION=v0.1.2
out=${1:?usage: xcaddy-build.sh OUTPUT [l4]}
variant=${2:-}
case $out in /*) ;; *) out="$PWD/$out" ;; esac
case $variant in
"" | l4) ;;
*) echo "xcaddy-build.sh: unknown variant \"$variant\" (want nothing or l4)" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."

# xcaddy builds in a temporary module that requires the plugin by its
# module path; the path is replaced with this checkout, and the proxy must
# not be asked for it (",direct" would try the network for a module that
# only exists here), so the fallback after the first proxy is "off".
proxy=$(go env GOPROXY)
export GOPROXY="${proxy%%,*}|off"
export CGO_ENABLED=0
with=(--with "github.com/caddy-knocker/knocker=$PWD")
if [ "$variant" = l4 ]; then
	with+=(--with "github.com/mholt/caddy-l4@$CADDY_L4_VERSION" --with github.com/caddy-knocker/knocker/layer4)
fi
go tool xcaddy build "$CADDY_VERSION" --output "$out" "${with[@]}"

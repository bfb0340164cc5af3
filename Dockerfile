# Caddy with the knocker plugin, built with xcaddy from this checkout.
#   docker build -t caddy-knocker .
#   docker build --build-arg VARIANT=l4 -t caddy-knocker-l4 .   # with caddy-l4
# Versions are pinned: the Go and Caddy images here, Caddy and xcaddy in
# scripts/xcaddy-build.sh (caddy-l4 too) and go.mod.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VARIANT=
RUN scripts/xcaddy-build.sh /out/caddy $VARIANT && /out/caddy list-modules | grep -q '^http.handlers.knocker$' && \
	{ [ -z "$VARIANT" ] || /out/caddy list-modules | grep -q '^layer4.matchers.knocked$'; }

FROM caddy:2.11.9-alpine
COPY --from=build /out/caddy /usr/bin/caddy

# Caddy with the knocker plugin, built with xcaddy from this checkout.
#   docker build -t caddy-knocker .
# Versions are pinned: the Go and Caddy images here, Caddy and xcaddy in
# scripts/xcaddy-build.sh and go.mod.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN scripts/xcaddy-build.sh /out/caddy && /out/caddy list-modules | grep -q '^http.handlers.knocker$'

FROM caddy:2.11.9-alpine
COPY --from=build /out/caddy /usr/bin/caddy

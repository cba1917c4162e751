#!/usr/bin/env bash
# Provides the real Prometheus Pushgateway at a pinned version in bin/pushgateway/<version>/ and
# prints the binary's path on stdout (progress goes to stderr). Used by the termination proof
# (test/termination), which must run the real thing rather than a stand-in.
#
# Order of preference:
#   1. PUSHGATEWAY_BINARY, when it is set and executable (a binary the user already has);
#   2. the cached bin/pushgateway/<version>/pushgateway from an earlier run;
#   3. a build from the Go module proxy: a throw-away wrapper module under bin/build/ that
#      requires github.com/prometheus/pushgateway, so no git clone or release download is needed.
set -euo pipefail

PUSHGATEWAY_VERSION=${PUSHGATEWAY_VERSION:-v1.11.3}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/bin/pushgateway/$PUSHGATEWAY_VERSION
BIN=$OUT/pushgateway
WRAP=$ROOT/bin/build/pushgateway-$PUSHGATEWAY_VERSION

log() { printf '[pushgateway %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [ -n "${PUSHGATEWAY_BINARY:-}" ] && [ -x "$PUSHGATEWAY_BINARY" ]; then
  log "using PUSHGATEWAY_BINARY=$PUSHGATEWAY_BINARY"
  echo "$PUSHGATEWAY_BINARY"; exit 0
fi
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
mkdir -p "$OUT" "$WRAP"

# The Pushgateway's go.mod states the Go version it needs; copy it so the wrapper does not ask
# for less (or more) than the module itself.
log "fetching github.com/prometheus/pushgateway@$PUSHGATEWAY_VERSION from the module proxy ..."
gomod=$(cd "$WRAP" && printf 'module local/pushgateway-binary\n' > go.mod \
  && GOFLAGS=-mod=mod go mod download -json "github.com/prometheus/pushgateway@$PUSHGATEWAY_VERSION" \
  | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
[ -f "$gomod" ] || die "could not download github.com/prometheus/pushgateway@$PUSHGATEWAY_VERSION (is the Go module proxy reachable? GOPROXY=$(go env GOPROXY))"
goline=$(grep -m1 '^go ' "$gomod")
printf 'module local/pushgateway-binary\n\n%s\n\nrequire github.com/prometheus/pushgateway %s\n' \
  "$goline" "$PUSHGATEWAY_VERSION" > "$WRAP/go.mod"

log "building pushgateway $PUSHGATEWAY_VERSION from source ..."
start=$SECONDS
# The upstream release stamps its version through prometheus/common/version; do the same so
# `pushgateway --version` tells which build is running.
ldflags="-s -w -X github.com/prometheus/common/version.Version=${PUSHGATEWAY_VERSION#v}"
ldflags+=" -X github.com/prometheus/common/version.Branch=module-proxy"
(cd "$WRAP" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$BIN.tmp" github.com/prometheus/pushgateway) \
  || die "building pushgateway failed (see the go output above)"
mv "$BIN.tmp" "$BIN"
log "built pushgateway in $((SECONDS - start))s: $BIN"
echo "$BIN"

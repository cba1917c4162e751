#!/usr/bin/env bash
# Provides the real Prometheus server at a pinned version in bin/prometheus/<version>/ and prints
# the binary's path on stdout (progress goes to stderr). The interruption matrix (test/node,
# make proof-interruptions) asks this Prometheus what it stored: a push it never scraped is lost,
# whatever the Pushgateway did.
#
# Order of preference:
#   1. PROMETHEUS_BINARY, when it is set and executable;
#   2. the cached bin/prometheus/<version>/prometheus from an earlier run;
#   3. a build from the Go module proxy: a throw-away wrapper module under bin/build/ that
#      requires github.com/prometheus/prometheus and builds its cmd/prometheus. Prometheus 3.x
#      publishes its Go module as v0.3xx.y (v0.316.0 is Prometheus 3.16.0). The build takes
#      about 19 minutes on 2 cores, so it is cached like the Kubernetes binaries.
#
# Built without the `builtinassets` tag: the web UI is absent, the HTTP API (all the tests use)
# is complete.
set -euo pipefail

PROMETHEUS_MODULE_VERSION=${PROMETHEUS_MODULE_VERSION:-v0.316.0}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/bin/prometheus/$PROMETHEUS_MODULE_VERSION
BIN=$OUT/prometheus
WRAP=$ROOT/bin/build/prometheus-$PROMETHEUS_MODULE_VERSION

log() { printf '[prometheus %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [ -n "${PROMETHEUS_BINARY:-}" ] && [ -x "$PROMETHEUS_BINARY" ]; then
  log "using PROMETHEUS_BINARY=$PROMETHEUS_BINARY"
  echo "$PROMETHEUS_BINARY"; exit 0
fi
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
mkdir -p "$OUT" "$WRAP"

log "fetching github.com/prometheus/prometheus@$PROMETHEUS_MODULE_VERSION from the module proxy ..."
gomod=$(cd "$WRAP" && printf 'module local/prometheus-binary\n' > go.mod \
  && GOFLAGS=-mod=mod go mod download -json "github.com/prometheus/prometheus@$PROMETHEUS_MODULE_VERSION" \
  | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
[ -f "$gomod" ] || die "could not download github.com/prometheus/prometheus@$PROMETHEUS_MODULE_VERSION (is the Go module proxy reachable? GOPROXY=$(go env GOPROXY))"
goline=$(grep -m1 '^go ' "$gomod")
printf 'module local/prometheus-binary\n\n%s\n\nrequire github.com/prometheus/prometheus %s\n' \
  "$goline" "$PROMETHEUS_MODULE_VERSION" > "$WRAP/go.mod"

# Module v0.MMM.P is Prometheus 3.MMM-300.P: stamp it so `prometheus --version` and the
# build_info metric say which release runs.
mm=${PROMETHEUS_MODULE_VERSION#v0.}; minor=$(( ${mm%%.*} - 300 )); patch=${mm#*.}
release="3.$minor.$patch"
log "building prometheus $release (module $PROMETHEUS_MODULE_VERSION) from source; about 19 minutes on 2 cores ..."
start=$SECONDS
ldflags="-s -w -X github.com/prometheus/common/version.Version=$release"
ldflags+=" -X github.com/prometheus/common/version.Branch=module-proxy"
(cd "$WRAP" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$BIN.tmp" \
  github.com/prometheus/prometheus/cmd/prometheus) \
  || die "building prometheus failed (see the go output above)"
mv "$BIN.tmp" "$BIN"
log "built prometheus $release in $((SECONDS - start))s: $BIN"
echo "$BIN"

#!/usr/bin/env bash
# Provides the real Prometheus server at a pinned version in bin/prometheus/<version>/ and prints
# the binary's path on stdout (progress goes to stderr). The interruption matrix (test/node,
# make proof-interruptions) asks this Prometheus what it stored: a push it never scraped is lost,
# whatever the Pushgateway did.
#
# Order of preference:
#   1. PROMETHEUS_BINARY, when it is set and executable;
#   2. the cached bin/prometheus/<version>/prometheus from an earlier run;
#   3. a build of its cmd/prometheus from the Go module proxy (hack/lib-module-binary.sh).
#      Prometheus 3.x publishes its Go module as v0.3xx.y (v0.316.0 is Prometheus 3.16.0). The
#      build took 449 s here and about 19 minutes on 2 busy cores, so it is cached like the
#      Kubernetes binaries.
#
# Built without the `builtinassets` tag: the web UI is absent, the HTTP API (all the tests use)
# is complete.
set -euo pipefail

PROMETHEUS_MODULE_VERSION=${PROMETHEUS_MODULE_VERSION:-v0.316.0}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/bin/prometheus/$PROMETHEUS_MODULE_VERSION
BIN=$OUT/prometheus

log() { printf '[prometheus %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [ -n "${PROMETHEUS_BINARY:-}" ] && [ -x "$PROMETHEUS_BINARY" ]; then
  log "using PROMETHEUS_BINARY=$PROMETHEUS_BINARY"
  echo "$PROMETHEUS_BINARY"; exit 0
fi
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
# Module v0.MMM.P is Prometheus 3.MMM-300.P: stamp it so `prometheus --version` and the
# build_info metric say which release runs.
mm=${PROMETHEUS_MODULE_VERSION#v0.}; minor=$(( ${mm%%.*} - 300 )); patch=${mm#*.}
release="3.$minor.$patch"
ldflags="-s -w -X github.com/prometheus/common/version.Version=$release"
ldflags+=" -X github.com/prometheus/common/version.Branch=module-proxy"
log "building prometheus $release (module $PROMETHEUS_MODULE_VERSION) from source; 8-19 minutes on 2 cores ..."
. "$ROOT/hack/lib-module-binary.sh"
module_binary prometheus github.com/prometheus/prometheus "$PROMETHEUS_MODULE_VERSION" github.com/prometheus/prometheus/cmd/prometheus "$BIN" "$ldflags"

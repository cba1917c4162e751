#!/usr/bin/env bash
# Provides the real Prometheus Pushgateway at a pinned version in bin/pushgateway/<version>/ and
# prints the binary's path on stdout (progress goes to stderr). Used by the termination proof
# (test/termination), which must run the real thing rather than a stand-in.
#
# Order of preference:
#   1. PUSHGATEWAY_BINARY, when it is set and executable (a binary the user already has);
#   2. the cached bin/pushgateway/<version>/pushgateway from an earlier run;
#   3. a build from the Go module proxy (hack/lib-module-binary.sh).
set -euo pipefail

PUSHGATEWAY_VERSION=${PUSHGATEWAY_VERSION:-v1.11.3}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/bin/pushgateway/$PUSHGATEWAY_VERSION
BIN=$OUT/pushgateway

log() { printf '[pushgateway %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [ -n "${PUSHGATEWAY_BINARY:-}" ] && [ -x "$PUSHGATEWAY_BINARY" ]; then
  log "using PUSHGATEWAY_BINARY=$PUSHGATEWAY_BINARY"
  echo "$PUSHGATEWAY_BINARY"; exit 0
fi
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
# The upstream release stamps its version through prometheus/common/version; do the same so
# `pushgateway --version` tells which build is running.
ldflags="-s -w -X github.com/prometheus/common/version.Version=${PUSHGATEWAY_VERSION#v}"
ldflags+=" -X github.com/prometheus/common/version.Branch=module-proxy"
log "building pushgateway $PUSHGATEWAY_VERSION from source ..."
. "$ROOT/hack/lib-module-binary.sh"
module_binary pushgateway github.com/prometheus/pushgateway "$PUSHGATEWAY_VERSION" github.com/prometheus/pushgateway "$BIN" "$ldflags"

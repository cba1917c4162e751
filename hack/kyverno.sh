#!/usr/bin/env bash
# Provides Kyverno's admission controller at a pinned version in bin/kyverno/<version>/kyverno
# and prints the binary's path on stdout (progress goes to stderr). `make bench-peers` would run
# it as a peer of the webhook (issue 23); it was last measured out of cluster on 2026-11-27, in a
# hand run whose figures are recorded outside this repository (the team's peer measurements).
#
# Order of preference:
#   1. KYVERNO_BINARY, when it is set and executable;
#   2. the cached bin/kyverno/<version>/kyverno from an earlier run;
#   3. a build of ./cmd/kyverno from the Go module proxy. `go install` (and so
#      hack/lib-module-binary.sh's wrapper module) fails on the module's own `replace`
#      directives, so the module zip is unpacked (go mod download) and built as the main module
#      in a writable copy under bin/build/. About 9 minutes and 400 MB on 2 cores.
# Never commit its source or binary (bin/ is git-ignored).
set -euo pipefail

KYVERNO_VERSION=${KYVERNO_VERSION:-v1.19.1}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/bin/kyverno/$KYVERNO_VERSION
BIN=$OUT/kyverno

log() { printf '[kyverno %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [ -n "${KYVERNO_BINARY:-}" ] && [ -x "$KYVERNO_BINARY" ]; then
  log "using KYVERNO_BINARY=$KYVERNO_BINARY"
  echo "$KYVERNO_BINARY"; exit 0
fi
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
src=$ROOT/bin/build/kyverno-$KYVERNO_VERSION
mkdir -p "$OUT" "$ROOT/bin/build"
if [ ! -f "$src/go.mod" ]; then
  log "fetching github.com/kyverno/kyverno@$KYVERNO_VERSION from the module proxy ..."
  dir=$(cd "$ROOT/bin/build" && GOFLAGS=-mod=mod GO111MODULE=on go mod download -json "github.com/kyverno/kyverno@$KYVERNO_VERSION" \
    | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [ -d "$dir" ] || die "could not download github.com/kyverno/kyverno@$KYVERNO_VERSION (GOPROXY=$(go env GOPROXY))"
  rm -rf "$src.tmp"; cp -r "$dir" "$src.tmp"; chmod -R u+w "$src.tmp"; mv "$src.tmp" "$src"
fi
start=$SECONDS
log "building ./cmd/kyverno (about 9 minutes on 2 cores) ..."
(cd "$src" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN.tmp" ./cmd/kyverno) \
  || die "building kyverno failed (see the go output above)"
mv "$BIN.tmp" "$BIN"
log "built kyverno in $((SECONDS - start))s: $BIN"
echo "$BIN"

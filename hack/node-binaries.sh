#!/usr/bin/env bash
# Provides the node's Kubernetes binaries - kubelet, kube-scheduler, kube-proxy - at the pinned
# version in bin/k8s/<KUBE_VERSION>/, beside the four that hack/k8s-binaries.sh provides, and
# prints that directory on stdout (progress goes to stderr).
#
# They are built from the Go module proxy in the same throw-away wrapper module as
# kube-apiserver (k8s-binaries.sh writes it), under the same lock, so the build cache is shared
# and concurrent callers wait instead of building twice. envtest publishes none of them.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/bin/build
NODE_BINS=(kubelet kube-scheduler kube-proxy)

log() { printf '[node-binaries %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The control plane's four first: this also writes the wrapper module (and honours its cache).
OUT=$("$ROOT/hack/k8s-binaries.sh")
have_node() { local b; for b in "${NODE_BINS[@]}"; do [ -x "$OUT/$b" ] || return 1; done; }
if have_node; then echo "$OUT"; exit 0; fi

if command -v flock >/dev/null 2>&1; then
  exec 9>"$BUILD/.lock"
  if ! flock -n 9; then
    log "another k8s build is running; waiting for it ..."
    flock 9
  fi
  if have_node; then echo "$OUT"; exit 0; fi
fi

wrap=$BUILD/kubernetes-$KUBE_VERSION
if [ ! -f "$wrap/go.mod" ]; then
  # k8s-binaries.sh took its binaries from KUBEBUILDER_ASSETS or envtest and wrote no wrapper
  # module: write it the same way (k8s.io/kubernetes, every staging module at its release).
  mkdir -p "$wrap"
  log "fetching k8s.io/kubernetes@$KUBE_VERSION go.mod from the module proxy ..."
  gomod=$(cd "$wrap" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -f "$gomod" ] || die "could not download k8s.io/kubernetes@$KUBE_VERSION (is the Go module proxy reachable?)"
  {
    printf 'module local/kube-binaries\n\n%s\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$(grep -m1 '^go ' "$gomod")" "$KUBE_VERSION"
    sed -n 's#^\s*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\t\1 => \1 '"v0.${KUBE_VERSION#v1.}"'#p' "$gomod"
    echo ")"
  } > "$wrap/go.mod"
fi
for b in "${NODE_BINS[@]}"; do
  [ -x "$OUT/$b" ] && continue
  log "building $b $KUBE_VERSION from source (first time: a few minutes on 2 cores) ..."
  start=$SECONDS
  (cd "$wrap" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$OUT/$b.tmp" "k8s.io/kubernetes/cmd/$b") \
    || die "building $b failed (see the go output above)"
  mv "$OUT/$b.tmp" "$OUT/$b"
  log "built $b in $((SECONDS - start))s"
done
have_node || die "not all of ${NODE_BINS[*]} ended up in $OUT"
log "ready: $OUT"
echo "$OUT"

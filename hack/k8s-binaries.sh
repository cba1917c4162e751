#!/usr/bin/env bash
# Provides kube-apiserver, kube-controller-manager, kubectl and etcd at pinned versions in
# bin/k8s/<KUBE_VERSION>/ and prints that directory on stdout (progress goes to stderr).
#
# Order of preference, so that nobody waits for a source build they do not need:
#   1. KUBEBUILDER_ASSETS, when it is set and already holds all four binaries;
#   2. the cached bin/k8s/<version>/ from an earlier run;
#   3. envtest's published binaries through setup-envtest (needs internet; skipped with
#      SKIP_SETUP_ENVTEST=1). setup-envtest ships no kube-controller-manager, so that one is
#      still built from source when missing;
#   4. a build from the Go module proxy: a throw-away wrapper module that requires
#      k8s.io/kubernetes and replaces every staging module with its released version.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
# KUBECTL_VERSION (default: KUBE_VERSION) takes kubectl from bin/k8s/<KUBECTL_VERSION>/ when it is
# there instead of building it: `make test-versions` uses one kubectl (a client, only for
# create/apply/get) against every server version and builds only the server binaries per version.
KUBECTL_VERSION=${KUBECTL_VERSION:-$KUBE_VERSION}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
SETUP_ENVTEST_VERSION=${SETUP_ENVTEST_VERSION:-release-0.25}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${K8S_BIN_DIR:-$ROOT/bin/k8s/$KUBE_VERSION}
BUILD=$ROOT/bin/build
BINS=(kube-apiserver kube-controller-manager kubectl etcd)

log() { printf '[k8s-binaries %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
have_all() { local d=$1 b; for b in "${BINS[@]}"; do [ -x "$d/$b" ] || return 1; done; }

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && have_all "$KUBEBUILDER_ASSETS"; then
  log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  echo "$KUBEBUILDER_ASSETS"; exit 0
fi
if have_all "$OUT"; then echo "$OUT"; exit 0; fi
mkdir -p "$OUT" "$BUILD"

# Test packages run in parallel and each asks for the binaries: one builds, the others wait
# for it and then find everything in place (flock is util-linux; without it, no lock). The
# lock is per Kubernetes version, so that `make test-versions` can build an old release while
# another one is being built; etcd, shared by all versions' builds, has its own lock below.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$BUILD/.lock-$KUBE_VERSION"
  if ! flock -n 9; then
    log "another k8s-binaries.sh is building $KUBE_VERSION; waiting for it ..."
    flock 9
  fi
  if have_all "$OUT"; then echo "$OUT"; exit 0; fi
fi

# envtest's usual assets (setup-envtest, CI caches) hold kube-apiserver, etcd and kubectl but
# no kube-controller-manager: take what is there and build only what is missing.
if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  for b in kube-apiserver etcd kubectl; do
    if [ ! -x "$OUT/$b" ] && [ -x "$KUBEBUILDER_ASSETS/$b" ]; then
      cp "$KUBEBUILDER_ASSETS/$b" "$OUT/$b"
      log "took $b from KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
    fi
  done
fi

# The staging modules' releases are v0.x.y for Kubernetes v1.x.y.
STAGING_VERSION=v0.${KUBE_VERSION#v1.}

if [ "${SKIP_SETUP_ENVTEST:-}" != 1 ] && { [ ! -x "$OUT/kube-apiserver" ] || [ ! -x "$OUT/etcd" ] || [ ! -x "$OUT/kubectl" ]; }; then
  log "trying envtest's published binaries (setup-envtest ${SETUP_ENVTEST_VERSION}) ..."
  if GOBIN=$ROOT/bin go install "sigs.k8s.io/controller-runtime/tools/setup-envtest@${SETUP_ENVTEST_VERSION}" >/dev/null 2>&1 \
     && dir=$(timeout 120 "$ROOT/bin/setup-envtest" use -p path --bin-dir "$BUILD/envtest" "${KUBE_VERSION#v}" 2>/dev/null) \
     && [ -x "$dir/kube-apiserver" ]; then
    for b in kube-apiserver etcd kubectl; do cp "$dir/$b" "$OUT/$b"; done
    log "published binaries fetched into $OUT"
  else
    log "published binaries unavailable here (no internet?): building from source"
  fi
fi

build_kube() {
  [ -x "$OUT/kube-apiserver" ] && [ -x "$OUT/kube-controller-manager" ] && [ -x "$OUT/kubectl" ] && return 0
  local wrap=$BUILD/kubernetes-$KUBE_VERSION
  mkdir -p "$wrap"
  log "fetching k8s.io/kubernetes@$KUBE_VERSION go.mod from the module proxy ..."
  local gomod
  gomod=$(cd "$wrap" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -f "$gomod" ] || die "could not download k8s.io/kubernetes@$KUBE_VERSION (is the Go module proxy reachable? GOPROXY=$(go env GOPROXY))"
  local goline
  goline=$(grep -m1 '^go ' "$gomod")
  {
    echo "module local/kube-binaries"
    echo
    echo "$goline"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    # Every staging module that k8s.io/kubernetes replaces with ./staging/... is pinned to
    # its published release, so the list follows the version instead of being copied here.
    sed -n 's#^\s*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\t\1 => \1 '"$STAGING_VERSION"'#p' "$gomod"
    echo ")"
  } > "$wrap/go.mod"
  # The module proxy does not serve every staging module at every release (403): on 1.32.13,
  # k8s.io/endpointslice v0.32.13; on 1.31.14, k8s.io/kube-scheduler v0.31.14. Such a module is
  # taken at the newest patch of the same minor that it serves (patch releases of a staging
  # module keep their API), and the log says so; docs/versions.md names each case.
  local m fallback
  for m in $( (cd "$wrap" && GOFLAGS=-mod=mod go mod download -json $(sed -n 's#^\t\(k8s\.io/[a-z0-9-]*\) => .*#\1@'"$STAGING_VERSION"'#p' "$wrap/go.mod") 2>/dev/null) \
      | awk -F'"' '/"Path":/ {p=$4} /"Error":/ {print p}' | sort -u); do
    [ "$m" = k8s.io/legacy-cloud-providers ] && continue
    fallback=$( (cd "$wrap" && GOFLAGS=-mod=mod go list -m -versions "$m" 2>/dev/null) | tr ' ' '\n' \
      | grep "^${STAGING_VERSION%.*}\.[0-9]*$" | sort -V | awk -v cur="$STAGING_VERSION" '{ split($0, a, "."); split(cur, b, "."); if (a[3] + 0 < b[3] + 0) v = $0 } END { print v }' || true)
    if [ -z "$fallback" ]; then
      # The sample modules, for one, are served for no patch of some minors; the binaries
      # built here import none of them, so the go command never fetches them.
      log "$m@$STAGING_VERSION is not on the module proxy, nor an earlier ${STAGING_VERSION%.*} patch: left as is"
      continue
    fi
    log "$m@$STAGING_VERSION is not on the module proxy: taking $m@$fallback"
    sed -i "s#^\t$m => $m $STAGING_VERSION\$#\t$m => $m $fallback#" "$wrap/go.mod"
  done
  # Releases up to 1.30 still import the in-tree cloud providers from the staging module
  # k8s.io/legacy-cloud-providers, which the module proxy does not serve for every release
  # (v0.29.6: 403). Kubernetes' own `providerless` build tag leaves them out; the control
  # plane the tests need uses none of them.
  local tags=${KUBE_BUILD_TAGS:-}
  if [ -z "$tags" ] && grep -q 'k8s.io/legacy-cloud-providers =>' "$gomod" \
     && ! (cd "$wrap" && GOFLAGS=-mod=mod go mod download "k8s.io/legacy-cloud-providers@$STAGING_VERSION" >/dev/null 2>&1); then
    tags=providerless
    log "k8s.io/legacy-cloud-providers@$STAGING_VERSION is not on the module proxy: building with -tags providerless"
  fi
  # One `go build` for every missing binary: the packages they share compile once and the links
  # run side by side, instead of three builds one after another.
  local b pkgs=() names=()
  for b in kube-apiserver kube-controller-manager kubectl; do
    [ -x "$OUT/$b" ] && continue
    if [ "$b" = kubectl ] && [ "$KUBECTL_VERSION" != "$KUBE_VERSION" ] && [ -x "$ROOT/bin/k8s/$KUBECTL_VERSION/kubectl" ]; then
      cp "$ROOT/bin/k8s/$KUBECTL_VERSION/kubectl" "$OUT/kubectl"
      log "took kubectl $KUBECTL_VERSION from bin/k8s/$KUBECTL_VERSION"
      continue
    fi
    pkgs+=("k8s.io/kubernetes/cmd/$b"); names+=("$b")
  done
  [ ${#pkgs[@]} -eq 0 ] && return 0
  log "building ${names[*]} $KUBE_VERSION from source (first time: several minutes on 2 cores) ..."
  local start=$SECONDS tmp=$OUT/.build.$$
  rm -rf "$tmp"; mkdir -p "$tmp"
  (cd "$wrap" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath ${tags:+-tags "$tags"} -o "$tmp/" "${pkgs[@]}") \
    || { rm -rf "$tmp"; die "building ${names[*]} failed (see the go output above)"; }
  for b in "${names[@]}"; do mv "$tmp/$b" "$OUT/$b"; done
  rm -rf "$tmp"
  log "built ${names[*]} in $((SECONDS - start))s"
}

build_etcd() {
  [ -x "$OUT/etcd" ] && return 0
  local wrap=$BUILD/etcd-$ETCD_VERSION
  mkdir -p "$wrap"
  # Held only while etcd is provided (closed below), not during the Kubernetes build.
  if command -v flock >/dev/null 2>&1; then
    exec 8>"$BUILD/.lock-etcd-$ETCD_VERSION"
    flock 8
  fi
  # The same etcd serves every Kubernetes version: the first build keeps a copy in $wrap.
  if [ -x "$wrap/etcd" ]; then
    cp "$wrap/etcd" "$OUT/etcd"
    log "took etcd $ETCD_VERSION from $wrap"
    exec 8>&-
    return 0
  fi
  printf 'module local/etcd-binary\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > "$wrap/go.mod"
  log "building etcd $ETCD_VERSION from source ..."
  local start=$SECONDS
  (cd "$wrap" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$OUT/etcd.tmp" go.etcd.io/etcd/server/v3) \
    || die "building etcd failed (see the go output above)"
  cp "$OUT/etcd.tmp" "$wrap/etcd"
  mv "$OUT/etcd.tmp" "$OUT/etcd"
  log "built etcd in $((SECONDS - start))s"
  exec 8>&-
}

# etcd is another module: build it beside Kubernetes rather than before it.
build_etcd & etcd_pid=$!
build_kube
wait "$etcd_pid" || die "building etcd failed"
have_all "$OUT" || die "not all of ${BINS[*]} ended up in $OUT"
log "ready: $OUT"
echo "$OUT"

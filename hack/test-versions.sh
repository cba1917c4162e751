#!/usr/bin/env bash
# Runs the version-dependent suites against every Kubernetes release given as arguments:
#   test/e2e      the admission end-to-end suite (kube-apiserver + kube-controller-manager)
#   test/chart    the chart's renders and its server-side dry-run against kube-apiserver
#   test/versions the native sleep action with its feature gate on and off, and the guard
# Each release's kube-apiserver and kube-controller-manager come from hack/k8s-binaries.sh
# (built from the Go module proxy once, then cached in bin/k8s/<version>/); one kubectl, the
# pinned release's (KUBECTL_VERSION), serves every version. Prints a matrix; exits 1 when a
# version failed. Logs: bin/test-versions/<version>.log.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
[ $# -gt 0 ] || { echo "usage: $0 v1.x.y ..." >&2; exit 2; }
export KUBECTL_VERSION=${KUBECTL_VERSION:-v1.37.2}
LOGS=$ROOT/bin/test-versions
mkdir -p "$LOGS"
PKGS=(./e2e/ ./chart/ ./versions/) # packages of the test module (test/go.mod)

# kubectl first, so that no version builds its own.
KUBE_VERSION=$KUBECTL_VERSION ./hack/k8s-binaries.sh >/dev/null || exit 1

rows=()
failed=0
for v in "$@"; do
  log=$LOGS/$v.log
  : >"$log"
  start=$SECONDS
  if [ -x "bin/k8s/$v/kube-apiserver" ] && [ -x "bin/k8s/$v/kube-controller-manager" ]; then
    built="cached"
  else
    built=""
  fi
  if ! KUBE_VERSION=$v nice -n 10 ./hack/k8s-binaries.sh >/dev/null 2>>"$log"; then
    rows+=("$v|binaries FAILED (see $log)|-|-|-")
    failed=1
    continue
  fi
  [ -n "$built" ] || built="built in $((SECONDS - start))s"
  results=()
  for p in "${PKGS[@]}"; do
    t0=$SECONDS
    if KUBE_VERSION=$v go -C test test -count=1 -p 1 -timeout 20m -v "$p" >>"$log" 2>&1; then
      results+=("pass ($((SECONDS - t0))s)")
    else
      results+=("FAIL ($((SECONDS - t0))s)")
      failed=1
    fi
  done
  rows+=("$v|$built|${results[0]}|${results[1]}|${results[2]}")
  echo "[test-versions] $v: $built; e2e ${results[0]}, chart ${results[1]}, versions ${results[2]} (log: $log)" >&2
done

echo
echo "| Kubernetes | binaries | test/e2e | test/chart | test/versions |"
echo "|---|---|---|---|---|"
for r in "${rows[@]}"; do echo "| ${r//|/ | } |"; done
exit $failed

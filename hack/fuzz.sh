#!/usr/bin/env bash
# Runs every Go fuzz target of the module for FUZZTIME each (default 60s) and prints the
# executions and crashes per target and in total. A crash leaves its input under the
# package's testdata/fuzz/<Target>/, where plain `go test` replays it from then on: commit it
# with the fix as a regression case.
#
# Usage: FUZZTIME=60s hack/fuzz.sh [package pattern...]   (default ./...)
set -uo pipefail

cd "$(dirname "$0")/.."
FUZZTIME="${FUZZTIME:-60s}"
patterns=("$@")
# Without patterns: both modules, the product's (.) and the test lab's (test/); patterns name
# packages of the product's module.
mods=(.)
[ ${#patterns[@]} -eq 0 ] && patterns=(./...) && mods=(. test)

log_dir="$(mktemp -d)"
trap 'rm -rf "$log_dir"' EXIT

# `go test -list` names the targets per package without running anything.
pkgs=()
for mod in "${mods[@]}"; do
  while read -r p; do [ -n "$p" ] && pkgs+=("$mod $p"); done < <(go -C "$mod" list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' "${patterns[@]}")
done
total_execs=0
total_crashes=0
targets=0
printf '%-70s %14s %8s\n' "TARGET" "EXECUTIONS" "CRASHES"
for entry in "${pkgs[@]}"; do
  mod=${entry%% *} pkg=${entry#* }
  mapfile -t fuzzers < <(go -C "$mod" test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true)
  for f in "${fuzzers[@]}"; do
    targets=$((targets + 1))
    out="$log_dir/$targets.log"
    # -parallel bounds the workers: the machine is shared and the targets run one by one.
    go -C "$mod" test -run '^$' -fuzz "^${f}\$" -fuzztime "$FUZZTIME" -parallel "${FUZZ_WORKERS:-2}" "$pkg" >"$out" 2>&1
    rc=$?
    execs=$(grep -o 'execs: [0-9]*' "$out" | tail -1 | grep -o '[0-9]*' || true)
    execs=${execs:-0}
    crashes=0
    if [ $rc -ne 0 ]; then
      crashes=1
      echo "--- $pkg $f failed:" >&2
      grep -E -- '--- FAIL|fuzz_test.go|Failing input|panic:|hung' "$out" | head -20 >&2
    fi
    total_execs=$((total_execs + execs))
    total_crashes=$((total_crashes + crashes))
    printf '%-70s %14d %8d\n' "${pkg#github.com/pushgateway-lifecycle/pushgateway-lifecycle/}.$f" "$execs" "$crashes"
  done
done
printf '%-70s %14d %8d\n' "TOTAL ($targets targets, $FUZZTIME each)" "$total_execs" "$total_crashes"
[ "$total_crashes" -eq 0 ]

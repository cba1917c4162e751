# Sourced by hack/pushgateway.sh and hack/prometheus.sh: builds one command of a Go module from
# the module proxy, with no git clone or release download. A throw-away wrapper module under
# bin/build/ requires the module at its pinned version and states the Go version the module's
# own go.mod asks for, so the wrapper never asks for less (or more).
#
# module_binary NAME MODULE VERSION PACKAGE BIN LDFLAGS
#   prints BIN on stdout when it is built (progress on stderr).
module_binary() {
  local name=$1 module=$2 version=$3 pkg=$4 bin=$5 ldflags=$6
  local root wrap gomod goline start
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  wrap=$root/bin/build/$name-$version
  mkdir -p "$(dirname "$bin")" "$wrap"
  log "fetching $module@$version from the module proxy ..."
  gomod=$(cd "$wrap" && printf 'module local/%s-binary\n' "$name" > go.mod \
    && GOFLAGS=-mod=mod go mod download -json "$module@$version" \
    | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -f "$gomod" ] || die "could not download $module@$version (is the Go module proxy reachable? GOPROXY=$(go env GOPROXY))"
  goline=$(grep -m1 '^go ' "$gomod")
  printf 'module local/%s-binary\n\n%s\n\nrequire %s %s\n' "$name" "$goline" "$module" "$version" > "$wrap/go.mod"
  start=$SECONDS
  (cd "$wrap" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$bin.tmp" "$pkg") \
    || die "building $name failed (see the go output above)"
  mv "$bin.tmp" "$bin"
  log "built $name in $((SECONDS - start))s: $bin"
  echo "$bin"
}

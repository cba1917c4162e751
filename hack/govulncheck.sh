#!/usr/bin/env bash
# Runs govulncheck against a local copy of the Go vulnerability database, for machines that
# reach the Go module proxy but not vuln.go.dev. The database's OSV records ship in the
# module golang.org/x/vulndb (data/osv/*.json), which the module proxy serves like any
# module; that module's own cmd/indexdb writes the v1 database layout (index/db.json,
# index/modules.json, index/vulns.json, ID/<id>.json) that `govulncheck -db file://` reads.
# Everything goes to bin/, keyed by version, and is reused.
#
# Freshness is the pinned VULNDB_VERSION (a pseudo-version: its date is the snapshot's):
# bump it to pick up new advisories. The records' own "modified" fields are zero in the
# repository (the hosted database fills them from git history), so index/db.json says
# 0001-01-01; govulncheck does not use it for matching.
#
# Usage: hack/govulncheck.sh [govulncheck args...]   (default: ./...)
# Exit status is govulncheck's: 0 clean, 3 vulnerabilities found, other: error.
set -euo pipefail

cd "$(dirname "$0")/.."
root="$PWD"
VULNDB_VERSION="${VULNDB_VERSION:-v0.0.0-20261105234957-e22db6528018}"
GOVULNCHECK_VERSION="${GOVULNCHECK_VERSION:-v1.9.0}"
LOCALBIN="${LOCALBIN:-$root/bin}"
rev="${VULNDB_VERSION##*-}"
db="$LOCALBIN/vulndb-$rev"
indexdb="$LOCALBIN/indexdb-$rev/indexdb"

if [ ! -f "$LOCALBIN/govulncheck-$GOVULNCHECK_VERSION" ]; then
  GOBIN="$LOCALBIN" go install "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION"
  touch "$LOCALBIN/govulncheck-$GOVULNCHECK_VERSION"
fi

if [ ! -f "$db/index/db.json" ]; then
  if [ ! -x "$indexdb" ]; then
    GOBIN="$(dirname "$indexdb")" go install "golang.org/x/vulndb/cmd/indexdb@$VULNDB_VERSION"
  fi
  # Outside the module, so that the download does not touch go.mod or go.sum.
  src="$(cd "$(mktemp -d)" && go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  if [ -z "$src" ] || [ ! -d "$src/data/osv" ]; then
    echo "golang.org/x/vulndb@$VULNDB_VERSION has no data/osv directory" >&2
    exit 2
  fi
  tmp="$db.tmp.$$"
  rm -rf "$tmp"
  "$indexdb" -vulns "$src/data/osv" -out "$tmp"
  rm -rf "$db"
  mv "$tmp" "$db"
  echo "govulncheck: built the vulnerability database $db from golang.org/x/vulndb@$VULNDB_VERSION ($(ls "$db/ID" | wc -l) entries)" >&2
fi

[ $# -eq 0 ] && set -- ./...
exec "$LOCALBIN/govulncheck" -db "file://$db" "$@"

#!/bin/sh
# Scans calgate with govulncheck (pinned below, installed from the Go
# module proxy) for called code with known vulnerabilities.
#
# The database is, in this order: $VULNDB if set (a URL, or a directory
# holding a database in the v1 layout); the snapshot in ../shared/vulndb,
# beside the checkout, if it exists; else govulncheck's default
# (https://vuln.go.dev).
#
# Exit status:
#   0   no vulnerable code is called
#   3   vulnerable code is called (govulncheck's own status; see above)
#   77  NOT RUN: the default database could not be fetched. A scan that did
#       not run is not a clean scan: `make test` fails on it when CI=true.
#   1   anything else failed (installing govulncheck, loading packages,
#       reading a database that was named or provided)
set -eu
cd "$(dirname "$0")/.."
version=v1.8.0

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" go install "golang.org/x/vuln/cmd/govulncheck@$version"

db="${VULNDB:-}"
if [ -z "$db" ] && [ -d ../shared/vulndb ]; then
	db=../shared/vulndb
fi
if [ -n "$db" ]; then
	case "$db" in
	*://*) ;;
	*) db="file://$(cd "$db" && pwd)" ;; # govulncheck wants an absolute path
	esac
	echo "govulncheck $version, database $db"
	exec "$tmp/govulncheck" -db "$db" ./...
fi

echo "govulncheck $version, default database"
# A host that drops packets would hang the fetch; a scan takes seconds.
run=""
if command -v timeout >/dev/null; then
	run="timeout 300"
fi
status=0
$run "$tmp/govulncheck" ./... >"$tmp/out" 2>&1 || status=$?
cat "$tmp/out"
if [ "$status" -eq 124 ] || { [ "$status" -ne 0 ] && grep -q '^govulncheck: fetching vulnerabilities' "$tmp/out"; }; then
	echo "govulncheck: NOT RUN: could not fetch the vulnerability database" >&2
	exit 77
fi
exit "$status"

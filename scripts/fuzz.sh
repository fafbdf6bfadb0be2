#!/bin/sh
# Runs every fuzz target of calgate for a short, bounded time each
# (FUZZTIME, default 10s). The targets are found by name with
# `go test -list` in each package whose test files declare one, so a new
# target runs without a change here. Fails if any target fails (or none
# is found); a failing input is kept in the package's testdata/fuzz/, and
# `go test -run=FuzzName/ID ./pkg` runs it again.
set -eu
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-10s}"

# A grep first, so that only the test binaries of those packages are
# built for -list.
dirs=$(grep -rlE --include='*_test.go' --exclude-dir=testdata --exclude-dir=.git '^func Fuzz[A-Za-z0-9_]*\(' . |
	xargs -r -n1 dirname | sort -u)
failed=""
count=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for dir in $dirs; do
	# -fuzz (matching no target) builds the binary the runs below use.
	if ! names=$(go test -list '^Fuzz' -fuzz '^$' "$dir"); then
		failed="$failed $dir(build)"
		continue
	fi
	for name in $(printf '%s\n' "$names" | grep '^Fuzz' || true); do
		count=$((count + 1))
		echo "fuzz: $name in $dir for $fuzztime"
		inputs="$dir/testdata/fuzz/$name"
		before=$(ls "$inputs" 2>/dev/null || true)
		status=0
		go test -run '^$' -fuzz "^$name\$" -fuzztime "$fuzztime" "$dir" >"$log" 2>&1 || status=$?
		cat "$log"
		[ "$status" -eq 0 ] && continue
		# Go before 1.27 can fail a run that found nothing with a bare
		# "context deadline exceeded" when -fuzztime ends
		# (https://go.dev/issue/75804): without a failing input that is no
		# finding. Any other failure, or a failing input written, is one.
		if grep -qx '    context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log" &&
			[ "$(ls "$inputs" 2>/dev/null || true)" = "$before" ]; then
			echo "fuzz: $name stopped with \"context deadline exceeded\" and no failing input (go.dev/issue/75804); not a failure"
			continue
		fi
		failed="$failed $dir:$name"
	done
done
if [ "$count" -eq 0 ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi
if [ -n "$failed" ]; then
	echo "fuzz: FAILED:$failed" >&2
	exit 1
fi
echo "fuzz: $count targets, $fuzztime each, no failure"

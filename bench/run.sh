#!/usr/bin/env bash
# bench/run.sh: calgate against Radicale and against the limits of this
# machine, in one run, with every answer checked.
#
#   bench/run.sh                               # N=10,000, c=8, 3 rounds of 5s (about 15 minutes on 2 cores)
#   N=1000 bench/run.sh                        # a quick run
#   N=500 ROUNDS=1 DURATION=2s N_BIG=0 bench/run.sh   # a smoke test, without the 100,000-event rows
#
# It builds calgate and calgate-bench into a temporary directory, starts
# calgate (user alice with a generated password, local calendar bench, a
# merged feed "bench" over it with a generated token) on a free port of
# 127.0.0.1, runs calgate-bench against it with the feed, then the limits
# (a trivial Go server of the same bytes, plain bbolt commits); then
# starts Radicale on another free port of 127.0.0.1 (htpasswd auth,
# filesystem storage in the temporary directory) and runs calgate-bench
# against it; then a second calgate on a fresh data file with N_BIG events:
# the one-month query there, and its start-up to /readyz 200. It prints one
# table (calgate, Radicale, calgate/Radicale, limit, calgate as a fraction
# of the limit, target from bench/targets.txt, met or missed) and writes it,
# with every JSON and log, to OUT. Everything it starts is stopped on exit.
# Each phase line shows the load average: other work on the machine skews
# the figures, so run it on an otherwise idle machine.
#
# Radicale stores a new object in time linear in the calendar's size (it
# reads every object to check the UID), so it gets all but RADICALE_TAIL
# events in one PUT of the whole calendar, and its PUT load figure is
# that of the last RADICALE_TAIL events.
#
# Settings (environment):
#   N=10000             events in the compared calendars
#   C=8                 concurrency of the load and of each measurement
#   ROUNDS=3            measured rounds of each operation (medians are reported)
#   DURATION=5s         time bound of each round (each makes one request at least)
#   RADICALE_DURATION   the same for Radicale (default DURATION)
#   RADICALE_TAIL=40    events PUT one by one into Radicale
#   RADICALE=1          0 skips Radicale (calgate and the limits only)
#   N_BIG=100000        events of the large calgate run (0 skips it)
#   TIMEOUT=20m         timeout of one request (Radicale needs minutes for some)
#   OUT=bench/out       where the results go
#   KEEP_WORK=1         keep the temporary directory (data files, logs)
set -euo pipefail

N=${N:-10000}
C=${C:-8}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
RADICALE_DURATION=${RADICALE_DURATION:-$DURATION}
RADICALE_TAIL=${RADICALE_TAIL:-40}
RADICALE=${RADICALE:-1}
N_BIG=${N_BIG:-100000}
TIMEOUT=${TIMEOUT:-20m}

repo=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$repo/bench/out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# say prints a phase, with the time and the machine's load average (other
# work on the machine skews the figures).
say() { printf '\n== %s (load %s)  %s\n' "$(date +%H:%M:%S)" "$(cut -d' ' -f1 /proc/loadavg)" "$*"; }
die() { printf 'bench/run.sh: %s\n' "$*" >&2; exit 1; }

# --- processes and clean-up -------------------------------------------------

work=$(mktemp -d "${TMPDIR:-/tmp}/calgate-bench.XXXXXX")
pids=()

# stop PID: SIGINT, then SIGKILL after 30s; waits for it and forgets it
# (so that clean-up never signals a reused process id).
stop() {
	local pid=$1 i rest=()
	if kill -INT "$pid" 2>/dev/null; then
		for ((i = 0; i < 300; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
	for i in "${pids[@]}"; do
		[[ $i == "$pid" ]] || rest+=("$i")
	done
	pids=("${rest[@]}")
}

cleanup() {
	local pid
	for pid in "${pids[@]}"; do
		stop "$pid"
	done
	if [[ ${KEEP_WORK:-} == 1 ]]; then
		echo "bench/run.sh: kept $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_http URL SECONDS [any]: until URL answers 200 (or anything, with
# "any"), or fail.
wait_http() {
	local url=$1 secs=$2 any=${3:-} i code
	for ((i = 0; i < secs * 20; i++)); do
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
		if [[ $code == 200 || ($any == any && $code != 000) ]]; then
			return 0
		fi
		sleep 0.05
	done
	return 1
}

# --- prerequisites -----------------------------------------------------------

as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }
apt_install() {
	say "installing $* with apt-get"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" ||
		{ as_root apt-get update -q && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; }
}
command -v curl >/dev/null || apt_install curl
[[ $RADICALE != 1 || -x /usr/bin/radicale ]] || apt_install radicale
command -v go >/dev/null || die "go is not installed (calgate needs Go 1.26)"

say "building calgate and calgate-bench into $work"
(cd "$repo" && go build -o "$work/bin/calgate" ./cmd/calgate && go build -o "$work/bin/calgate-bench" ./cmd/calgate-bench)
calgate=$work/bin/calgate
bench=$work/bin/calgate-bench

password=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
hash=$(printf '%s\n' "$password" | "$calgate" hash-password)
export CALGATE_BENCH_PASSWORD=$password   # read by calgate-bench: no password in the process list
export CALGATE_BENCH_FEED_TOKENS=$token   # read by calgate (tokens_env)

# calgate_config DIR PORT: a config with alice, her calendar bench and the
# feed bench over it, data in DIR.
calgate_config() {
	mkdir -p "$1"
	cat >"$1/gateway.yaml" <<EOF
listen: "127.0.0.1:$2"
data: "$1/calgate.db"
users:
  - name: alice
    password_hash: "$hash"
    calendars:
      - id: bench
        name: Bench
feeds:
  - name: bench
    calendars: [alice/bench]
    tokens_env: CALGATE_BENCH_FEED_TOKENS
EOF
}

# start_calgate DIR PORT: starts calgate and sets calgate_pid.
start_calgate() {
	"$calgate" serve -config "$1/gateway.yaml" >>"$1/calgate.log" 2>&1 &
	calgate_pid=$!
	pids+=("$calgate_pid")
	wait_http "http://127.0.0.1:$2/readyz" 60 || die "calgate did not get ready; see $1/calgate.log"
}

# run_bench NAME ARGS...: calgate-bench with its table on the terminal and
# in OUT/NAME.txt; a failed check is reported and the script goes on.
run_bench() {
	local name=$1
	shift
	local rc=0
	"$bench" "$@" 2>&1 | tee "$OUT/$name.txt" || rc=$?
	if [[ $rc != 0 ]]; then
		echo "bench/run.sh: $name: calgate-bench failed (exit $rc), see the FAILED lines above and $OUT/$name.txt"
		failed+=("$name")
	fi
}
failed=()
rm -f "$OUT"/*.json "$OUT"/*.txt "$OUT"/*.md "$OUT"/*.log

# --- calgate at N --------------------------------------------------------------

port=$("$bench" free-port)
calgate_config "$work/calgate" "$port"
say "calgate: starting on 127.0.0.1:$port"
start_calgate "$work/calgate" "$port"
base=http://127.0.0.1:$port
export CALGATE_BENCH_FEED="$base/feeds/bench.ics?token=$token"   # read by calgate-bench: no token in the process list
say "calgate: calgate-bench at N=$N, c=$C, $ROUNDS rounds of $DURATION, with the feed $base/feeds/bench.ics?token=REDACTED"
run_bench calgate -url "$base/" -user alice -calendar bench -n "$N" -c "$C" -rounds "$ROUNDS" \
	-duration "$DURATION" -timeout "$TIMEOUT" -pid "$calgate_pid" -keep -json "$OUT/calgate.json"

say "limits: a trivial Go server of calgate's bytes (one object, the whole collection, the feed), and bbolt commits"
cal=$base/dav/calendars/alice/bench
run_bench limits limits -object "$cal/calgate-bench-1-00000.ics" -collection "$cal/" -user alice \
	-c "$C" -rounds "$ROUNDS" -duration "$DURATION" -timeout "$TIMEOUT" -dir "$work" -json "$OUT/limits.json"
unset CALGATE_BENCH_FEED
say "calgate: stopping"
stop "$calgate_pid"
cp "$work/calgate/calgate.log" "$OUT/calgate.log"

# --- Radicale at N -------------------------------------------------------------

if [[ $RADICALE == 1 ]]; then
rport=$("$bench" free-port)
mkdir -p "$work/radicale"
printf 'alice:%s\n' "$password" >"$work/radicale/users"
cat >"$work/radicale/config" <<EOF
[server]
hosts = 127.0.0.1:$rport
timeout = 3600
max_content_length = 2000000000
[auth]
type = htpasswd
htpasswd_filename = $work/radicale/users
htpasswd_encryption = plain
[rights]
type = owner_only
[storage]
filesystem_folder = $work/radicale/collections
[web]
type = none
[logging]
level = warning
EOF
say "Radicale $(/usr/bin/radicale --version 2>/dev/null || echo '?'): starting on 127.0.0.1:$rport"
HOME=$work/radicale /usr/bin/radicale --config "$work/radicale/config" >>"$work/radicale/radicale.log" 2>&1 &
radicale_pid=$!
pids+=("$radicale_pid")
wait_http "http://127.0.0.1:$rport/" 60 any || die "Radicale did not answer; see $work/radicale/radicale.log"
tail=$((RADICALE_TAIL < N ? RADICALE_TAIL : N))
say "Radicale: calgate-bench at N=$N ($((N - tail)) in one PUT of the calendar, $tail by PUT), c=$C, $ROUNDS rounds of $RADICALE_DURATION"
run_bench radicale -url "http://127.0.0.1:$rport/" -user alice -calendar bench -n "$N" -bulk "$((N - tail))" -c "$C" \
	-rounds "$ROUNDS" -duration "$RADICALE_DURATION" -timeout "$TIMEOUT" -pid "$radicale_pid" -json "$OUT/radicale.json"
say "Radicale: stopping"
stop "$radicale_pid"
cp "$work/radicale/radicale.log" "$OUT/radicale.log"
else
	say "Radicale: skipped (RADICALE=0)"
fi

# --- calgate at N_BIG ------------------------------------------------------------

big=()
if ((N_BIG > 0)); then
	bport=$("$bench" free-port)
	calgate_config "$work/calgate-big" "$bport"
	say "calgate (large): starting on 127.0.0.1:$bport with a fresh data file"
	start_calgate "$work/calgate-big" "$bport"
	say "calgate (large): loading $N_BIG events, then the one-month query"
	run_bench calgate-100k -url "http://127.0.0.1:$bport/" -user alice -calendar bench -n "$N_BIG" -c "$C" \
		-rounds "$ROUNDS" -duration "$DURATION" -timeout "$TIMEOUT" -ops query_month -keep -json "$OUT/calgate-100k.json"
	stop "$calgate_pid"
	say "calgate (large): start-up to /readyz 200 on the $N_BIG-event data file, $ROUNDS times"
	run_bench startup-100k startup -readyz "http://127.0.0.1:$bport/readyz" -rounds "$ROUNDS" -log "$work/calgate-big/calgate.log" \
		-json "$OUT/startup-100k.json" -- "$calgate" serve -config "$work/calgate-big/gateway.yaml"
	cp "$work/calgate-big/calgate.log" "$OUT/calgate-100k.log"
	big=(-calgate-100k "$OUT/calgate-100k.json" -startup "$OUT/startup-100k.json")
fi

# --- the table -------------------------------------------------------------------

say "results: N=$N, c=$C, medians of $ROUNDS rounds"
opt=()
for f in radicale limits; do
	[[ -s $OUT/$f.json ]] && opt+=("-$f" "$OUT/$f.json")
done
for ((i = 0; i < ${#big[@]}; i += 2)); do
	[[ -s ${big[i + 1]} ]] && opt+=("${big[i]}" "${big[i + 1]}")
done
[[ -s $OUT/calgate.json ]] || die "no results of calgate; see $OUT/calgate.txt"
"$bench" report -calgate "$OUT/calgate.json" "${opt[@]}" -targets "$repo/bench/targets.txt" -md "$OUT/table.md" | tee "$OUT/table.txt"
echo
echo "bench/run.sh: results in $OUT (table.txt, table.md, *.json, *.txt, logs)"
if ((${#failed[@]} > 0)); then
	echo "bench/run.sh: failed checks in: ${failed[*]} (WRONG in the table)"
fi

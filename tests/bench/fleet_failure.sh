#!/usr/bin/env bash
# fleet_failure.sh - a worker failure under steady load, end to end: C
# closed-loop clients (`fleet_client load`, one keep-alive connection each)
# POST a sample PNG to /v1/classify on a 4-worker fleet for D seconds; at
# --kill-at one worker is SIGKILLed, at --restart-at it is started again on
# a new port and re-registered (POST /admin/devices). Every request is
# logged (start, latency, status, coverage, failed devices, partition
# version), and so are the gateway's events (GET /admin/events). The report
# gives detection time (kill -> DOWN event), time to full coverage (kill ->
# first answer with coverage 1.0 on a new version), time to rejoin
# (restart -> first answer on a version holding the worker again), p50/p99
# per phase and failed requests, and plots latency, coverage and throughput
# over time with markers for kill, DOWN, repartition, restart and rejoin.
# Writes tests/bench/results/fleet_failure.md and .png (and keeps the raw
# data in tests/bench/work/fleet-failure/). Not part of the test suite.
#
# usage: tests/bench/fleet_failure.sh [--clients C] [--duration S]
#          [--kill-at S] [--restart-at S] [--workers N] [--victim I]
#          [--model M] [--repartition-after-ms MS] [--health-interval-ms MS]
#   defaults: 8 clients, 60 s, kill at 15 s, restart at 35 s, 4 workers,
#   victim w2, fmnist-vgg; the gateway runs with its own defaults (robustdice
#   ratio 0.25 standby, mean imputation, --repartition-after-ms 10000,
#   --health-interval-ms 2000, --stage-timeout-ms 2000) unless overridden.
# Environment: BUILD_DIR (default build/), DF_MODELS_DIR (default models/).
# Needs /usr/bin/python3 with python3-matplotlib for the report.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
clients=8
duration=60
kill_at=15
restart_at=35
workers=4
victim=2
model=fmnist-vgg
gw_extra=()
cmdline="tests/bench/fleet_failure.sh $*"
while [ $# -gt 0 ]; do
	case "$1" in
	--clients) clients=$2; shift ;;
	--duration) duration=$2; shift ;;
	--kill-at) kill_at=$2; shift ;;
	--restart-at) restart_at=$2; shift ;;
	--workers) workers=$2; shift ;;
	--victim) victim=$2; shift ;;
	--model) model=$2; shift ;;
	--repartition-after-ms | --health-interval-ms) gw_extra+=("$1" "$2"); shift ;;
	-h | --help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "fleet_failure.sh: unknown option '$1'" >&2; exit 2 ;;
	esac
	shift
done
if ! [ "$kill_at" -lt "$restart_at" ] || ! [ "$restart_at" -lt "$duration" ] ||
	! [ "$victim" -ge 1 ] || ! [ "$victim" -le "$workers" ]; then
	echo "fleet_failure.sh: need kill-at < restart-at < duration and 1 <= victim <= workers" >&2
	exit 2
fi
. "$here/bench_lib.sh"
models=$bench_models
client=$bench_client
[ -f "$models/$model/model.json" ] || bench_die "no model $models/$model"
/usr/bin/python3 -c 'import matplotlib' 2>/dev/null ||
	bench_die "needs /usr/bin/python3 with matplotlib (apt-get install python3-matplotlib)"
bench_setup fleet-failure "$bench_gateway" "$bench_worker" "$bench_client"
run=$bench_run
export DICEFLEET_ADMIN_TOKEN=fleet-failure-bench-token
auth=(-H "Authorization: Bearer $DICEFLEET_ADMIN_TOKEN")
now_ms() { date +%s%3N; }

# start_worker I: worker wI on an ephemeral port; sets wpid[I], wurl[I].
declare -A wpid wurl
start_worker() {
	bench_start_worker "w$1" "w$1"
	wpid[$1]=$BENCH_PID
	wurl[$1]=$BENCH_URL
}
flags=()
for ((i = 1; i <= workers; i++)); do
	start_worker $i
	flags+=(--worker "w$i=${wurl[$i]}")
done
bench_start_gateway gw --model "$model" --log-level info "${gw_extra[@]}" "${flags[@]}"
url=$BENCH_URL
curl -s "${auth[@]}" "$url/admin/partition" >"$run/partition.before.json"

image=$root/models/samples/0000-ankle-boot.png
# Warm-up (engine caches, connections), not recorded.
"$client" load --url "$url" --model "$model" --image "$image" --clients "$clients" \
	--requests $((clients * 20)) >/dev/null
echo "fleet_failure: $clients clients for $duration s against $url; kill w$victim at $kill_at s, restart at $restart_at s" >&2
"$client" load --url "$url" --model "$model" --image "$image" --clients "$clients" \
	--duration-s "$duration" --out "$run/load.jsonl" >"$run/load.json" 2>"$run/load.err" &
load_pid=$!
bench_pids+=($load_pid)
t_launch=$(now_ms)
sleep_until() { # sleep_until S: until S seconds after the load's launch
	local left=$(($1 * 1000 - ($(now_ms) - t_launch)))
	[ "$left" -gt 0 ] && sleep "$(printf '%d.%03d' $((left / 1000)) $((left % 1000)))"
	return 0
}
sleep_until "$kill_at"
t_kill=$(now_ms)
kill -KILL "${wpid[$victim]}"
wait "${wpid[$victim]}" 2>/dev/null || true
t_reaped=$(now_ms)
echo "fleet_failure: killed w$victim" >&2
sleep_until "$restart_at"
t_restart=$(now_ms)
start_worker "$victim"
code=$(curl -s -o "$run/register.json" -w '%{http_code}' "${auth[@]}" -X POST \
	--data-binary "{\"id\": \"w$victim\", \"url\": \"${wurl[$victim]}\"}" "$url/admin/devices" || true)
t_registered=$(now_ms)
echo "fleet_failure: restarted w$victim at ${wurl[$victim]} (POST /admin/devices: HTTP $code)" >&2
load_rc=0
wait "$load_pid" || load_rc=$?
curl -s "${auth[@]}" "$url/admin/events?limit=1000" >"$run/events.json"
curl -s "${auth[@]}" "$url/admin/partition" >"$run/partition.after.json"
cat >"$run/marks.json" <<EOF
{"kill_unix_ms": $t_kill, "reaped_unix_ms": $t_reaped, "restart_unix_ms": $t_restart,
 "registered_unix_ms": $t_registered, "register_status": "$code", "victim": "w$victim",
 "load_exit": $load_rc, "clients": $clients, "duration_s": $duration, "workers": $workers,
 "model": "$model", "gateway_flags": "${gw_extra[*]}", "cmdline": "$cmdline"}
EOF
/usr/bin/python3 "$here/fleet_failure_plot.py" "$run" "$here/results/fleet_failure"
echo "fleet_failure: wrote $here/results/fleet_failure.md and .png" >&2

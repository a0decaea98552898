#!/usr/bin/env bash
# fleet_load.sh - sustained load on a 4-worker fleet: 32 concurrent clients
# POST a sample PNG to /v1/classify for 20 s (wrk, Debian package `wrk`,
# with tests/bench/fleet_load.lua). Zero errors are expected: any
# connection error, timeout or non-200 answer fails the run. Writes
# tests/bench/results/fleet_load.md.
#
# usage: tests/bench/fleet_load.sh [--connections C] [--duration S]
#                                  [--workers N] [--model M] [--http-threads T]
#   defaults: 32 connections, 20 s, 4 workers, fmnist-vgg, gateway
#   --http-threads 8 (concurrent inferences; the rest queue for a runner)
# Environment: BUILD_DIR (default build/), DF_MODELS_DIR (default models/).
#
# Workers run with --threads 1 (4 workers, a gateway and wrk share the
# machine's cores, as edge devices would not share them; the numbers are a
# floor for real devices). Imputation is the default (mean, calibrated at
# start-up); the partition is the default (robustdice, ratio 0.25).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
connections=32
duration=20
workers=4
model=fmnist-vgg
http_threads=8
cmdline="tests/bench/fleet_load.sh $*"
while [ $# -gt 0 ]; do
	case "$1" in
	--connections) connections=$2; shift ;;
	--duration) duration=$2; shift ;;
	--workers) workers=$2; shift ;;
	--model) model=$2; shift ;;
	--http-threads) http_threads=$2; shift ;;
	-h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "fleet_load.sh: unknown option '$1'" >&2; exit 2 ;;
	esac
	shift
done
. "$here/bench_lib.sh"
models=$bench_models
command -v wrk >/dev/null || bench_die "needs wrk (apt-get install wrk)"
[ -f "$models/$model/model.json" ] || bench_die "no model $models/$model"
bench_setup fleet-load "$bench_gateway" "$bench_worker"
run=$bench_run

flags=()
for ((i = 1; i <= workers; i++)); do
	bench_start_worker "w$i" "w$i"
	flags+=(--worker "w$i=$BENCH_URL")
done
bench_start_gateway gw --model "$model" --http-threads "$http_threads" \
	--log-level warn "${flags[@]}"
url=$BENCH_URL

image=$root/models/samples/0000-ankle-boot.png
# Warm-up (engine caches, connections), not counted.
FLEET_LOAD_IMAGE=$image wrk -t 2 -c "$connections" -d 2s --timeout 10s \
	-s "$here/fleet_load.lua" "$url" >/dev/null
curl -s "$url/metrics" >"$run/metrics.before"
echo "fleet_load: $connections connections for $duration s against $url" >&2
FLEET_LOAD_IMAGE=$image wrk -t 2 -c "$connections" -d "${duration}s" --timeout 10s \
	--latency -s "$here/fleet_load.lua" "$url" >"$run/wrk.txt"
curl -s "$url/metrics" >"$run/metrics.after"
tail -1 "$run/wrk.txt" >"$run/wrk.json"
cat "$run/wrk.txt" >&2

python3 - "$run" "$here/results/fleet_load.md" "$cmdline" "$model" "$workers" \
	"$connections" "$duration" "$http_threads" <<'EOF'
import json, os, sys, time
run, out, cmdline, model, workers, conns, duration, http_threads = sys.argv[1:9]
w = json.loads(open(os.path.join(run, "wrk.json")).read())
def metric(name, which):
    total = 0.0
    for line in open(os.path.join(run, "metrics." + which)):
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total
def delta(name):
    return metric(name, "after") - metric(name, "before")
inf = delta("dicefleet_inferences_total")
degraded = delta("dicefleet_degraded_total")
wire = delta("dicefleet_wire_bytes_total")
failed_calls = delta("dicefleet_stage_calls_total") - delta('dicefleet_stage_calls_total{result="ok"}')
errors = sum(w["errors"].values()) + w["non_200"]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
lines = [
    "# Fleet under load",
    "",
    f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores ({cpu}) with",
    f"`{cmdline.strip()}`: {conns} concurrent connections (wrk, 2 threads) POSTing",
    f"`models/samples/0000-ankle-boot.png` to `/v1/classify` for {duration} s; gateway and",
    f"{workers} workers (`--threads 1`) of {model} on loopback, robustdice ratio 0.25,",
    f"{http_threads} concurrent inferences at the gateway; everything shares the same cores.",
    "",
    "| throughput (req/s) | p50 ms | p90 ms | p99 ms | max ms | requests | errors | non-200 | degraded answers | failed stage calls | wire bytes / inference |",
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    f"| {w['rps']:.1f} | {w['p50_ms']:.2f} | {w['p90_ms']:.2f} | {w['p99_ms']:.2f} | {w['max_ms']:.2f} | "
    f"{w['requests']} | {sum(w['errors'].values())} | {w['non_200']} | {degraded:.0f} | {failed_calls:.0f} | "
    f"{wire / inf if inf else 0:,.0f} |",
    "",
    f"wrk error breakdown: {json.dumps(w['errors'])}.",
    "",
]
open(out, "w").write("\n".join(lines))
print(json.dumps({"rps": w["rps"], "p50_ms": w["p50_ms"], "p90_ms": w["p90_ms"], "p99_ms": w["p99_ms"],
                  "errors": errors, "degraded": degraded}))
sys.exit(1 if errors else 0)
EOF
echo "fleet_load: wrote $here/results/fleet_load.md" >&2

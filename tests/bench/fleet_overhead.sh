#!/usr/bin/env bash
# fleet_overhead.sh - what distribution costs: a fleet of ONE worker (or
# N: --workers) (gateway + dicefleet-worker(s) on loopback, every stage a
# binary HTTP round trip per worker) against `dicefleet run --repeat` in one
# process, on each shipped model and on torchvision resnet18 (random
# weights). Writes tests/bench/results/fleet_overhead.md (1 worker) or
# tests/bench/results/fleet_overhead.Nw.md (N workers).
#
# usage: tests/bench/fleet_overhead.sh [--rounds K] [--repeat R]
#                                      [--threads T] [--models "..."]
#                                      [--workers N] [--out FILE]
#   --rounds K   interleaved rounds (default 5): in each round every model
#                is timed both ways, back to back, alternating which first
#   --repeat R   timed requests / runs per measurement (default 50)
#   --threads T  engine threads of the worker and of `dicefleet run`
#                (default 1; the gateway's own stages use 1)
#   --models M   default "fmnist-vgg fmnist-resnet fmnist-mobilenet resnet18"
#   --workers N  workers per fleet (default 1); with N > 1 the gateway's
#                default partition (robustdice, standby replicas) sends N
#                calls per stage, each with the whole stage input
#   --out FILE   results file (default as above)
# Environment: BUILD_DIR (default build/), DF_MODELS_DIR (default models/).
#
# The fleet is timed end to end as a client sees it: POST /v1/classify of a
# PNG (decode, preprocess, every stage call, softmax, JSON) on a keep-alive
# connection; `dicefleet run` times the engine alone on the same
# preprocessed tensor. Bytes on the wire per inference come from the
# gateway's /metrics (HTTP headers and bodies of stage calls, both ways).
# resnet18 is exported with /usr/bin/python3 (Debian python3-torch and
# python3-torchvision; seed 0, opset 13) into tests/bench/work/ unless there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$here/work
results=$here/results
rounds=5
repeat=50
threads=1
models="fmnist-vgg fmnist-resnet fmnist-mobilenet resnet18"
workers=1
out=""
cmdline="tests/bench/fleet_overhead.sh $*"
while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) rounds=$2; shift ;;
	--repeat) repeat=$2; shift ;;
	--threads) threads=$2; shift ;;
	--models) models=$2; shift ;;
	--workers) workers=$2; shift ;;
	--out) out=$2; shift ;;
	-h | --help) sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "fleet_overhead.sh: unknown option '$1'" >&2; exit 2 ;;
	esac
	shift
done
case "$workers" in
'' | *[!0-9]* | 0) echo "fleet_overhead.sh: --workers needs a positive integer" >&2; exit 2 ;;
esac
if [ -z "$out" ]; then
	out=$results/fleet_overhead.md
	[ "$workers" = 1 ] || out=$results/fleet_overhead.${workers}w.md
fi
. "$here/bench_lib.sh"
shipped=$bench_models
dicefleet=$bench_build/services/cli/dicefleet
client=$bench_client
name=fleet-overhead
[ "$workers" = 1 ] || name=fleet-overhead-${workers}w
bench_setup "$name" "$dicefleet" "$bench_gateway" "$bench_worker" "$client"
run=$bench_run
mkdir -p "$(dirname "$out")"

# ---- models, images, inputs -------------------------------------------------
fleet_models=$run/models
mkdir -p "$fleet_models"
for m in $models; do
	mkdir -p "$run/img-$m"
	if [ "$m" = resnet18 ]; then
		if [ ! -f "$work/resnet18.onnx" ]; then
			/usr/bin/python3 "$here/export_torchvision.py" "$work" resnet18
		fi
		d=$fleet_models/resnet18
		mkdir -p "$d"
		cp "$work/resnet18.onnx" "$d/model.onnx"
		seq 0 999 | sed 's/^/class-/' >"$d/labels.txt"
		cat >"$d/model.json" <<EOF
{"name": "resnet18", "onnx": "model.onnx",
 "sha256": "$(sha256sum "$d/model.onnx" | cut -d' ' -f1)",
 "input": {"name": "input", "shape": [1, 3, 224, 224], "color": "rgb",
           "resize": [224, 224], "mean": [0.485, 0.456, 0.406],
           "std": [0.229, 0.224, 0.225]},
 "output": {"name": "logits"}, "labels": "labels.txt"}
EOF
		# A 224x224 RGB PNG of seeded noise (stdlib only).
		python3 - "$run/img-$m/noise224.png" <<'EOF'
import random, struct, sys, zlib
random.seed(0)
w = h = 224
raw = b"".join(b"\0" + bytes(random.randrange(256) for _ in range(3 * w)) for _ in range(h))
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
EOF
	else
		if [ ! -f "$shipped/$m/model.json" ]; then
			echo "fleet_overhead.sh: model $m missing in $shipped" >&2
			exit 1
		fi
		ln -sfn "$shipped/$m" "$fleet_models/$m"
		cp "$root/models/samples/0000-ankle-boot.png" "$run/img-$m/"
	fi
	"$client" inputs --models "$fleet_models" --model "$m" \
		--samples "$run/img-$m" --out "$run/img-$m" >/dev/null
done

# ---- one 1-worker fleet per model -------------------------------------------
declare -A url gw_pid wk_pid
hz=$(getconf CLK_TCK)
# cpu_ticks PID...: user + system time of processes, in clock ticks.
cpu_ticks() {
	local p
	for p in "$@"; do cat "/proc/$p/stat"; done | awk '{t += $14 + $15} END {print t}'
}
for m in $models; do
	wargs=()
	wk_pid[$m]=""
	for ((k = 1; k <= workers; k++)); do
		bench_start_worker "$m.w$k" "w$k-$m" --models "$fleet_models" \
			--threads "$threads"
		wk_pid[$m]="${wk_pid[$m]} $BENCH_PID"
		wargs+=(--worker "w$k-$m=$BENCH_URL")
	done
	bench_start_gateway "$m.gw" --models "$fleet_models" --model "$m" \
		--impute zero --log-level warn "${wargs[@]}"
	gw_pid[$m]=$BENCH_PID
	url[$m]=$BENCH_URL
done
echo "fleet_overhead: fleets ready; $rounds rounds x $repeat requests" >&2

# ---- interleaved rounds -------------------------------------------------------
raw=$run/raw.jsonl
: >"$raw"
for ((r = 1; r <= rounds; r++)); do
	for m in $models; do
		npy=$(ls "$run/img-$m"/*.npy | head -1)
		img=$(ls "$run/img-$m"/*.png | head -1)
		onnx=$fleet_models/$m/model.onnx
		order="run staged fleet"
		[ $((r % 2)) = 0 ] && order="fleet staged run"
		for what in $order; do
			if [ "$what" = run ]; then
				j=$("$dicefleet" run "$onnx" --input "$npy" --output-dir "$run/out" \
					--repeat "$repeat" --threads "$threads" 2>/dev/null)
			elif [ "$what" = staged ]; then
				j=$("$client" staged --models "$fleet_models" --model "$m" \
					--image "$img" --repeat "$repeat" --threads "$threads")
			else
				g0=$(cpu_ticks "${gw_pid[$m]}")
				# shellcheck disable=SC2086 # a list of pids
				w0=$(cpu_ticks ${wk_pid[$m]})
				j=$("$client" latency --url "${url[$m]}" --model "$m" \
					--image "$img" --repeat "$repeat")
				g1=$(cpu_ticks "${gw_pid[$m]}")
				# shellcheck disable=SC2086
				w1=$(cpu_ticks ${wk_pid[$m]})
				# CPU per request (3 warm-up requests included).
				j="${j%\}},\"gw_cpu_ms\":$(((g1 - g0) * 1000000 / hz / (repeat + 3)))e-3,\"worker_cpu_ms\":$(((w1 - w0) * 1000000 / hz / (repeat + 3)))e-3}"
			fi
			echo "{\"round\":$r,\"model\":\"$m\",\"what\":\"$what\",\"r\":$j}" >>"$raw"
		done
	done
	echo "fleet_overhead: round $r/$rounds done" >&2
done
for m in $models; do
	curl -s "${url[$m]}/metrics" >"$run/$m.metrics"
done

# ---- report -------------------------------------------------------------------
python3 - "$raw" "$run" "$out" "$cmdline" "$threads" \
	"$repeat" "$rounds" "$workers" $models <<'EOF'
import json, os, platform, statistics, subprocess, sys, time
raw, run, out, cmdline, threads, repeat, rounds, workers = sys.argv[1:9]
models = sys.argv[9:]
nw = int(workers)
rows = [json.loads(l) for l in open(raw)]
def metric(m, name):
    total = 0.0
    for line in open(os.path.join(run, m + ".metrics")):
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total
cpu = "unknown"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
lines = [
    "# Fleet overhead: " + ("1 worker" if nw == 1 else f"{nw} workers") + " vs one process",
    "",
    f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores ({cpu}),",
    f"with `{cmdline.strip()}`: {rounds} interleaved rounds of {repeat} timed",
    f"requests/runs per model, engine threads {threads} (worker and `dicefleet run`).",
    "",
    "* **single process**: `dicefleet run MODEL.onnx --input X.npy --repeat R`, the engine alone",
    "  on the whole graph;",
    "* **staged in-process**: the same tensor through the gateway's runner and the in-process",
    "  simulator with one device (`fleet_client staged`): the fleet's stage split and per-stage",
    "  engines without any network, so the cost of staging and of the network separate;",
    "* **fleet**: gateway + " + ("1 worker" if nw == 1 else f"{nw} workers") + " on loopback, `POST /v1/classify` of a PNG on a keep-alive",
    "  connection, timed by the client (decode, preprocess, one binary HTTP round trip per",
    "  distributed stage" + ("" if nw == 1 else " and worker (default robustdice partition, standby\n  replicas)")
    + ", the logits layer on the gateway, softmax, JSON);",
    "* medians of the per-round medians; the ratio is fleet / single process;",
    "* wire bytes: stage calls' HTTP headers and bodies, both directions, per inference",
    "  (gateway `/metrics`, exact f32 tensors; files before 2026-11-26 12:50 UTC counted",
    "  request bodies below 64 KB twice, so their figures for the small models are higher);",
    "* CPU ms / inference: user + system time the gateway and the worker processes spent",
    "  per request while the client ran (/proc/PID/stat, clock ticks, averaged over all",
    "  rounds; about 0.04 ms resolution at these counts), i.e. where the fleet's time goes;",
    "  the single-process figure is the engine's wall time (1 thread, so about its CPU time).",
    "",
    "| model | single process median ms | staged in-process median ms | fleet median ms | fleet p90 ms | ratio fleet / single | gateway CPU ms / inference | " + ("worker" if nw == 1 else "workers' (sum)") + " CPU ms / inference | wire bytes / inference | stage calls / inference |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
]
summary = {}
for m in models:
    run_ms = [r["r"]["median_ms"] for r in rows if r["model"] == m and r["what"] == "run"]
    fl_ms = [r["r"]["median_ms"] for r in rows if r["model"] == m and r["what"] == "fleet"]
    fl_p90 = [r["r"]["p90_ms"] for r in rows if r["model"] == m and r["what"] == "fleet"]
    gw_cpu = [r["r"]["gw_cpu_ms"] for r in rows if r["model"] == m and r["what"] == "fleet"]
    wk_cpu = [r["r"]["worker_cpu_ms"] for r in rows if r["model"] == m and r["what"] == "fleet"]
    inf = metric(m, "dicefleet_inferences_total")
    wire = metric(m, "dicefleet_wire_bytes_total")
    calls = metric(m, "dicefleet_stage_calls_total")
    st_ms = [r["r"]["median_ms"] for r in rows if r["model"] == m and r["what"] == "staged"]
    a, b = statistics.median(run_ms), statistics.median(fl_ms)
    st = statistics.median(st_ms)
    per = wire / inf if inf else 0
    summary[m] = {"run_ms": a, "staged_ms": st, "fleet_ms": b, "ratio": b / a, "wire_bytes": per}
    lines.append(f"| {m} | {a:.2f} | {st:.2f} | {b:.2f} | {statistics.median(fl_p90):.2f} | {b / a:.2f}x | "
                 f"{statistics.mean(gw_cpu):.2f} | {statistics.mean(wk_cpu):.2f} | "
                 f"{per:,.0f} | {calls / inf if inf else 0:.1f} |")
    summary[m].update(gw_cpu_ms=statistics.mean(gw_cpu), worker_cpu_ms=statistics.mean(wk_cpu))
lines += ["", f"Raw per-round figures: `tests/bench/work/{os.path.basename(run)}/raw.jsonl` (not committed).", ""]
open(out, "w").write("\n".join(lines))
print(json.dumps(summary))
EOF
echo "fleet_overhead: wrote $out" >&2

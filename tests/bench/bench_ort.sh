#!/usr/bin/env bash
# bench_ort.sh - latency and accuracy of `dicefleet run` (oneDNN engine)
# against ONNX Runtime on torchvision models; writes
# tests/bench/results/engine_vs_ort.{md,json}.
#
# usage: tests/bench/bench_ort.sh [--rounds K] [--repeat R] [--threads "1 2"]
#                                 [--models "resnet18 mobilenet_v2 squeezenet1_1"]
#   --rounds K   interleaved rounds per model and thread count (default 7)
#   --repeat R   timed runs per process after one warm-up (default 30)
# Environment: BUILD_DIR (default build/) holds services/cli/dicefleet.
#
# Steps: (a) exports the models with /usr/bin/python3 (Debian python3-torch)
# into tests/bench/work/ unless present; (b) the fixed input comes with
# them; (c) installs onnxruntime-node there (ONNXRUNTIME_NODE_INSTALL=skip:
# the CPU library ships in the npm package); (d) for each round, model,
# thread count and configuration runs dicefleet and ORT back to back,
# alternating which goes first; (e) measures dicefleet's peak RSS and
# compares outputs, then bench_report.py writes the tables.
#
# Configurations above 1 thread: "default" runs both tools as shipped
# (dicefleet sets OMP_WAIT_POLICY=passive itself, common/runtime.c; ORT's
# pool spins); dicefleet also runs as "spin" (OMP_WAIT_POLICY=ACTIVE) and
# ORT as "nospin" (session.intra_op.allow_spinning = 0), so the report
# pairs as shipped, neither spinning and both spinning. With 1 thread
# there is no pool and only "default" runs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$here/work
results=$here/results
rounds=7
repeat=30
threads="1 2"
models="resnet18 mobilenet_v2 squeezenet1_1"
cmdline="tests/bench/bench_ort.sh $*"
while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) rounds=$2; shift ;;
	--repeat) repeat=$2; shift ;;
	--threads) threads=$2; shift ;;
	--models) models=$2; shift ;;
	-h | --help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench_ort.sh: unknown option '$1'" >&2; exit 2 ;;
	esac
	shift
done
build=${BUILD_DIR:-$root/build}
dicefleet=$build/services/cli/dicefleet
if [ ! -x "$dicefleet" ]; then
	echo "bench_ort.sh: $dicefleet not found (build first, or set BUILD_DIR)" >&2
	exit 1
fi
mkdir -p "$work" "$results"

# (a), (b): models and input
for m in $models; do
	if [ ! -f "$work/$m.onnx" ] || [ ! -f "$work/input.npy" ]; then
		/usr/bin/python3 "$here/export_torchvision.py" "$work" $models
		break
	fi
done

# (c): ONNX Runtime for node
if [ ! -d "$work/node_modules/onnxruntime-node" ]; then
	[ -f "$work/package.json" ] ||
		echo '{"name": "dicefleet-bench", "private": true}' >"$work/package.json"
	(cd "$work" && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit \
		--no-fund onnxruntime-node >/dev/null)
fi

tag() { # tool model threads round config: annotate a JSON line from stdin
	/usr/bin/python3 -c "import json,sys; r=json.loads(sys.stdin.read()); r.update(tool='$1', model='$2', threads_asked=$3, round=$4, config='$5'); print(json.dumps(r))"
}
run_df() { # model threads round config
	local envs=()
	[ "$4" = spin ] && envs=(OMP_WAIT_POLICY=ACTIVE)
	env "${envs[@]}" "$dicefleet" run "$work/$1.onnx" --input "$work/input.npy" \
		--threads "$2" --repeat "$repeat" --output-dir "$work/out_df_$1" \
		2>/dev/null | tag dicefleet "$@" >>"$work/raw.jsonl"
}
run_ort() { # model threads round config
	local envs=()
	[ "$4" = nospin ] && envs=(ORT_ALLOW_SPINNING=0)
	env "${envs[@]}" node "$here/ort_run.js" "$work/$1.onnx" "$work/input.npy" \
		"$2" "$repeat" "$work/out_ort_$1.npy" | tag onnxruntime "$@" \
		>>"$work/raw.jsonl"
}

# (d): interleaved rounds
: >"$work/raw.jsonl"
load=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq 1 "$rounds"); do
	for m in $models; do
		for t in $threads; do
			# dicefleet config:ORT config, run back to back
			pairs=default:default
			[ "$t" -gt 1 ] && pairs="default:default spin:nospin"
			for p in $pairs; do
				if [ $((r % 2)) -eq 1 ]; then
					run_df "$m" "$t" "$r" "${p%:*}"
					run_ort "$m" "$t" "$r" "${p#*:}"
				else
					run_ort "$m" "$t" "$r" "${p#*:}"
					run_df "$m" "$t" "$r" "${p%:*}"
				fi
			done
		done
	done
	echo "bench_ort.sh: round $r/$rounds done" >&2
done

# (e): peak RSS of one plain run, then the report
echo "{\"model\": \"_load\", \"load\": \"$load\"}" >"$work/rss.jsonl"
for m in $models; do
	/usr/bin/time -v "$dicefleet" run "$work/$m.onnx" --input "$work/input.npy" \
		--threads 1 --output-dir "$work/out_df_$m" 2>"$work/time_$m.txt" >/dev/null
	kb=$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$work/time_$m.txt")
	bytes=$(stat -c %s "$work/$m.onnx")
	awk -v m="$m" -v kb="$kb" -v b="$bytes" 'BEGIN { printf "{\"model\": \"%s\", \"peak_rss_mb\": %.1f, \"model_mb\": %.1f}\n", m, kb / 1024, b / 1048576 }' >>"$work/rss.jsonl"
done
/usr/bin/python3 "$here/bench_report.py" "$work" "$results" "$cmdline"

#!/usr/bin/env bash
# robustness_report.sh - sweeps the shipped models x partitioning methods x
# replication ratios x failures through `dicefleet eval` (in-process
# simulation through the gateway's request path) and writes
# tests/bench/results/robustness-<model>.jsonl, then robustness.md and PNG
# plots from every robustness-*.jsonl there.
#
# usage: tests/bench/robustness_report.sh [--images N] [--headline-images N]
#          [--models "a b"] [--quick] [--report-only]
#   --images N            test images per sweep evaluation (default 1000)
#   --headline-images N   test images for the headline rows (default 5000)
#   --quick               one model, fewer points (a smoke run, minutes)
#   --report-only         only rebuild robustness.md and the plots
# Needs a build in build/ (tests/run.sh makes one) and /usr/bin/python3
# with python3-matplotlib for the plots.
set -euo pipefail
cd "$(dirname "$0")/../.."

images=1000
headline=5000
models="fmnist-vgg fmnist-resnet fmnist-mobilenet"
quick=0
report_only=0
while [ $# -gt 0 ]; do
	case "$1" in
	--images) images=$2; shift ;;
	--headline-images) headline=$2; shift ;;
	--report-only) report_only=1 ;;
	--models) models=$2; shift ;;
	--quick) quick=1 ;;
	-h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "unknown option $1" >&2; exit 2 ;;
	esac
	shift
done

bin=${BUILD_DIR:-build}/services/cli/dicefleet
[ -x "$bin" ] || { echo "build first (tests/run.sh or cmake --build build)" >&2; exit 1; }
out=tests/bench/results
mkdir -p "$out"
if [ "$report_only" = 1 ]; then
	exec /usr/bin/python3 tests/bench/robustness_report.py "$out"
fi
ratios="0 0.1 0.25 0.5 1"
methods="sequential random layerwise robustdice"
imputes="mean"
if [ "$quick" = 1 ]; then
	models=${models%% *}
	ratios="0 0.25"
	images=500
	headline=1000
fi

total=0
run() { # run LABEL ARGS...: one eval, its JSON line appended with a label
	local label=$1; shift
	total=$((total + 1))
	printf '[%s] %-60s\n' "$(date +%H:%M:%S)" "$label $*" >&2
	local line
	line=$("$bin" eval "$@" 2>/dev/null | tail -n 1)
	printf '{"sweep":"%s","args":"%s","result":%s}\n' "$label" "$*" "${line:-null}" >>"$jsonl"
}

for m in $models; do
	dir=models/$m
	jsonl=$out/robustness-$m.jsonl
	: >"$jsonl"
	# headline: 4 devices, 1 failure, full test set; robustdice at 0.25
	# against importance-blind splits at ratio 0 and at the same 0.25
	for imp in zero mean recon; do
		for cfg in "sequential 0" "random 0" "sequential 0.25" "random 0.25" "robustdice 0.25"; do
			set -- $cfg
			run headline "$dir" --devices 4 --fail 1 --method "$1" --ratio "$2" --impute "$imp" --limit "$headline"
		done
	done
	run headline "$dir" --devices 4 --fail 1 --method robustdice --ratio 0.25 --impute mean --score act --limit "$headline"
	run headline "$dir" --devices 4 --fail 1 --method robustdice --ratio 0.25 --impute recon --score act --limit "$headline"
	run headline "$dir" --devices 4 --fail 1 --method robustdice --ratio 0.25 --impute mean --score var --limit "$headline"
	run headline "$dir" --devices 4 --fail 1 --method full --impute zero --limit "$headline"
	[ "$quick" = 1 ] && continue
	# ratio sweep: 4 devices, 1 and 2 failures; 8 devices, 1 failure
	for spec in "4 1" "4 2" "8 1"; do
		set -- $spec
		for meth in $methods; do
			for r in $ratios; do
				for imp in $imputes; do
					run sweep "$dir" --devices "$1" --fail "$2" --method "$meth" --ratio "$r" --impute "$imp" --limit "$images"
				done
			done
		done
		run sweep "$dir" --devices "$1" --fail "$2" --method full --impute zero --limit "$images"
	done
	# 2 of 4 failed: what ratio and copies keep >= 90%
	for c in 2 3; do
		for r in 0.25 0.5 0.75 1; do
			run copies "$dir" --devices 4 --fail 2 --method robustdice --ratio "$r" --copies "$c" --impute mean --limit "$images"
		done
	done
	# sensitivity-based budget vs flat at equal memory
	for r in 0.1 0.25 0.5; do
		for b in flat sensitivity; do
			run budget "$dir" --devices 4 --fail 1 --method robustdice --ratio "$r" --impute mean --budget "$b" --limit "$images"
		done
	done
done
echo "$total evaluations written to $out/robustness-*.jsonl" >&2
/usr/bin/python3 tests/bench/robustness_report.py "$out"

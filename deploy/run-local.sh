#!/usr/bin/env bash
# run-local.sh - a whole dicefleet fleet on this machine: builds what is
# missing, starts N workers and a gateway on 127.0.0.1, waits until the
# gateway is ready, classifies every sample image, then keeps serving in
# the foreground until Ctrl-C (or SIGTERM), which stops every process it
# started.
#
# usage: deploy/run-local.sh [options]
#   --workers N      workers to start (default 4)
#   --port P         gateway port (default 8080)
#   --model NAME     model to serve (default fmnist-vgg)
#   --models DIR     models directory (default models)
#   --method M       partition method (default robustdice)
#   --ratio R        replication ratio (default 0.25)
#   --build-dir DIR  build directory (default build)
#   --run-dir DIR    database, logs, pid files (default run; wiped at start)
#   --no-deps        do not run deploy/install-deps.sh
#   --no-samples     skip classifying models/samples/*.png
#   --once           stop after the samples instead of serving
# Every other DICEFLEET_* variable of dicefleet-gateway --help applies too.
set -euo pipefail
cd "$(dirname "$0")/.."

workers=4
port=8080
model=fmnist-vgg
models=models
method=robustdice
ratio=0.25
build_dir=build
run_dir=run
deps=1
samples=1
once=0
while [ $# -gt 0 ]; do
	case "$1" in
	--workers) workers=$2; shift ;;
	--port) port=$2; shift ;;
	--model) model=$2; shift ;;
	--models) models=$2; shift ;;
	--method) method=$2; shift ;;
	--ratio) ratio=$2; shift ;;
	--build-dir) build_dir=$2; shift ;;
	--run-dir) run_dir=$2; shift ;;
	--no-deps) deps=0 ;;
	--no-samples) samples=0 ;;
	--once) once=1 ;;
	-h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "run-local.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
	esac
	shift
done
case "$workers" in
'' | *[!0-9]*) echo "run-local.sh: --workers needs a number" >&2; exit 2 ;;
esac
if [ "$workers" -lt 1 ] || [ "$workers" -gt 64 ]; then
	echo "run-local.sh: --workers must be 1..64" >&2
	exit 2
fi
if [ ! -f "$models/$model/model.json" ]; then
	echo "run-local.sh: no model $models/$model (have: $(ls "$models" | tr '\n' ' '))" >&2
	exit 1
fi

# ---- build ------------------------------------------------------------------
gateway_bin="$build_dir/services/gateway/dicefleet-gateway"
worker_bin="$build_dir/services/worker/dicefleet-worker"
if [ "$deps" = 1 ]; then
	deploy/install-deps.sh
fi
# Configure every time (quick once configured): a build tree made before a
# target existed does not know it until CMake runs again.
if [ -f "$build_dir/CMakeCache.txt" ]; then
	cmake -S . -B "$build_dir" >/dev/null
else
	cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
echo "run-local: building dicefleet-gateway and dicefleet-worker in $build_dir/"
cmake --build "$build_dir" -j "$(nproc)" --target dicefleet-gateway dicefleet-worker >/dev/null

# ---- processes ---------------------------------------------------------------
rm -rf "$run_dir"
mkdir -p "$run_dir"
pids=()
stopping=0
cleanup() {
	[ "$stopping" = 1 ] && return
	stopping=1
	trap - INT TERM EXIT
	if [ ${#pids[@]} -gt 0 ]; then
		echo
		echo "run-local: stopping ${#pids[@]} processes"
		kill -TERM "${pids[@]}" 2>/dev/null || true
		local i
		for ((i = 0; i < 50; i++)); do
			local alive=0 p
			for p in "${pids[@]}"; do
				kill -0 "$p" 2>/dev/null && alive=1
			done
			[ "$alive" = 0 ] && break
			sleep 0.1
		done
		kill -KILL "${pids[@]}" 2>/dev/null || true
		wait 2>/dev/null || true
	fi
	if pgrep -P $$ >/dev/null 2>&1; then
		echo "run-local: processes left behind: $(pgrep -P $$ | tr '\n' ' ')" >&2
		exit 1
	fi
	echo "run-local: all stopped (logs in $run_dir/)"
}
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap cleanup EXIT

export DICEFLEET_LOG_LEVEL=${DICEFLEET_LOG_LEVEL:-info}
worker_flags=()
for ((i = 1; i <= workers; i++)); do
	"$worker_bin" --id "w$i" --bind 127.0.0.1 --port 0 \
		--port-file "$run_dir/w$i.port" --models "$models" --threads 1 \
		>"$run_dir/w$i.log" 2>&1 &
	pids+=($!)
done
for ((i = 1; i <= workers; i++)); do
	for ((t = 0; t < 200; t++)); do
		[ -s "$run_dir/w$i.port" ] && break
		sleep 0.05
	done
	if [ ! -s "$run_dir/w$i.port" ]; then
		echo "run-local: worker w$i did not start:" >&2
		tail -5 "$run_dir/w$i.log" >&2
		exit 1
	fi
	worker_flags+=(--worker "w$i=http://127.0.0.1:$(cat "$run_dir/w$i.port")")
done
echo "run-local: $workers workers up (logs $run_dir/w*.log)"

"$gateway_bin" --bind 127.0.0.1 --port "$port" --db "$run_dir/dicefleet.db" \
	--models "$models" --model "$model" --method "$method" --ratio "$ratio" \
	"${worker_flags[@]}" >"$run_dir/gateway.log" 2>&1 &
gw_pid=$!
pids+=($gw_pid)
url="http://127.0.0.1:$port"
echo -n "run-local: waiting for the gateway at $url "
for ((t = 0; t < 1200; t++)); do
	if curl -sf -o /dev/null "$url/v2/health/ready"; then
		break
	fi
	if ! kill -0 "$gw_pid" 2>/dev/null; then
		echo
		echo "run-local: the gateway stopped:" >&2
		tail -5 "$run_dir/gateway.log" >&2
		exit 1
	fi
	[ $((t % 10)) = 0 ] && echo -n "."
	sleep 0.1
done
echo
if ! curl -sf -o /dev/null "$url/v2/health/ready"; then
	echo "run-local: not ready after 120 s: $(curl -s "$url/v2/health/ready")" >&2
	exit 1
fi
echo "run-local: ready: $(curl -s "$url/v2/health/ready")"

# ---- samples ----------------------------------------------------------------
if [ "$samples" = 1 ] && ls models/samples/*.png >/dev/null 2>&1; then
	echo
	printf '%-24s %-14s %-14s %7s %8s\n' file "true label" predicted score coverage
	for f in models/samples/*.png; do
		answer=$(curl -s -F "image=@$f" "$url/v1/classify?top_k=1")
		truth=$(basename "$f" .png)
		truth=${truth#*-}
		python3 - "$f" "$truth" "$answer" <<'EOF' || echo "$(basename "$f") error: $answer"
import json, os, sys
f, truth, answer = sys.argv[1], sys.argv[2], sys.argv[3]
r = json.loads(answer)
if "error" in r:
    print(f"{os.path.basename(f):<24} {truth:<14} error: {r['error']['message']}")
else:
    p = r["predictions"][0]
    print(f"{os.path.basename(f):<24} {truth:<14} {p['label']:<14} {p['score']:7.3f} {r['coverage']:8.3f}")
EOF
	done
fi
[ "$once" = 1 ] && exit 0

echo
echo "run-local: serving $model on $url with $workers workers; Ctrl-C stops everything."
echo "  curl -F image=@models/samples/0000-ankle-boot.png '$url/v1/classify?top_k=3'"
echo "  curl $url/metrics"
wait "$gw_pid" || true
echo "run-local: the gateway exited; see $run_dir/gateway.log" >&2
exit 1

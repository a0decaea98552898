# fleet_lib.sh - helpers for the fleet integration tests (sourced after
# lib.sh): start workers and a gateway on 127.0.0.1 with ephemeral ports
# (--port 0 --port-file), wait for readiness, stop them, and never leave a
# process behind (every pid started here is killed on exit).
#
# Environment: DF_MODELS_DIR (default $DF_SOURCE_DIR/models).
GATEWAY="$DF_BUILD_DIR/services/gateway/dicefleet-gateway"
WORKER="$DF_BUILD_DIR/services/worker/dicefleet-worker"
FLEET_CLIENT="$DF_BUILD_DIR/tests/integration/fleet_client"
MODELS_DIR=${DF_MODELS_DIR:-$DF_SOURCE_DIR/models}
FLEET_PIDS=()
WORKER_PIDS=()
WORKER_ARGS=()
GW_PID=""
GW_URL=""

fleet_cleanup() {
	local p
	for p in "${FLEET_PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
	done
	for p in "${FLEET_PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$TEST_TMP"
}
trap fleet_cleanup EXIT

# wait_file FILE SECONDS: waits until FILE exists and is not empty.
wait_file() {
	local i
	for ((i = 0; i < $2 * 20; i++)); do
		[ -s "$1" ] && return 0
		sleep 0.05
	done
	return 1
}

# require_models NAME...: fails the test when a shipped model is missing.
require_models() {
	local m
	for m in "$@"; do
		if [ ! -f "$MODELS_DIR/$m/model.json" ]; then
			echo "FAIL: model $m missing in $MODELS_DIR" >&2
			exit 1
		fi
	done
}

# start_workers N [extra worker args...]: N workers w1..wN; fills
# WORKER_ARGS with --worker wI=URL.
start_workers() {
	local n=$1 i
	shift
	WORKER_PIDS=()
	WORKER_ARGS=()
	for ((i = 1; i <= n; i++)); do
		rm -f "$TEST_TMP/w$i.port"
		"$WORKER" --id "w$i" --bind 127.0.0.1 --port 0 \
			--port-file "$TEST_TMP/w$i.port" --models "$MODELS_DIR" \
			--threads 1 --log-level warn "$@" >>"$TEST_TMP/w$i.log" 2>&1 &
		WORKER_PIDS+=($!)
		FLEET_PIDS+=($!)
	done
	for ((i = 1; i <= n; i++)); do
		if ! wait_file "$TEST_TMP/w$i.port" 20; then
			echo "FAIL: worker w$i did not start: $(tail -5 "$TEST_TMP/w$i.log")" >&2
			exit 1
		fi
		WORKER_ARGS+=(--worker "w$i=http://127.0.0.1:$(cat "$TEST_TMP/w$i.port")")
	done
}

stop_workers() {
	local p
	for p in "${WORKER_PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${WORKER_PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	WORKER_PIDS=()
}

# start_gateway ARGS...: starts a gateway (ephemeral port, log in
# $TEST_TMP/gw.log) and waits up to 60 s for /v2/health/ready. Deadlines
# are generous and fixed (the floor of the latency-derived stage deadline
# is the cap; a lower --stage-timeout-ms lowers both): these tests check
# results, and a loaded CI machine must not turn a slow stage call into a
# degraded answer (ARGS can override).
start_gateway() {
	rm -f "$TEST_TMP/gw.port"
	"$GATEWAY" --bind 127.0.0.1 --port 0 --port-file "$TEST_TMP/gw.port" \
		--models "$MODELS_DIR" --threads 1 --log-level warn \
		--health-interval-ms 500 --stage-timeout-ms 30000 \
		--stage-timeout-floor-ms 30000 \
		--request-timeout-ms 120000 "$@" >>"$TEST_TMP/gw.log" 2>&1 &
	GW_PID=$!
	FLEET_PIDS+=($GW_PID)
	if ! wait_file "$TEST_TMP/gw.port" 30; then
		echo "FAIL: gateway did not listen: $(tail -5 "$TEST_TMP/gw.log")" >&2
		exit 1
	fi
	GW_URL="http://127.0.0.1:$(cat "$TEST_TMP/gw.port")"
	local i
	for ((i = 0; i < 600; i++)); do
		if curl -sf -o /dev/null "$GW_URL/v2/health/ready"; then
			return 0
		fi
		if ! kill -0 "$GW_PID" 2>/dev/null; then
			break
		fi
		sleep 0.1
	done
	echo "FAIL: gateway not ready: $(curl -s "$GW_URL/v2/health/ready"); $(tail -5 "$TEST_TMP/gw.log")" >&2
	exit 1
}

# stop_gateway [SIGNAL]: default TERM.
stop_gateway() {
	[ -n "$GW_PID" ] || return 0
	kill "-${1:-TERM}" "$GW_PID" 2>/dev/null || true
	wait "$GW_PID" 2>/dev/null || true
	GW_PID=""
}

# json_get FILE EXPR: evaluates a Python expression on the JSON in FILE
# (bound as j), prints the result.
json_get() {
	python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# restart_worker I [extra worker args...]: starts worker wI again (after it
# was killed) on a new ephemeral port; updates WORKER_PIDS and WORKER_ARGS
# and sets WORKER_URL to its new URL (register it with the gateway, e.g.
# POST /admin/devices, when the gateway is already running).
restart_worker() {
	local i=$1
	shift
	rm -f "$TEST_TMP/w$i.port"
	"$WORKER" --id "w$i" --bind 127.0.0.1 --port 0 \
		--port-file "$TEST_TMP/w$i.port" --models "$MODELS_DIR" \
		--threads 1 --log-level warn "$@" >>"$TEST_TMP/w$i.log" 2>&1 &
	WORKER_PIDS[i - 1]=$!
	FLEET_PIDS+=($!)
	if ! wait_file "$TEST_TMP/w$i.port" 20; then
		echo "FAIL: worker w$i did not restart: $(tail -5 "$TEST_TMP/w$i.log")" >&2
		exit 1
	fi
	WORKER_URL="http://127.0.0.1:$(cat "$TEST_TMP/w$i.port")"
	WORKER_ARGS[2 * i - 1]="w$i=$WORKER_URL"
}

# ---- helpers for the fault tests (netns, active-mode tail latency) --------

# Exit status ctest reads as "skipped" (SKIP_RETURN_CODE in CMakeLists.txt).
FLEET_SKIP_CODE=77

# fleet_skip REASON...: prints "SKIP: REASON" and exits with the skip code
# (the EXIT trap still cleans up).
fleet_skip() {
	echo "SKIP: $*"
	exit "$FLEET_SKIP_CODE"
}

# worker_fault URL JSON: POSTs JSON (e.g. '{"delay_ms": 500}') to the
# worker's /v1/fault (worker started with --enable-fault-injection).
worker_fault() {
	curl -sf -m 10 -X POST -H 'Content-Type: application/json' -d "$2" "$1/v1/fault" >/dev/null
}

# fleet_latency IMAGE N OUT [MODEL]: fleet_client latency (N sequential
# classifies on one connection after 3 warm-ups) against $GW_URL; the JSON
# summary (min/median/p90/p99/max/mean_ms) goes to OUT.
fleet_latency() {
	"$FLEET_CLIENT" latency --url "$GW_URL" --model "${4:-${model:?}}" \
		--image "$1" --repeat "$2" >"$3"
}

# proc_threads PID: number of threads of a running process (Linux /proc).
proc_threads() {
	awk '/^Threads:/ {print $2}' "/proc/$1/status"
}

# metric NAME_WITH_LABELS: value of one sample of the gateway's /metrics
# (0 when absent), e.g. metric 'dicefleet_degraded_total'.
metric() {
	curl -s "$GW_URL/metrics" | awk -v k="$1" '$1 == k {v = $2} END {print v + 0}'
}

# wait_until SECONDS CMD...: runs CMD every 0.1 s until it succeeds (0) or
# SECONDS pass (1).
wait_until() {
	local t=$1 i
	shift
	for ((i = 0; i < t * 10; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

# bench_lib.sh - what the fleet benchmarks share (sourced by
# fleet_load.sh, fleet_failure.sh and fleet_overhead.sh): paths and
# binaries, a fresh run directory under tests/bench/work/, starting workers
# and gateways on 127.0.0.1 with ephemeral ports, and stopping everything
# started on exit.
#
# Environment: BUILD_DIR (default build/), DF_MODELS_DIR (default models/).

bench_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bench_root=$(cd "$bench_here/../.." && pwd)
bench_build=${BUILD_DIR:-$bench_root/build}
bench_models=${DF_MODELS_DIR:-$bench_root/models}
bench_gateway=$bench_build/services/gateway/dicefleet-gateway
bench_worker=$bench_build/services/worker/dicefleet-worker
bench_client=$bench_build/tests/integration/fleet_client
bench_pids=()

# bench_die MESSAGE...: prints "<script>: MESSAGE" and exits 1.
bench_die() {
	echo "$(basename "$0"): $*" >&2
	exit 1
}

# bench_setup NAME BINARY...: checks the binaries, makes a fresh
# $bench_run (tests/bench/work/NAME) and tests/bench/results/, and stops
# every process started through this file when the script exits.
bench_setup() {
	local name=$1 b
	shift
	for b in "$@"; do
		[ -x "$b" ] || bench_die "$b not found (build first, or set BUILD_DIR)"
	done
	bench_run=$bench_here/work/$name
	rm -rf "$bench_run"
	mkdir -p "$bench_run" "$bench_here/results"
	trap bench_cleanup EXIT
}

bench_cleanup() {
	[ ${#bench_pids[@]} -gt 0 ] && kill -TERM "${bench_pids[@]}" 2>/dev/null
	wait 2>/dev/null || true
}

# bench_wait_file FILE SECONDS: until FILE exists and is not empty.
bench_wait_file() {
	local t
	for ((t = 0; t < $2 * 20; t++)); do
		[ -s "$1" ] && return 0
		sleep 0.05
	done
	return 1
}

# bench_start_worker STEM ID [ARGS...]: worker ID (port file and log
# $bench_run/STEM.{port,log}, --threads 1 unless ARGS say otherwise);
# sets BENCH_PID and BENCH_URL.
bench_start_worker() {
	local stem=$1 id=$2
	shift 2
	rm -f "$bench_run/$stem.port"
	"$bench_worker" --id "$id" --bind 127.0.0.1 --port 0 \
		--port-file "$bench_run/$stem.port" --models "$bench_models" \
		--threads 1 --log-level warn "$@" >>"$bench_run/$stem.log" 2>&1 &
	BENCH_PID=$!
	bench_pids+=($BENCH_PID)
	bench_wait_file "$bench_run/$stem.port" 20 ||
		bench_die "worker $id did not start: $(tail -3 "$bench_run/$stem.log")"
	BENCH_URL="http://127.0.0.1:$(cat "$bench_run/$stem.port")"
}

# bench_start_gateway STEM [ARGS...]: a gateway (port file and log
# $bench_run/STEM.{port,log}, database $bench_run/STEM.db) waited for until
# /v2/health/ready (60 s); sets BENCH_PID and BENCH_URL.
bench_start_gateway() {
	local stem=$1 t
	shift
	rm -f "$bench_run/$stem.port"
	"$bench_gateway" --bind 127.0.0.1 --port 0 --port-file "$bench_run/$stem.port" \
		--db "$bench_run/$stem.db" --models "$bench_models" --threads 1 \
		"$@" >>"$bench_run/$stem.log" 2>&1 &
	BENCH_PID=$!
	bench_pids+=($BENCH_PID)
	for ((t = 0; t < 600; t++)); do
		[ -s "$bench_run/$stem.port" ] &&
			curl -sf -o /dev/null "http://127.0.0.1:$(cat "$bench_run/$stem.port")/v2/health/ready" &&
			break
		sleep 0.1
	done
	[ -s "$bench_run/$stem.port" ] || bench_die "gateway did not listen: $(tail -3 "$bench_run/$stem.log")"
	BENCH_URL="http://127.0.0.1:$(cat "$bench_run/$stem.port")"
	curl -sf -o /dev/null "$BENCH_URL/v2/health/ready" ||
		bench_die "gateway not ready: $(tail -3 "$bench_run/$stem.log")"
}

# ACTIVE replica mode bounds the tail: with 500 ms injected into every
# stage call of one of 4 workers, p99 stays within 1.5x of the no-delay p99;
# STANDBY mode with the same delay is far slower (so the check can fail);
# and the calls the hedge abandons do not pile up on the slow worker.
#
# Ratio 1, copies 2: every neuron has exactly one replica on another
# device, so for any single slow device each of its neurons (primary or
# replica) is also computed by a fast one and every stage can finish
# without it. With ratio < 1 the slow device's unreplicated primaries would
# have to be waited for (or timed out and imputed), so no replica mode could
# keep the tail; copies 3 adds compute without helping against one straggler.
#
# p99 of a few-ms request on a loaded 2-core machine is jittery, so rounds
# are interleaved base / delay / base / ... (a load spike from elsewhere
# hits both sides) and the medians of the rounds' p99s are compared.
#
# Pile-up: the worker runs one HTTP thread per connection; a call the
# gateway abandons (connection closed) is noticed by the worker within its
# 10 ms sleep step (or before it is computed) and skipped, counted in
# /healthz stage_abandoned. "outstanding" = its threads beyond idle + its
# listen queue. The bound on its peak is 40 requests' worth of stage calls
# (before the worker skipped abandoned calls the peak was ~2,000; see
# below); after each delay round its outstanding calls must also drain
# within 2 x delay + 1 s.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fleet_lib.sh"

model=fmnist-mobilenet
require_models "$model"
png=$DF_SOURCE_DIR/models/samples/0001-pullover.png
DELAY_MS=500
N=${FLEET_P99_REPEAT:-200} # requests per round (p99 = the 3rd slowest of 200)
ROUNDS=${FLEET_P99_ROUNDS:-5} # rounds per side: the median ignores 2 spikes
# Bound = max(1.5 x base p99, base p99 + FLOOR_MS). The absolute slack is
# for the jitter of a shared 2-core machine: one descheduling costs ~10 ms,
# as much as a whole request (p99 ~13 ms idle), and would otherwise decide
# the check. 10 ms is 2% of the injected delay: a request that waited for
# even one delayed call still fails it.
FLOOR_MS=10

start_workers 4 --enable-fault-injection
slow_url="http://127.0.0.1:$(cat "$TEST_TMP/w4.port")"
slow_pid=${WORKER_PIDS[3]}
start_gateway "${WORKER_ARGS[@]}" --model "$model" --method robustdice --ratio 1 \
	--copies 2 --replica-mode active --db "$TEST_TMP/active.db"

calls() { curl -s -m 60 "$slow_url/healthz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stage_calls"])'; }

# Stage calls the slow worker is sitting on: one HTTP thread per accepted
# connection (beyond its idle threads) plus the connections waiting in its
# listen queue (Recv-Q of the LISTEN socket). Sampled in the background.
# Idle = after a request, with the gateway's keep-alive connections open.
curl -s -o /dev/null -H 'Content-Type: image/png' --data-binary @"$png" "$GW_URL/v1/classify"
threads_idle=$(proc_threads "$slow_pid")
outstanding() {
	local q
	q=$(ss -Hltn "( sport = :${slow_url##*:} )" | awk '{print $2; exit}')
	echo $(($(proc_threads "$slow_pid") - threads_idle + ${q:-0}))
}
drained() { [ "$(outstanding)" -le 1 ]; }
# sample_outstanding FILE: appends a sample every 20 ms until stop_sampler.
sample_outstanding() {
	while [ ! -e "$TEST_TMP/stop_sampler" ]; do
		outstanding >>"$1" 2>/dev/null || break
		sleep 0.02
	done
}
# measure SIDE R: round R of SIDE (base or delay), sampling w4 meanwhile.
measure() {
	rm -f "$TEST_TMP/stop_sampler"
	sample_outstanding "$TEST_TMP/outstanding_$1$2.txt" &
	local sampler=$!
	fleet_latency "$png" "$N" "$TEST_TMP/$1$2.json" || fail "$1 round $2: fleet_client latency failed"
	touch "$TEST_TMP/stop_sampler"
	wait "$sampler"
}

degraded0=$(metric dicefleet_degraded_total)
inferences0=$(metric dicefleet_inferences_total)
base=() delay=() drain=()
for ((r = 1; r <= ROUNDS; r++)); do
	c0=$(calls)
	measure base "$r"
	c1=$(calls)
	base+=("$(json_get "$TEST_TMP/base$r.json" 'j["p99_ms"]')")
	worker_fault "$slow_url" "{\"delay_ms\": $DELAY_MS}" || fail "could not set the delay on w4"
	measure delay "$r"
	delay+=("$(json_get "$TEST_TMP/delay$r.json" 'j["p99_ms"]')")
	# How long w4 needs, once the load stops, to be rid of its
	# outstanding calls (threads + listen queue back to idle).
	worker_fault "$slow_url" '{"delay_ms": 0}' || fail "could not clear the delay on w4"
	t0=$(date +%s%N)
	wait_until 5 drained || true
	drain+=("$((($(date +%s%N) - t0) / 1000000))")
	for side in base delay; do
		echo "round $r: $side $(cat "$TEST_TMP/$side$r.json"), w4 peak outstanding $(sort -n "$TEST_TMP/outstanding_$side$r.txt" | tail -1)"
	done
done
# Stage calls w4 gets per request (one per distributed stage it holds).
per_request=$(((c1 - c0) / (N + 3)))

read -r base_p99 delay_p99 bound < <(python3 -c '
import statistics, sys
b = statistics.median(map(float, sys.argv[1].split()))
d = statistics.median(map(float, sys.argv[2].split()))
print(b, d, round(max(1.5 * b, b + float(sys.argv[3])), 4))' "${base[*]}" "${delay[*]}" "$FLOOR_MS")
echo "p99 per round (ms): base ${base[*]}; ${DELAY_MS} ms delay on w4: ${delay[*]}"
python3 -c "import sys; sys.exit(0 if $delay_p99 <= $bound else 1)" &&
	pass "active: median p99 $delay_p99 ms with a ${DELAY_MS} ms straggler <= $bound ms (base $base_p99 ms)" ||
	fail "active: median p99 $delay_p99 ms with a ${DELAY_MS} ms straggler > $bound ms (base $base_p99 ms)"
[ "$(metric dicefleet_degraded_total)" = "$degraded0" ] &&
	pass "active: all $(($(metric dicefleet_inferences_total) - inferences0)) answers complete (coverage 1)" ||
	fail "active: $(($(metric dicefleet_degraded_total) - degraded0)) degraded answers with a slow (not failed) device"

# Abandoned calls are skipped by the straggler, not slept on and computed
# for nobody: at most a few requests' worth outstanding, drained soon after
# the load stops.
peak=$(cat "$TEST_TMP"/outstanding_delay*.txt | sort -n | tail -1)
abandoned=$(curl -s "$slow_url/healthz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stage_abandoned"])')
[ "${abandoned:-0}" -gt 0 ] &&
	pass "w4 skipped $abandoned abandoned stage calls" ||
	fail "w4 skipped no abandoned stage call (stage_abandoned ${abandoned:-?})"
worst_drain=$(printf '%s\n' "${drain[@]}" | sort -n | tail -1)
peak_base=$(cat "$TEST_TMP"/outstanding_base*.txt | sort -n | tail -1)
echo "w4: $per_request stage calls per request; peak calls outstanding: $peak_base without the delay, $peak with it; drained ${drain[*]} ms after the load stopped"
# Bound: 40 requests' worth. On an idle machine the peak is ~15 (the last
# request or two, within the worker's 10 ms check); a loaded one keeps
# skipped calls' threads around longer (peaks up to ~240 seen while other
# benchmarks ran); without the skipping it was 2,031-2,182 and took 7-10 s
# to drain (the drain check below).
bound=$((40 * per_request))
[ "${peak:-0}" -le "$bound" ] &&
	pass "abandoned hedged calls do not pile up on w4 (peak $peak outstanding <= $bound)" ||
	fail "abandoned hedged calls pile up on w4: peak $peak outstanding (threads + listen queue) > $bound, $per_request calls per request"
[ "$worst_drain" -le $((2 * DELAY_MS + 1000)) ] &&
	pass "w4's outstanding calls drain within ${worst_drain} ms after the load stops" ||
	fail "w4 busy with abandoned calls for ${worst_drain} ms after the load stops"

# STANDBY, same delay: each stage waits for w4, so the straggler shows.
stop_gateway
start_gateway "${WORKER_ARGS[@]}" --model "$model" --method robustdice --ratio 1 \
	--copies 2 --replica-mode standby --db "$TEST_TMP/standby.db"
curl -s -o /dev/null -H 'Content-Type: image/png' --data-binary @"$png" "$GW_URL/v1/classify" # warm-up
worker_fault "$slow_url" "{\"delay_ms\": $DELAY_MS}" || fail "could not set the delay on w4"
read -r code standby_ms < <(curl -s -o "$TEST_TMP/standby.json" -w '%{http_code} %{time_total}\n' \
	-H 'Content-Type: image/png' --data-binary @"$png" "$GW_URL/v1/classify" |
	awk '{print $1, $2 * 1000}')
worker_fault "$slow_url" '{"delay_ms": 0}' || true
[ "$code" = 200 ] && python3 -c "import sys; sys.exit(0 if $standby_ms > max($bound, $DELAY_MS) else 1)" &&
	pass "standby: one request takes $standby_ms ms with the same straggler (> $bound ms: the check can fail)" ||
	fail "standby: HTTP $code in $standby_ms ms, expected well above $bound ms"
finish

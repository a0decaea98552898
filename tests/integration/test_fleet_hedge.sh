# ACTIVE replica mode hedges against a slow device: with every neuron on two
# workers and one worker delayed 0.4 s per stage call, answers still come
# back quickly and complete (the first reply for each neuron wins, the slow
# calls are abandoned). In STANDBY mode the same delay is waited out.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fleet_lib.sh"

model=fmnist-mobilenet
require_models "$model"
png=$DF_SOURCE_DIR/models/samples/0001-pullover.png

classify_ms() { # prints latency_ms and coverage of one classify
	curl -s -H 'Content-Type: image/png' --data-binary @"$png" "$GW_URL/v1/classify" |
		/usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print(d['latency_ms'], d['coverage'])"
}

start_workers 2 --enable-fault-injection
w2=$(cat "$TEST_TMP/w2.port")
for mode in active standby; do
	start_gateway "${WORKER_ARGS[@]}" --model "$model" --method full --replica-mode "$mode" --db "$TEST_TMP/$mode.db"
	classify_ms >/dev/null # warm-up: engines built on both workers
	curl -sf -X POST -H 'Content-Type: application/json' -d '{"delay_ms": 400}' \
		"http://127.0.0.1:$w2/v1/fault" >/dev/null || fail "could not set the fault on w2"
	worst=0
	tries=3
	[ "$mode" = standby ] && tries=1 # 12 stages x 0.4 s each
	for ((i = 0; i < tries; i++)); do
		read -r ms cov < <(classify_ms)
		worst=$(/usr/bin/python3 -c "print(max($worst, $ms))")
		[ "$cov" = 1.0 ] || [ "$cov" = 1 ] || fail "$mode: coverage $cov with a slow (not failed) device"
	done
	if [ "$mode" = active ]; then
		/usr/bin/python3 -c "import sys; sys.exit(0 if $worst < 400 else 1)" \
			&& pass "active: answers in ${worst} ms despite a 0.4 s-per-call straggler" \
			|| fail "active: worst latency ${worst} ms with a 0.4 s-per-call straggler"
	else
		/usr/bin/python3 -c "import sys; sys.exit(0 if $worst >= 400 else 1)" \
			&& pass "standby: the straggler is waited out (${worst} ms), as expected" \
			|| fail "standby: worst latency ${worst} ms, expected >= 400"
	fi
	curl -sf -X POST -H 'Content-Type: application/json' -d '{"delay_ms": 0}' \
		"http://127.0.0.1:$w2/v1/fault" >/dev/null
	stop_gateway
done
finish

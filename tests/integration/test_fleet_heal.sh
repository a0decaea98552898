# Self-healing: a worker killed for good is repartitioned away after
# --repartition-after-ms (coverage returns to 1 on the survivors, a new
# version), and when it comes back and stays up it rejoins the same way
# (another version, and it holds neurons again). Transitions and partition
# changes are rows in the events table.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fleet_lib.sh"

model=fmnist-mobilenet
require_models "$model"
sample=$DF_SOURCE_DIR/models/samples/0002-trouser.png
db="$TEST_TMP/heal.db"
sql() { sqlite3 -batch -noheader "$db" "$1"; }
classify() { curl -s -H 'Content-Type: image/png' --data-binary @"$sample" "$GW_URL/v1/classify" >"$TEST_TMP/c.json"; }
field() { json_get "$TEST_TMP/c.json" "$1"; }

start_workers 3
# ratio 0: a lost worker's neurons are really lost until the repartition
start_gateway --db "$db" --model "$model" --method sequential --ratio 0 \
	--impute zero --repartition-after-ms 1500 --health-interval-ms 300 "${WORKER_ARGS[@]}"
classify
v1=$(field 'j["partition_version"]')
[ "$(field 'j["coverage"]')" = 1.0 ] && pass "3 workers: full coverage (version $v1)" || fail "start: $(head -c 300 "$TEST_TMP/c.json")"

w3_port=$(cat "$TEST_TMP/w3.port")
kill -KILL "${WORKER_PIDS[2]}"
wait "${WORKER_PIDS[2]}" 2>/dev/null || true
classify
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if j["coverage"] < 1 and "w3" in j["failed_devices"] else 1)' "$TEST_TMP/c.json" \
	&& pass "w3 killed: answers say coverage $(field 'j["coverage"]') and name w3" \
	|| fail "w3 killed: $(head -c 300 "$TEST_TMP/c.json")"

healed=0
for ((i = 0; i < 150; i++)); do
	classify
	if [ "$(field 'j.get("coverage")')" = 1.0 ] && [ "$(field 'j.get("partition_version", 0) > '"$v1")" = True ]; then
		healed=1
		break
	fi
	sleep 0.1
done
v2=$(field 'j.get("partition_version")')
[ "$healed" = 1 ] && pass "repartitioned over w1, w2: coverage 1.0 on version $v2" \
	|| fail "no self-healing after 15 s: $(head -c 300 "$TEST_TMP/c.json")"
[ "$(sql "select count(*) > 0 from events where device_id = 'w3' and to_state = 'DOWN'")" = 1 ] \
	&& pass "w3's DOWN transition is an event row" || fail "no DOWN event for w3"

"$WORKER" --id w3 --bind 127.0.0.1 --port "$w3_port" --models "$MODELS_DIR" \
	--threads 1 --log-level warn >>"$TEST_TMP/w3.log" 2>&1 &
WORKER_PIDS[2]=$!
FLEET_PIDS+=($!)
rejoined=0
for ((i = 0; i < 150; i++)); do
	classify
	if [ "$(field 'j.get("partition_version", 0) > '"$v2")" = True ] && [ "$(field 'j.get("coverage")')" = 1.0 ]; then
		rejoined=1
		break
	fi
	sleep 0.1
done
[ "$rejoined" = 1 ] && pass "w3 back: rejoined in version $(field 'j["partition_version"]'), coverage 1.0" \
	|| fail "w3 did not rejoin: $(head -c 300 "$TEST_TMP/c.json")"
wb=$(curl -s "http://127.0.0.1:$w3_port/healthz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["weight_bytes"])')
[ "${wb:-0}" -gt 0 ] && pass "w3 holds neurons again ($wb weight bytes)" || fail "w3 holds no weights: $wb"
finish

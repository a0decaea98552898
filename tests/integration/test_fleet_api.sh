# The gateway's database and its error handling, with a real 2-worker fleet:
#  - after start-up SQLite holds the devices (UP), the settings, and one
#    active partition whose JSON parses and validates against the model;
#  - SIGKILL and a restart without any --worker flag restores them: same
#    devices, same active version, no new version; changing a setting
#    makes a new version and retires the old one;
#  - bad requests get JSON errors with the right status (400, 404, 405,
#    413, 415) and the service keeps serving.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fleet_lib.sh"

model=${FLEET_API_MODEL:-fmnist-vgg}
require_models "$model"
samples="${DF_SAMPLES_DIR:-$DF_SOURCE_DIR/models/samples}"
sample="$samples/0000-ankle-boot.png"
db="$TEST_TMP/api.db"
sql() { sqlite3 -batch -noheader "$db" "$1"; }

# expect_sql DESC QUERY WANT
expect_sql() {
	local got
	got=$(sql "$2" | tr '\n' ' ' | sed 's/ $//')
	if [ "$got" = "$3" ]; then pass "$1"; else fail "$1: got '$got', expected '$3'"; fi
}

# Workers and gateways share a cluster token (workers refuse anything else).
export DICEFLEET_CLUSTER_TOKEN=fleet-api-test-token
start_workers 2
start_gateway --db "$db" --model "$model" --impute zero "${WORKER_ARGS[@]}"

# ---- (c) the database after start-up -------------------------------------
expect_sql "devices stored and UP" \
	"select id || '=' || state from devices order by id" "w1=UP w2=UP"
expect_sql "device URLs stored" "select count(*) from devices where url like 'http://127.0.0.1:%'" "2"
expect_sql "one active partition" "select count(*) from partitions where state = 'active'" "1"
expect_sql "settings stored" \
	"select key || '=' || value from settings where key in ('method', 'copies') order by key" \
	"copies=2 method=robustdice"
version=$(sql "select version from partitions where state = 'active'")
n_versions=$(sql "select count(*) from partitions")
sql "select json from partitions where state = 'active'" >"$TEST_TMP/map.json"
if "$FLEET_CLIENT" validate-map --models "$MODELS_DIR" --model "$model" \
	"$TEST_TMP/map.json" >"$TEST_TMP/map.out" 2>"$TEST_TMP/map.err"; then
	pass "stored map parses and validates: $(cat "$TEST_TMP/map.out")"
	[ "$(json_get "$TEST_TMP/map.out" 'j["version"]')" = "$version" ] &&
		[ "$(json_get "$TEST_TMP/map.out" 'j["devices"]')" = 2 ] &&
		pass "stored map has the active version and both devices" ||
		fail "stored map: $(cat "$TEST_TMP/map.out"), active version $version"
else
	fail "stored map does not validate: $(cat "$TEST_TMP/map.err")"
fi
curl -s "$GW_URL/v2/health/ready" >"$TEST_TMP/ready.json"
[ "$(json_get "$TEST_TMP/ready.json" 'j["partition_version"]')" = "$version" ] &&
	pass "ready reports version $version" || fail "ready: $(cat "$TEST_TMP/ready.json")"

# SIGKILL, restart without --worker: everything comes from SQLite.
stop_gateway KILL
start_gateway --db "$db" --model "$model" --impute zero
curl -s "$GW_URL/v2/health/ready" >"$TEST_TMP/ready.json"
[ "$(json_get "$TEST_TMP/ready.json" 'j["partition_version"]')" = "$version" ] &&
	pass "restart restores active version $version" ||
	fail "after restart: $(cat "$TEST_TMP/ready.json"), expected version $version"
expect_sql "restart creates no new version" "select count(*) from partitions" "$n_versions"
expect_sql "devices restored" "select id || '=' || state from devices order by id" "w1=UP w2=UP"
code=$(curl -s -o "$TEST_TMP/c.json" -w '%{http_code}' -H 'Content-Type: image/png' \
	--data-binary @"$sample" "$GW_URL/v1/classify")
[ "$code" = 200 ] && [ "$(json_get "$TEST_TMP/c.json" 'j["partition_version"]')" = "$version" ] &&
	pass "restored gateway classifies on version $version" ||
	fail "classify after restart: $code $(head -c 300 "$TEST_TMP/c.json")"

# A changed setting is a new version; the old one is retired.
stop_gateway TERM
start_gateway --db "$db" --model "$model" --impute zero --method sequential \
	--min-coverage 0
expect_sql "new method makes a new active version" \
	"select version || '=' || method from partitions where state = 'active'" \
	"$((n_versions + 1))=sequential"
expect_sql "previous version retired" "select state from partitions where version = $version" "retired"

# A worker dies: answers degrade and name it; it comes back on the same
# port without the partition: the health loop pushes it and coverage is 1.
w2_port=$(cat "$TEST_TMP/w2.port")
kill -KILL "${WORKER_PIDS[1]}"
wait "${WORKER_PIDS[1]}" 2>/dev/null || true
curl -s -H 'Content-Type: image/png' --data-binary @"$sample" "$GW_URL/v1/classify" >"$TEST_TMP/d.json"
if python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["degraded"] and j["coverage"] < 1 and j["failed_devices"] == ["w2"]' \
	"$TEST_TMP/d.json" 2>/dev/null; then
	pass "w2 killed: degraded answer naming w2 ($(json_get "$TEST_TMP/d.json" 'j["coverage"]'))"
else
	fail "w2 killed: $(head -c 300 "$TEST_TMP/d.json")"
fi
"$WORKER" --id w2 --bind 127.0.0.1 --port "$w2_port" --models "$MODELS_DIR" \
	--threads 1 --log-level warn >>"$TEST_TMP/w2.log" 2>&1 &
WORKER_PIDS[1]=$!
FLEET_PIDS+=($!)
back=0
for ((i = 0; i < 100; i++)); do
	curl -s -H 'Content-Type: image/png' --data-binary @"$sample" "$GW_URL/v1/classify" >"$TEST_TMP/d.json"
	if [ "$(json_get "$TEST_TMP/d.json" 'j.get("coverage")')" = 1.0 ]; then
		back=1
		break
	fi
	sleep 0.1
done
[ "$back" = 1 ] && pass "w2 restarted: partition pushed again, coverage 1" ||
	fail "w2 restarted but coverage stays below 1: $(head -c 300 "$TEST_TMP/d.json")"
expect_sql "health events recorded for w2" \
	"select count(*) > 0 from events where device_id = 'w2' and kind = 'health' and to_state = 'DOWN'" "1"

# ---- (d) bad requests ----------------------------------------------------
# expect_error DESC STATUS CURL-ARGS...: status, JSON error body.
expect_error() {
	local desc=$1 want=$2 code
	shift 2
	code=$(curl -s -o "$TEST_TMP/e.json" -w '%{http_code}' "$@")
	if [ "$code" != "$want" ]; then
		fail "$desc: HTTP $code, expected $want: $(head -c 300 "$TEST_TMP/e.json")"
	elif ! python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert e["code"] and e["message"]' \
		"$TEST_TMP/e.json" 2>/dev/null; then
		fail "$desc: not a JSON error: $(head -c 300 "$TEST_TMP/e.json")"
	else
		pass "$desc -> $code $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["error"]["message"][:90])' "$TEST_TMP/e.json")"
	fi
}
C="$GW_URL/v1/classify"
PNG=(-H 'Content-Type: image/png')
head -c 120 "$sample" >"$TEST_TMP/trunc.png"
jpeg="$DF_SOURCE_DIR/tests/unit/data/img/rgb_q90.jpg"
head -c $(($(stat -c %s "$jpeg") / 2)) "$jpeg" >"$TEST_TMP/trunc.jpg"
python3 - "$TEST_TMP/huge.png" <<'EOF'
import struct, sys, zlib
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0)
idat = zlib.compress(b"\0" * 1000)
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
EOF
head -c $((9 * 1024 * 1024)) /dev/zero >"$TEST_TMP/big.bin"

expect_error "empty PNG body" 400 "${PNG[@]}" --data-binary '' "$C"
expect_error "empty body without type" 400 -X POST "$C"
expect_error "not an image" 400 "${PNG[@]}" --data-binary 'hello, not an image' "$C"
expect_error "truncated PNG" 400 "${PNG[@]}" --data-binary @"$TEST_TMP/trunc.png" "$C"
expect_error "truncated JPEG" 400 -H 'Content-Type: image/jpeg' --data-binary @"$TEST_TMP/trunc.jpg" "$C"
expect_error "PNG claiming 100000x100000" 413 "${PNG[@]}" --data-binary @"$TEST_TMP/huge.png" "$C"
expect_error "body over --max-body" 413 "${PNG[@]}" --data-binary @"$TEST_TMP/big.bin" "$C"
expect_error "unsupported content type" 415 -H 'Content-Type: text/plain' --data-binary @"$sample" "$C"
expect_error "unknown model (query)" 404 "${PNG[@]}" --data-binary @"$sample" "$C?model=nope"
expect_error "unknown model (v2 metadata)" 404 "$GW_URL/v2/models/nope"
expect_error "unknown model (v2 infer)" 404 -H 'Content-Type: application/json' -d '{}' "$GW_URL/v2/models/nope/infer"
for k in 0 -1 11 99999999999999999999999 abc 2.5; do
	expect_error "top_k=$k" 400 "${PNG[@]}" --data-binary @"$sample" "$C?top_k=$k"
done
expect_error "multipart without image field" 400 -F "file=@$sample" "$C"
expect_error "multipart without boundary" 400 -H 'Content-Type: multipart/form-data' --data-binary 'x' "$C"
expect_error "multipart cut before its end" 400 \
	-H 'Content-Type: multipart/form-data; boundary=XyZ' \
	--data-binary $'--XyZ\r\nContent-Disposition: form-data; name="image"\r\n\r\nabc' "$C"
expect_error "v2 infer invalid JSON" 400 -H 'Content-Type: application/json' -d '{"inputs": [' "$GW_URL/v2/models/$model/infer"
expect_error "v2 infer wrong shape" 400 -H 'Content-Type: application/json' \
	-d '{"inputs":[{"name":"input","shape":[1,1,2,2],"datatype":"FP32","data":[1,2,3,4]}]}' \
	"$GW_URL/v2/models/$model/infer"
expect_error "unknown path" 404 "$GW_URL/v1/nothing"
expect_error "wrong method" 405 -X DELETE "$C"

code=$(curl -s -o "$TEST_TMP/c.json" -w '%{http_code}' -F "image=@$sample" "$C?top_k=3")
[ "$code" = 200 ] && [ "$(json_get "$TEST_TMP/c.json" 'len(j["predictions"])')" = 3 ] &&
	pass "still serving after the bad requests (multipart, top_k=3)" ||
	fail "classify after bad requests: $code $(head -c 300 "$TEST_TMP/c.json")"
code=$(curl -s -o "$TEST_TMP/c.json" -w '%{http_code}' -H 'Content-Type: image/jpeg' \
	--data-binary @"$jpeg" "$C?top_k=1")
[ "$code" = 200 ] && pass "a colour JPEG (converted to the model's input) classifies" ||
	fail "JPEG: $code $(head -c 300 "$TEST_TMP/c.json")"
kill -0 "$GW_PID" 2>/dev/null && pass "gateway process alive" || fail "gateway died"
curl -s "$GW_URL/metrics" >"$TEST_TMP/metrics.txt"
# The 413 for the oversized body comes from http_server before any handler
# runs, so only the decoder's 413 (the huge PNG) is counted here.
expect_grep 'dicefleet_requests_total{endpoint="classify",code="413"} 1' "$TEST_TMP/metrics.txt" \
	"metrics count the 413 of the huge PNG"
expect_grep 'dicefleet_requests_total{endpoint="classify",code="400"} 1[0-9]' "$TEST_TMP/metrics.txt" \
	"metrics count the 400s"
expect_grep 'dicefleet_device_up{device="w1"} 1' "$TEST_TMP/metrics.txt" "metrics show w1 UP"
stop_gateway

# Workers may start after the gateway: it waits (not ready), then deploys.
late_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start_gateway_nowait() {
	rm -f "$TEST_TMP/gw.port"
	"$GATEWAY" --bind 127.0.0.1 --port 0 --port-file "$TEST_TMP/gw.port" \
		--models "$MODELS_DIR" --threads 1 --log-level warn "$@" >>"$TEST_TMP/gw.log" 2>&1 &
	GW_PID=$!
	FLEET_PIDS+=($GW_PID)
	wait_file "$TEST_TMP/gw.port" 30 || fail "gateway did not listen"
	GW_URL="http://127.0.0.1:$(cat "$TEST_TMP/gw.port")"
}
start_gateway_nowait --db "$TEST_TMP/late.db" --model "$model" --impute zero \
	--worker "late=http://127.0.0.1:$late_port"
sleep 0.5
code=$(curl -s -o "$TEST_TMP/r.json" -w '%{http_code}' "$GW_URL/v2/health/ready")
[ "$code" = 503 ] && pass "no worker yet: not ready ($(json_get "$TEST_TMP/r.json" 'j["error"]["message"]' | cut -c1-80))" ||
	fail "no worker yet: ready answered $code"
"$WORKER" --id late --bind 127.0.0.1 --port "$late_port" --models "$MODELS_DIR" \
	--threads 1 --log-level warn >"$TEST_TMP/late.log" 2>&1 &
late_pid=$!
FLEET_PIDS+=($late_pid)
ready=0
for ((i = 0; i < 100; i++)); do
	curl -sf -o /dev/null "$GW_URL/v2/health/ready" && { ready=1; break; }
	sleep 0.1
done
[ "$ready" = 1 ] && pass "late worker: gateway became ready" || fail "late worker: never ready"
stop_gateway
kill -TERM "$late_pid"
wait "$late_pid" 2>/dev/null || true

# A gateway with the wrong cluster token never gets ready.
DICEFLEET_CLUSTER_TOKEN=wrong "$GATEWAY" --bind 127.0.0.1 --port 0 \
	--port-file "$TEST_TMP/bad.port" --db "$TEST_TMP/bad.db" --models "$MODELS_DIR" \
	--model "$model" --impute zero --startup-wait-ms 300 --log-level warn \
	"${WORKER_ARGS[@]}" >"$TEST_TMP/bad.log" 2>&1 &
bad_pid=$!
FLEET_PIDS+=($bad_pid)
wait_file "$TEST_TMP/bad.port" 20 || fail "wrong-token gateway did not listen"
sleep 1.5
code=$(curl -s -o "$TEST_TMP/r.json" -w '%{http_code}' "http://127.0.0.1:$(cat "$TEST_TMP/bad.port")/v2/health/ready")
[ "$code" = 503 ] && pass "wrong cluster token: not ready ($(json_get "$TEST_TMP/r.json" 'j["error"]["message"]'))" ||
	fail "wrong cluster token: ready answered $code $(cat "$TEST_TMP/r.json")"
kill -TERM "$bad_pid"
wait "$bad_pid" 2>/dev/null || true
stop_workers
finish

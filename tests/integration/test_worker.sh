# dicefleet-worker as a real process on 127.0.0.1 (ephemeral ports via
# --port 0 --port-file): partition versions (prepare/commit/drop, the
# two-version limit), stage calls checked end to end against the model run
# in-process (df_stagecall infer drives runner.h over HTTP), 1-device vs
# 4-device memory, bad requests and their statuses, the cluster token,
# fault injection, and shutdown on SIGTERM.
#
# Model: tests/unit/data/onnx/torch_resnet_o13.onnx (a small ResNet-style
# CNN, residual adds = side inputs) packaged as models/tiny-resnet in a
# temporary directory; models/fmnist-vgg too when it has been trained.
. "$(dirname "$0")/lib.sh"

WORKER="$DF_BUILD_DIR/services/worker/dicefleet-worker"
CALL="$DF_BUILD_DIR/tests/integration/df_stagecall"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$TEST_TMP"
}
trap cleanup EXIT

MODELS="$TEST_TMP/models"
M="$MODELS/tiny-resnet"
mkdir -p "$M"
cp "$DF_SOURCE_DIR/tests/unit/data/onnx/torch_resnet_o13.onnx" "$M/model.onnx"
SHA=$(sha256sum "$M/model.onnx" | cut -d' ' -f1)
printf '%s\n' c0 c1 c2 c3 c4 c5 c6 c7 c8 c9 >"$M/labels.txt"
cat >"$M/model.json" <<EOF
{"name": "tiny-resnet", "onnx": "model.onnx", "sha256": "$SHA",
 "input": {"name": "input", "shape": [1, 1, 28, 28], "color": "grayscale",
           "resize": [28, 28], "mean": [0.286], "std": [0.353]},
 "output": {"name": "logits"}, "labels": "labels.txt"}
EOF

# start_worker VAR ID [flags...]: starts a worker, waits for its port file,
# sets $VAR to the port and ${VAR}_PID to the pid.
start_worker() {
	local var=$1 id=$2; shift 2
	local pf="$TEST_TMP/$var.port"
	rm -f "$pf"
	"$WORKER" --id "$id" --bind 127.0.0.1 --port 0 --port-file "$pf" \
		--models "$MODELS" --threads 2 "$@" >"$TEST_TMP/$var.log" 2>&1 &
	local pid=$!
	PIDS+=("$pid")
	for _ in $(seq 100); do [ -s "$pf" ] && break; sleep 0.1; done
	if [ ! -s "$pf" ]; then
		fail "worker $id did not start: $(head -c 600 "$TEST_TMP/$var.log")"
		finish
	fi
	printf -v "$var" '%s' "$(cat "$pf")"
	printf -v "${var}_PID" '%s' "$pid"
}

# req METHOD PORT PATH [curl args...]: prints the HTTP status, body in
# $TEST_TMP/body.
req() {
	local m=$1 port=$2 path=$3; shift 3
	curl -s -o "$TEST_TMP/body" -w '%{http_code}' -X "$m" "$@" \
		"http://127.0.0.1:$port$path" || true
}

# expect_req STATUS DESC METHOD PORT PATH [curl args...]
expect_req() {
	local want=$1 desc=$2; shift 2
	local got
	got=$(req "$@")
	if [ "$got" = "$want" ]; then pass "$desc"; else
		fail "$desc: HTTP $got, expected $want: $(head -c 300 "$TEST_TMP/body")"; fi
}

# jget FILE EXPR: a value from a JSON file (python expression on `j`).
jget() { /usr/bin/python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }

# prepare_body MAP DEVICE [SHA] [MODEL]: the JSON body of a prepare call.
prepare_body() {
	/usr/bin/python3 - "$1" "$2" "${3:-$SHA}" "${4:-tiny-resnet}" <<'EOF'
import json, sys
print(json.dumps({"model": sys.argv[4], "sha256": sys.argv[3],
                  "device": sys.argv[2], "map": json.load(open(sys.argv[1]))}))
EOF
}

JSON=(-H 'Content-Type: application/json')

# expect_call STATUS DESC PORT [df_stagecall call flags...]
expect_call() {
	local want=$1 desc=$2 port=$3; shift 3
	local got
	got=$("$CALL" call --url "http://127.0.0.1:$port" --model "$M" "$@" \
		2>"$TEST_TMP/call.err" | sed -n 's/^HTTP //p')
	if [ "$got" = "$want" ]; then pass "$desc"; else
		fail "$desc: HTTP ${got:-none}, expected $want: $(head -c 300 "$TEST_TMP/call.err")"; fi
}

# ---- maps ---------------------------------------------------------------
expect_status 0 "1-device map" "$CALL" map --model "$M" --devices 1 \
	--version 1 --out "$TEST_TMP/map1.json"
expect_status 0 "4-device map" "$CALL" map --model "$M" --devices 4 \
	--version 2 --out "$TEST_TMP/map4.json"
expect_status 0 "1-device map v3" "$CALL" map --model "$M" --devices 1 \
	--version 3 --out "$TEST_TMP/map1v3.json"
expect_status 0 "1-device map v5" "$CALL" map --model "$M" --devices 1 \
	--version 5 --out "$TEST_TMP/map5.json"
prepare_body "$TEST_TMP/map1.json" d0 >"$TEST_TMP/prep1.json"
prepare_body "$TEST_TMP/map1v3.json" d0 >"$TEST_TMP/prep3.json"

# ---- one worker, one device ----------------------------------------------
start_worker P0 d0 --max-body 1048576
expect_grep "listening on 127.0.0.1:$P0" "$TEST_TMP/P0.log" "first log line names the bound port"
expect_req 200 "healthz before any version" GET "$P0" /healthz
[ "$(jget "$TEST_TMP/body" 'j["state"], j["id"], j["versions"], j["weight_bytes"]')" = "idle d0 [] 0" ] &&
	pass "healthz: idle, id d0, no versions" || fail "healthz idle: $(cat "$TEST_TMP/body")"

expect_req 200 "prepare v1 (1 device)" POST "$P0" /v1/partitions/1/prepare "${JSON[@]}" \
	--data-binary @"$TEST_TMP/prep1.json"
cp "$TEST_TMP/body" "$TEST_TMP/prep1.out"
W1=$(jget "$TEST_TMP/prep1.out" 'j["weight_bytes"]')
[ "$W1" -gt 0 ] && pass "prepare reports weight_bytes ($W1)" || fail "weight_bytes $W1"
[ "$(jget "$TEST_TMP/prep1.out" 'j["held_neurons"] > 0 and j["prepare_ms"] > 0 and j["version"] == 1')" = True ] &&
	pass "prepare reports held_neurons, prepare_ms, version" || fail "prepare reply: $(cat "$TEST_TMP/prep1.out")"
expect_req 200 "prepare v1 again is idempotent" POST "$P0" /v1/partitions/1/prepare "${JSON[@]}" \
	--data-binary @"$TEST_TMP/prep1.json"
[ "$(jget "$TEST_TMP/body" 'j["already_prepared"], j["weight_bytes"]')" = "True $W1" ] &&
	pass "second prepare says already_prepared, same weight_bytes" || fail "$(cat "$TEST_TMP/body")"
expect_req 200 "healthz after prepare" GET "$P0" /healthz
[ "$(jget "$TEST_TMP/body" 'j["state"], j["versions"][0]["state"], j["version"]')" = "ready prepared None" ] &&
	pass "healthz: ready, v1 prepared, nothing committed" || fail "$(cat "$TEST_TMP/body")"
expect_req 200 "commit v1" POST "$P0" /v1/partitions/1/commit
expect_req 200 "healthz after commit" GET "$P0" /healthz
cp "$TEST_TMP/body" "$TEST_TMP/health1.json"
[ "$(jget "$TEST_TMP/health1.json" 'j["version"], j["model"], j["versions"][0]["state"], j["weight_bytes"]')" = "1 tiny-resnet committed $W1" ] &&
	pass "healthz: v1 committed, model, weight_bytes" || fail "$(cat "$TEST_TMP/health1.json")"
[ "$(jget "$TEST_TMP/health1.json" 'j["rss_bytes"] > 0 and j["threads"] == 2 and j["uptime_s"] >= 0 and "stage_calls" in j and "stage_errors" in j')" = True ] &&
	pass "healthz: rss_bytes, threads, uptime_s, counters" || fail "$(cat "$TEST_TMP/health1.json")"

# Every stage through the worker vs the whole model in-process.
expect_status 0 "inference through 1 worker matches in-process oneDNN" \
	"$CALL" infer --model "$M" --map "$TEST_TMP/map1.json" --version 1 \
	--worker "d0=http://127.0.0.1:$P0" --tol 1e-4 --out "$TEST_TMP/y1.npy"
cat "$TEST_TMP/out"
expect_status 0 "the same with f16 frames (looser tolerance)" \
	"$CALL" infer --model "$M" --map "$TEST_TMP/map1.json" --version 1 \
	--worker "d0=http://127.0.0.1:$P0" --dtype f16 --tol 2e-2
expect_req 200 "healthz counts stage calls" GET "$P0" /healthz
[ "$(jget "$TEST_TMP/body" 'j["stage_calls"] >= 2 and j["stage_errors"] == 0')" = True ] &&
	pass "stage_calls > 0, no errors yet" || fail "$(cat "$TEST_TMP/body")"

# ---- bad prepares ---------------------------------------------------------
expect_req 400 "prepare: version not a number" POST "$P0" /v1/partitions/abc/prepare \
	"${JSON[@]}" --data-binary @"$TEST_TMP/prep1.json"
expect_req 400 "prepare: version 0" POST "$P0" /v1/partitions/0/prepare \
	"${JSON[@]}" --data-binary @"$TEST_TMP/prep1.json"
expect_req 415 "prepare: wrong content type" POST "$P0" /v1/partitions/5/prepare \
	-H 'Content-Type: text/plain' --data-binary @"$TEST_TMP/prep1.json"
expect_req 400 "prepare: invalid JSON" POST "$P0" /v1/partitions/5/prepare \
	"${JSON[@]}" --data-binary '{"model": '
expect_req 400 "prepare: missing field" POST "$P0" /v1/partitions/5/prepare \
	"${JSON[@]}" --data-binary '{"model": "tiny-resnet", "sha256": "'"$SHA"'", "device": "d0"}'
expect_grep "map" "$TEST_TMP/body" "missing-field error names the field"
prepare_body "$TEST_TMP/map5.json" d0 0000000000000000000000000000000000000000000000000000000000000000 >"$TEST_TMP/badsha.json"
expect_req 409 "prepare: sha256 differs from model.json" POST "$P0" /v1/partitions/5/prepare \
	"${JSON[@]}" --data-binary @"$TEST_TMP/badsha.json"
expect_grep "sha256" "$TEST_TMP/body" "sha256 error says sha256"
prepare_body "$TEST_TMP/map5.json" d0 xyz >"$TEST_TMP/badsha2.json"
expect_req 400 "prepare: sha256 not hex" POST "$P0" /v1/partitions/5/prepare \
	"${JSON[@]}" --data-binary @"$TEST_TMP/badsha2.json"
expect_grep "sha256" "$TEST_TMP/body" "bad sha256 error names the field"
prepare_body "$TEST_TMP/map5.json" d7 >"$TEST_TMP/baddev.json"
expect_req 409 "prepare: device is not this worker" POST "$P0" /v1/partitions/5/prepare \
	"${JSON[@]}" --data-binary @"$TEST_TMP/baddev.json"
expect_grep "this worker is 'd0'" "$TEST_TMP/body" "device error names this worker"
prepare_body "$TEST_TMP/map5.json" d0 "$SHA" no-such-model >"$TEST_TMP/badmodel.json"
expect_req 409 "prepare: map is for another model" POST "$P0" /v1/partitions/5/prepare \
	"${JSON[@]}" --data-binary @"$TEST_TMP/badmodel.json"
expect_grep "the map is for model tiny-resnet" "$TEST_TMP/body" "model mismatch is explained"
expect_req 409 "prepare: map version differs from the path" POST "$P0" /v1/partitions/5/prepare \
	"${JSON[@]}" --data-binary @"$TEST_TMP/prep1.json"
expect_grep "the map is version 1, not 5" "$TEST_TMP/body" "version mismatch is explained"
/usr/bin/python3 - "$TEST_TMP/prep1.json" >"$TEST_TMP/nomodel.json" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1])); j["model"] = "ghost"; j["map"]["model"] = "ghost"; j["map"]["version"] = 5
print(json.dumps(j))
EOF
expect_req 404 "prepare: unknown model" POST "$P0" /v1/partitions/5/prepare \
	"${JSON[@]}" --data-binary @"$TEST_TMP/nomodel.json"
expect_grep "ghost" "$TEST_TMP/body" "unknown model is named"
/usr/bin/python3 - "$TEST_TMP/prep1.json" >"$TEST_TMP/badmap.json" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1])); j["map"]["version"] = 5; j["map"]["stages"] = j["map"]["stages"][:2]
print(json.dumps(j))
EOF
expect_req 400 "prepare: map does not fit the model's stages" POST "$P0" /v1/partitions/5/prepare \
	"${JSON[@]}" --data-binary @"$TEST_TMP/badmap.json"
expect_grep "stage" "$TEST_TMP/body" "map/plan mismatch mentions stages"
expect_req 409 "prepare: held version with another model" POST "$P0" /v1/partitions/1/prepare \
	"${JSON[@]}" --data-binary @"$TEST_TMP/nomodel.json"
expect_req 404 "commit: version not prepared" POST "$P0" /v1/partitions/9/commit
expect_req 404 "drop: version not held" DELETE "$P0" /v1/partitions/9

# ---- bad stage calls ------------------------------------------------------
MAP1=(--map "$TEST_TMP/map1.json" --version 1 --device d0)
expect_call 200 "valid stage call" "$P0" "${MAP1[@]}" --stage 0 --out "$TEST_TMP/s0.npy"
expect_req 400 "stage: garbage body" POST "$P0" /v1/stage \
	-H 'Content-Type: application/x-dicefleet-frame' --data-binary 'hello, worker'
expect_grep '"code"' "$TEST_TMP/body" "errors are JSON with a code"
expect_req 415 "stage: wrong content type" POST "$P0" /v1/stage \
	-H 'Content-Type: application/json' --data-binary '{}'
expect_call 400 "stage: truncated message" "$P0" "${MAP1[@]}" --stage 0 --truncate 200
expect_call 404 "stage: version not held" "$P0" --map "$TEST_TMP/map1.json" --version 42 --device d0 --stage 0
expect_grep "partition_version 42" "$TEST_TMP/call.err" "unknown version is named"
NST=$(/usr/bin/python3 -c "import json; print(len(json.load(open('$TEST_TMP/map1.json'))['stages']))")
LASTNEURON=$(/usr/bin/python3 -c "
import json; m = json.load(open('$TEST_TMP/map1.json'))
print([i for i, s in enumerate(m['stages']) if s['gateway'] and s['neurons'] > 0][-1])")
expect_call 404 "stage: stage the device does not hold (logits on the gateway)" "$P0" "${MAP1[@]}" --stage "$LASTNEURON" --ids 0
expect_call 400 "stage: neuron id out of range" "$P0" "${MAP1[@]}" --stage 0 --ids 0,1,99
expect_call 400 "stage: neuron ids not ascending" "$P0" "${MAP1[@]}" --stage 0 --ids 3,1
expect_call 400 "stage: wrong input shape" "$P0" "${MAP1[@]}" --stage 0 --bad-shape
expect_call 409 "stage: model name mismatch" "$P0" "${MAP1[@]}" --stage 0 --model-name other
expect_req 413 "stage: body over --max-body" POST "$P0" /v1/stage \
	-H 'Content-Type: application/x-dicefleet-frame' --data-binary @<(head -c 2000000 /dev/zero)
expect_req 405 "GET /v1/stage is 405" GET "$P0" /v1/stage
expect_req 404 "unknown path is 404" GET "$P0" /v2/nothing
expect_req 200 "healthz still answers after bad requests" GET "$P0" /healthz
[ "$(jget "$TEST_TMP/body" 'j["stage_errors"] >= 7')" = True ] &&
	pass "stage_errors counted" || fail "$(cat "$TEST_TMP/body")"
expect_status 0 "inference still correct after bad requests" \
	"$CALL" infer --model "$M" --map "$TEST_TMP/map1.json" --version 1 \
	--worker "d0=http://127.0.0.1:$P0" --tol 1e-4

SIDE=""
# Side inputs: find a stage whose request carries more than one frame (the
# residual add) and send it with the side frame missing.
for s in $(seq 0 $((NST - 1))); do
	"$CALL" call --model "$M" "${MAP1[@]}" --stage "$s" --dump "$TEST_TMP/s.bin" 2>/dev/null || continue
	"$CALL" call --model "$M" "${MAP1[@]}" --stage "$s" --frames 1 --dump "$TEST_TMP/s1.bin" 2>/dev/null || continue
	if ! cmp -s "$TEST_TMP/s.bin" "$TEST_TMP/s1.bin"; then SIDE=$s; break; fi
done
if [ -n "$SIDE" ]; then
	expect_call 400 "stage $SIDE: side input frame missing" "$P0" "${MAP1[@]}" --stage "$SIDE" --frames 1
	expect_call 200 "stage $SIDE with its side input" "$P0" "${MAP1[@]}" --stage "$SIDE"
else
	fail "no stage with a side input found in tiny-resnet"
fi

# ---- four devices ---------------------------------------------------------
start_worker P1 d1
start_worker P2 d2
start_worker P3 d3
# P1 runs with the default --max-body (64 MiB), yet a prepare body has its
# own 8 MiB cap: a partition map is small, and JSON expands inside Jansson.
expect_req 413 "prepare: body over the 8 MiB control-route cap" POST "$P1" /v1/partitions/9/prepare \
	"${JSON[@]}" --data-binary @<(head -c 9000000 /dev/zero | tr '\0' ' ')
for d in 0 1 2 3; do
	port_var="P$d"
	prepare_body "$TEST_TMP/map4.json" "d$d" >"$TEST_TMP/prep4_$d.json"
	expect_req 200 "prepare v2 (4 devices) on d$d" POST "${!port_var}" /v1/partitions/2/prepare \
		"${JSON[@]}" --data-binary @"$TEST_TMP/prep4_$d.json"
	W4=$(jget "$TEST_TMP/body" 'j["weight_bytes"]')
	[ "$W4" -gt 0 ] && [ "$W4" -lt "$W1" ] && pass "d$d of 4 holds fewer weight bytes ($W4 < $W1)" ||
		fail "d$d weight_bytes $W4 vs 1-device $W1"
done
expect_status 0 "inference through 4 workers matches in-process oneDNN" \
	"$CALL" infer --model "$M" --map "$TEST_TMP/map4.json" --version 2 \
	--worker "d0=http://127.0.0.1:$P0" --worker "d1=http://127.0.0.1:$P1" \
	--worker "d2=http://127.0.0.1:$P2" --worker "d3=http://127.0.0.1:$P3" --tol 1e-4
cat "$TEST_TMP/out"
expect_status 1 "inference through 4 workers fails when one is unreachable" \
	"$CALL" infer --model "$M" --map "$TEST_TMP/map4.json" --version 2 \
	--worker "d0=http://127.0.0.1:$P0" --worker "d1=http://127.0.0.1:1" \
	--worker "d2=http://127.0.0.1:$P2" --worker "d3=http://127.0.0.1:$P3" --tol 1e-4
# d0 asked for a neuron d1 holds.
OTHER=$(/usr/bin/python3 -c "
import json; m = json.load(open('$TEST_TMP/map4.json'))
print(m['stages'][0]['primary'].index(1))")
expect_call 404 "stage: neuron not held by this device" "$P0" --map "$TEST_TMP/map4.json" \
	--version 2 --device d0 --stage 0 --ids "$OTHER"
expect_grep "not held" "$TEST_TMP/call.err" "not-held error says so"

# Versions on d0: v1 committed, v2 prepared; commit v2; a third version
# drops the oldest uncommitted one (v1).
expect_req 200 "healthz lists two versions" GET "$P0" /healthz
[ "$(jget "$TEST_TMP/body" '[(v["version"], v["state"]) for v in j["versions"]]')" = "[(1, 'committed'), (2, 'prepared')]" ] &&
	pass "v1 committed, v2 prepared" || fail "$(cat "$TEST_TMP/body")"
expect_req 200 "commit v2" POST "$P0" /v1/partitions/2/commit
expect_call 200 "v1 still serves after v2 is committed" "$P0" "${MAP1[@]}" --stage 0
expect_req 200 "prepare v3 while two are held" POST "$P0" /v1/partitions/3/prepare \
	"${JSON[@]}" --data-binary @"$TEST_TMP/prep3.json"
expect_req 200 "healthz after the third prepare" GET "$P0" /healthz
[ "$(jget "$TEST_TMP/body" '[(v["version"], v["state"]) for v in j["versions"]]')" = "[(2, 'committed'), (3, 'prepared')]" ] &&
	pass "v1 (oldest, not committed) was dropped" || fail "$(cat "$TEST_TMP/body")"
expect_call 404 "v1 no longer serves" "$P0" "${MAP1[@]}" --stage 0
expect_req 200 "drop v3" DELETE "$P0" /v1/partitions/3
expect_req 404 "drop v3 again" DELETE "$P0" /v1/partitions/3
expect_req 200 "healthz after drop" GET "$P0" /healthz
[ "$(jget "$TEST_TMP/body" '[v["version"] for v in j["versions"]], j["version"]')" = "[2] 2" ] &&
	pass "only v2 left, committed" || fail "$(cat "$TEST_TMP/body")"

# Concurrent calls: several clients at once, every answer 200.
expect_status 0 "4 concurrent clients x 25 calls, no errors" "$CALL" bench \
	--url "http://127.0.0.1:$P0" --model "$M" --map "$TEST_TMP/map4.json" \
	--version 2 --device d0 --stage 0 --clients 4 --calls 25
cat "$TEST_TMP/out"

# Drop while calls are in flight: the drop waits, the calls finish.
"$CALL" bench --url "http://127.0.0.1:$P1" --model "$M" --map "$TEST_TMP/map4.json" \
	--version 2 --device d1 --stage 0 --clients 2 --calls 200 >"$TEST_TMP/bench_drop" 2>&1 &
BP=$!
sleep 0.3
expect_req 200 "drop v2 on d1 under load" DELETE "$P1" /v1/partitions/2
wait "$BP" || true
expect_req 200 "d1 still answers healthz after the drop" GET "$P1" /healthz
[ "$(jget "$TEST_TMP/body" 'j["versions"]')" = "[]" ] && pass "d1 holds nothing" || fail "$(cat "$TEST_TMP/body")"

# ---- cluster token --------------------------------------------------------
DICEFLEET_CLUSTER_TOKEN=s3cret start_worker PA da
"$CALL" map --model "$M" --devices 1 --version 1 --out "$TEST_TMP/mapa.json"
sed 's/"d0"/"da"/' "$TEST_TMP/mapa.json" >"$TEST_TMP/mapa2.json"
prepare_body "$TEST_TMP/mapa2.json" da >"$TEST_TMP/prepa.json"
expect_req 200 "token: healthz needs none" GET "$PA" /healthz
expect_req 401 "token: prepare without a token" POST "$PA" /v1/partitions/1/prepare \
	"${JSON[@]}" --data-binary @"$TEST_TMP/prepa.json"
expect_req 401 "token: prepare with a wrong token" POST "$PA" /v1/partitions/1/prepare \
	"${JSON[@]}" -H 'Authorization: Bearer s3creT' --data-binary @"$TEST_TMP/prepa.json"
expect_req 401 "token: prepare with a longer token" POST "$PA" /v1/partitions/1/prepare \
	"${JSON[@]}" -H 'Authorization: Bearer s3cret0' --data-binary @"$TEST_TMP/prepa.json"
expect_req 200 "token: prepare with the token" POST "$PA" /v1/partitions/1/prepare \
	"${JSON[@]}" -H 'Authorization: Bearer s3cret' --data-binary @"$TEST_TMP/prepa.json"
expect_req 401 "token: commit without a token" POST "$PA" /v1/partitions/1/commit
expect_req 401 "token: drop without a token" DELETE "$PA" /v1/partitions/1
DICEFLEET_CLUSTER_TOKEN= expect_call 401 "token: stage call without a token" "$PA" \
	--map "$TEST_TMP/mapa2.json" --version 1 --device da --stage 0
DICEFLEET_CLUSTER_TOKEN=wrong expect_call 401 "token: stage call with a wrong token" "$PA" \
	--map "$TEST_TMP/mapa2.json" --version 1 --device da --stage 0
DICEFLEET_CLUSTER_TOKEN=s3cret expect_call 200 "token: stage call with the token" "$PA" \
	--map "$TEST_TMP/mapa2.json" --version 1 --device da --stage 0

# ---- fault injection ------------------------------------------------------
expect_req 403 "fault: runtime switch off without --enable-fault-injection" POST "$P0" /v1/fault \
	"${JSON[@]}" --data-binary '{"delay_ms": 10}'
start_worker PF df --enable-fault-injection --log-level debug
"$CALL" map --model "$M" --devices 1 --version 1 --out "$TEST_TMP/mapf.json"
sed 's/"d0"/"df"/' "$TEST_TMP/mapf.json" >"$TEST_TMP/mapf2.json"
prepare_body "$TEST_TMP/mapf2.json" df >"$TEST_TMP/prepf.json"
expect_req 200 "fault worker: prepare" POST "$PF" /v1/partitions/1/prepare \
	"${JSON[@]}" --data-binary @"$TEST_TMP/prepf.json"
MAPF=(--map "$TEST_TMP/mapf2.json" --version 1 --device df --stage 0)
expect_req 200 "fault: set a 400 ms delay" POST "$PF" /v1/fault "${JSON[@]}" --data-binary '{"delay_ms": 400}'
t0=$(date +%s%N)
expect_call 200 "fault: delayed call still answers" "$PF" "${MAPF[@]}"
ms=$((($(date +%s%N) - t0) / 1000000))
[ "$ms" -ge 400 ] && pass "fault: the call took >= 400 ms ($ms)" || fail "fault delay: call took $ms ms"
expect_req 200 "fault: fail every call" POST "$PF" /v1/fault "${JSON[@]}" \
	--data-binary '{"delay_ms": 0, "fail_rate": 1}'
expect_call 500 "fault: injected 500" "$PF" "${MAPF[@]}"
expect_req 200 "fault: drop mode" POST "$PF" /v1/fault "${JSON[@]}" --data-binary '{"fail_mode": "drop"}'
expect_status 3 "fault: connection dropped" "$CALL" call --url "http://127.0.0.1:$PF" --model "$M" "${MAPF[@]}"
expect_req 400 "fault: bad fail_rate" POST "$PF" /v1/fault "${JSON[@]}" --data-binary '{"fail_rate": 2}'
expect_req 400 "fault: unknown field" POST "$PF" /v1/fault "${JSON[@]}" --data-binary '{"fail": 1}'
expect_req 200 "fault: off again" POST "$PF" /v1/fault "${JSON[@]}" --data-binary '{"fail_rate": 0}'
expect_call 200 "fault: calls succeed again" "$PF" "${MAPF[@]}"
expect_grep "fault: failing a stage call" "$TEST_TMP/PF.log" "injected faults are logged at debug"

# Flags: half of the calls fail, seeded.
start_worker PG dg --fault-fail-rate 0.5 --fault-seed 7 --fault-delay-ms 5
sed 's/"d0"/"dg"/' "$TEST_TMP/mapf.json" >"$TEST_TMP/mapg.json"
prepare_body "$TEST_TMP/mapg.json" dg >"$TEST_TMP/prepg.json"
expect_req 200 "fault flags: prepare" POST "$PG" /v1/partitions/1/prepare \
	"${JSON[@]}" --data-binary @"$TEST_TMP/prepg.json"
ok=0; bad=0
for _ in $(seq 40); do
	s=$("$CALL" call --url "http://127.0.0.1:$PG" --model "$M" --map "$TEST_TMP/mapg.json" \
		--version 1 --device dg --stage 0 2>/dev/null | sed -n 's/^HTTP //p')
	if [ "$s" = 200 ]; then ok=$((ok + 1)); elif [ "$s" = 500 ]; then bad=$((bad + 1)); fi
done
[ "$ok" -ge 8 ] && [ "$bad" -ge 8 ] && [ $((ok + bad)) -eq 40 ] &&
	pass "--fault-fail-rate 0.5: $ok ok, $bad failed of 40" || fail "fault rate: $ok ok, $bad failed"
expect_req 200 "fault flags: healthz reports the faults" GET "$PG" /healthz
[ "$(jget "$TEST_TMP/body" 'j["faults_injected"] == j["stage_errors"] and j["faults_injected"] > 0')" = True ] &&
	pass "faults_injected counted" || fail "$(cat "$TEST_TMP/body")"

# ---- fmnist-vgg, once trained ---------------------------------------------
VGG="$DF_SOURCE_DIR/models/fmnist-vgg"
if [ -s "$VGG/model.json" ] && [ -s "$VGG/model.onnx" ]; then
	ln -s "$VGG" "$MODELS/fmnist-vgg"
	VSHA=$(jget "$VGG/model.json" 'j["sha256"]')
	"$CALL" map --model "$MODELS/fmnist-vgg" --devices 2 --version 7 --out "$TEST_TMP/mapv.json"
	for d in 0 1; do
		port_var="P$d"
		prepare_body "$TEST_TMP/mapv.json" "d$d" "$VSHA" fmnist-vgg >"$TEST_TMP/prepv$d.json"
		expect_req 200 "fmnist-vgg: prepare on d$d" POST "${!port_var}" /v1/partitions/7/prepare \
			"${JSON[@]}" --data-binary @"$TEST_TMP/prepv$d.json"
	done
	expect_status 0 "fmnist-vgg through 2 workers matches in-process" \
		"$CALL" infer --model "$MODELS/fmnist-vgg" --map "$TEST_TMP/mapv.json" --version 7 \
		--worker "d0=http://127.0.0.1:$P0" --worker "d1=http://127.0.0.1:$P1" --tol 1e-4 \
		--input "$DF_SOURCE_DIR/tests/unit/data/img/pre_fmnist_t10k_0.npy"
else
	echo "skip: models/fmnist-vgg not trained yet"
fi

# ---- shutdown --------------------------------------------------------------
kill -TERM "$P0_PID"
for _ in $(seq 50); do kill -0 "$P0_PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$P0_PID" 2>/dev/null; then fail "worker still running 5 s after SIGTERM"; else
	wait "$P0_PID" && pass "SIGTERM: worker exits 0" || fail "SIGTERM: exit status $?"
fi
expect_grep "stopped" "$TEST_TMP/P0.log" "SIGTERM: the worker logs its stop"

# Every other worker stops cleanly too, and no log holds a sanitizer report
# (when built with DICEFLEET_SANITIZE, leaks make the exit status nonzero).
for p in "${PIDS[@]}"; do
	[ "$p" = "$P0_PID" ] && continue
	kill -TERM "$p" 2>/dev/null || true
	if wait "$p"; then pass "worker $p exits 0 on SIGTERM"; else fail "worker $p exit status $?"; fi
done
PIDS=()
if grep -l "AddressSanitizer\|LeakSanitizer\|runtime error:" "$TEST_TMP"/*.log; then
	fail "sanitizer reports in worker logs"
else
	pass "no sanitizer reports in worker logs"
fi
finish

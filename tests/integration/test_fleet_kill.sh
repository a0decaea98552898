# A worker SIGKILLed under load (4 workers, fmnist-vgg, robustdice ratio
# 0.25 standby, 16 concurrent clients through `fleet_client load`):
#
# Phase 1, self-healing (--repartition-after-ms 3000). Over the whole run
# every request answers 2xx (transport errors count as failures). Answers
# are truthful:
#  - requests that ended before the kill: coverage 1.0, no failed device,
#    on the initial version v1;
#  - requests that started after the kill (the worker is reaped, so every
#    stage call of theirs finds it dead) and were served on v1: coverage
#    < 1, degraded true, and the killed device named in failed_devices;
#  - every answer on a later version: coverage 1.0, no failed device;
#  - degraded == (coverage < 1) in every answer, and an answer with
#    coverage < 1 names at least one failed device.
# The gateway repartitions over the survivors (a version v2 > v1 without
# the killed device, answers on it with coverage 1.0), and GET
# /admin/events has a health row taking the device to DOWN after the kill
# (an intermediate SUSPECT is tolerated). The worker restarted on a new
# port and re-registered with POST /admin/devices rejoins: a version v3 > v2
# holding it, answers on v3 with coverage 1.0, an UP event after the
# restart, and it holds weights again (/healthz and GET /admin/partition).
#
# Phase 2, accuracy agreement (a new gateway, repartitioning off in
# practice): with the same worker killed and known DOWN, `fleet_client
# accuracy --limit 1000` equals `dicefleet eval --devices 4 --fail 1` for
# that device's index in the map (same method, ratio, impute, calibration
# images) image for image in the count of correct answers.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fleet_lib.sh"

model=fmnist-vgg
require_models "$model"
victim=2 # w2: its index in the map is looked up, not assumed
vid=w$victim
limit=${FLEET_KILL_LIMIT:-1000}
calib=256
sample=$DF_SOURCE_DIR/models/samples/0000-ankle-boot.png
export DICEFLEET_ADMIN_TOKEN=kill-test-admin-token
auth=(-H "Authorization: Bearer $DICEFLEET_ADMIN_TOKEN")
t_begin=$SECONDS
now_ms() { date +%s%3N; }
# admin PATH: GET PATH into $TEST_TMP/a.json (empty object on failure).
admin() { curl -s -o "$TEST_TMP/a.json" "${auth[@]}" "$GW_URL$1" || echo '{}' >"$TEST_TMP/a.json"; }
# wait_admin PATH PYEXPR SECONDS: polls until PYEXPR (on j) is True.
wait_admin() {
	local i
	for ((i = 0; i < $3 * 5; i++)); do
		admin "$1"
		[ "$(json_get "$TEST_TMP/a.json" "$2" 2>/dev/null)" = True ] && return 0
		sleep 0.2
	done
	return 1
}
kill_victim() {
	kill -KILL "${WORKER_PIDS[victim - 1]}"
	wait "${WORKER_PIDS[victim - 1]}" 2>/dev/null || true
}

start_workers 4

# ---- phase 1: kill, heal, rejoin under load -------------------------------
start_gateway --db "$TEST_TMP/kill.db" --model "$model" --calib-images $calib \
	--repartition-after-ms 3000 "${WORKER_ARGS[@]}"
admin /admin/partition
v1=$(json_get "$TEST_TMP/a.json" 'j["version"]')
[ "$(json_get "$TEST_TMP/a.json" '[d["id"] for d in j["devices"]]')" = "['w1', 'w2', 'w3', 'w4']" ] &&
	pass "version $v1 over w1..w4" || fail "partition: $(head -c 300 "$TEST_TMP/a.json")"

"$FLEET_CLIENT" load --url "$GW_URL" --model "$model" --image "$sample" \
	--clients 16 --duration-s 120 --out "$TEST_TMP/load.jsonl" \
	>"$TEST_TMP/load.json" 2>"$TEST_TMP/load.err" &
LOAD_PID=$!
FLEET_PIDS+=($LOAD_PID)
sleep 2 # baseline
t_kill0=$(now_ms)
kill_victim
t_kill=$(now_ms)
echo "killed $vid (kill issued and reaped within $((t_kill - t_kill0)) ms)"
wait_admin /admin/partition "j.get(\"version\", 0) > $v1 and \"$vid\" not in [d[\"id\"] for d in j[\"devices\"]]" 30 &&
	pass "repartitioned without $vid after $(($(now_ms) - t_kill)) ms" ||
	fail "no repartition without $vid: $(head -c 300 "$TEST_TMP/a.json")"
v2=$(json_get "$TEST_TMP/a.json" 'j.get("version", 0)')
sleep 1 # answers on v2

restart_worker $victim
t_restart=$(now_ms)
code=$(curl -s -o "$TEST_TMP/post.json" -w '%{http_code}' "${auth[@]}" -X POST \
	--data-binary "{\"id\": \"$vid\", \"url\": \"$WORKER_URL\"}" "$GW_URL/admin/devices" || true)
[ "$code" = 200 ] && pass "$vid re-registered at its new URL" || fail "POST /admin/devices: $code $(cat "$TEST_TMP/post.json")"
wait_admin /admin/partition "j.get(\"version\", 0) > $v2 and any(d[\"id\"] == \"$vid\" and d[\"neurons\"] > 0 and d[\"weight_bytes\"] > 0 for d in j[\"devices\"])" 30 &&
	pass "$vid rejoined (version $(json_get "$TEST_TMP/a.json" 'j["version"]'), it holds neurons) $(($(now_ms) - t_restart)) ms after the restart" ||
	fail "$vid did not rejoin: $(head -c 300 "$TEST_TMP/a.json")"
v3=$(json_get "$TEST_TMP/a.json" 'j.get("version", 0)')
sleep 1 # answers on v3
kill -TERM $LOAD_PID
load_rc=0
wait $LOAD_PID || load_rc=$?
wb=$(curl -s "$WORKER_URL/healthz" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("weight_bytes", 0))' || echo 0)
[ "${wb:-0}" -gt 0 ] && pass "$vid /healthz: $wb weight bytes" || fail "$vid holds no weights: $wb"

admin "/admin/events?device=$vid&limit=1000"
cp "$TEST_TMP/a.json" "$TEST_TMP/events.json"
# Verdicts on the per-request log; one "ok|FAIL<TAB>text" line each.
python3 - "$TEST_TMP/load.jsonl" "$TEST_TMP/load.json" "$TEST_TMP/events.json" \
	"$(json_get "$TEST_TMP/load.json" 'j["start_unix_ms"]')" \
	"$t_kill0" "$t_kill" "$t_restart" "$vid" "$v1" "$v2" "$v3" "$load_rc" >"$TEST_TMP/verdicts" <<'EOF' || fail "analysis crashed"
import json, sys
log, summ, evf, start, t_kill0, t_kill, t_restart, vid, v1, v2, v3, load_rc = sys.argv[1:13]
rows = [json.loads(l) for l in open(log)]
summary = json.load(open(summ))
events = json.load(open(evf)).get("events", [])
start, t_kill0, t_kill, t_restart = int(start), int(t_kill0), int(t_kill), int(t_restart)
v1, v2, v3 = int(v1), int(v2), int(v3)
# kill_t0: the kill is issued after it; kill_t: the worker is reaped before it
kill_t0, kill_t, restart_t = t_kill0 - start, t_kill - start, t_restart - start
def say(ok, text):
    print(("ok" if ok else "FAIL") + "\t" + text)
bad = [r for r in rows if not 200 <= r["status"] < 300]
say(len(rows) >= 100 and not bad and summary["non_2xx"] == 0 and load_rc == "0",
    f"{len(rows)} requests, {len(bad)} not 2xx (load exit {load_rc}; first bad: {bad[:1]})")
ok = [r for r in rows if 200 <= r["status"] < 300]
incons = [r for r in ok if r["degraded"] != (r["coverage"] < 1) or (r["coverage"] < 1 and not r["failed_devices"])]
say(not incons, f"degraded == (coverage < 1), and coverage < 1 names a failed device, in every answer ({incons[:1]})")
before = [r for r in ok if r["t_ms"] + r["latency_ms"] < kill_t0]
wrong = [r for r in before if not (r["coverage"] == 1 and not r["failed_devices"] and r["partition_version"] == v1)]
say(len(before) >= 10 and not wrong,
    f"{len(before)} answers before the kill: coverage 1.0, none failed, version {v1} ({len(wrong)} not: {wrong[:1]})")
after = [r for r in ok if r["t_ms"] > kill_t and r["partition_version"] == v1]
wrong = [r for r in after if not (r["coverage"] < 1 and r["degraded"] and vid in r["failed_devices"])]
say(len(after) >= 5 and not wrong,
    f"{len(after)} answers on v{v1} started after the kill: coverage < 1 (min "
    f"{min((r['coverage'] for r in after), default=None)}), degraded, {vid} named ({len(wrong)} not: {wrong[:1]})")
later = [r for r in ok if r["partition_version"] > v1]
wrong = [r for r in later if not (r["coverage"] == 1 and not r["failed_devices"])]
say(not wrong, f"{len(later)} answers on versions > {v1}: coverage 1.0, none failed ({len(wrong)} not: {wrong[:1]})")
on2 = [r for r in ok if r["partition_version"] == v2]
say(v2 > v1 and len(on2) > 0, f"{len(on2)} answers on v{v2} (without {vid}), first {(on2[0]['t_ms'] - kill_t) if on2 else None:.0f} ms after the kill" if on2 else f"no answer on v{v2}")
on3 = [r for r in ok if r["partition_version"] == v3 and r["t_ms"] > restart_t]
say(v3 > v2 and len(on3) > 0, f"{len(on3)} answers on v{v3} (with {vid} back) after the restart")
down = [e for e in events if e["kind"] == "health" and e["to_state"] == "DOWN" and e["ts_ms"] >= t_kill0]
say(len(down) >= 1, f"DOWN event for {vid} {down[0]['ts_ms'] - t_kill0 if down else None} ms after the kill"
    f" (transitions: {[(e['from_state'], e['to_state']) for e in events if e['kind'] == 'health']})")
up = [e for e in events if e["kind"] == "health" and e["to_state"] == "UP" and e["ts_ms"] >= t_restart]
say(len(up) >= 1, f"UP event for {vid} {up[0]['ts_ms'] - t_restart if up else None} ms after the restart")
EOF
while IFS=$'\t' read -r verdict text; do
	if [ "$verdict" = ok ]; then pass "$text"; else fail "$text"; fi
done <"$TEST_TMP/verdicts"
[ -s "$TEST_TMP/verdicts" ] || fail "no verdicts; load: $(head -c 300 "$TEST_TMP/load.err")"
echo "load summary: $(cat "$TEST_TMP/load.json")"
stop_gateway

# ---- phase 2: accuracy with the worker known DOWN = dicefleet eval ---------
"$DICEFLEET" eval "$MODELS_DIR/$model" --limit "$limit" --threads 1 --devices 4 \
	--fail 1 --impute mean --calib-images $calib >"$TEST_TMP/eval.json" 2>"$TEST_TMP/eval.err" ||
	fail "dicefleet eval: $(head -c 300 "$TEST_TMP/eval.err")"
# repartitioning would need a day of DOWN: the partition stays over w1..w4
start_gateway --db "$TEST_TMP/acc.db" --model "$model" --calib-images $calib \
	--impute mean --repartition-after-ms 86400000 "${WORKER_ARGS[@]}"
admin /admin/partition
pv=$(json_get "$TEST_TMP/a.json" 'j["version"]')
idx=$(json_get "$TEST_TMP/a.json" "[d[\"id\"] for d in j[\"devices\"]].index(\"$vid\")")
[ "$(json_get "$TEST_TMP/a.json" '(j["method"], j["ratio"], j["replica_mode"], j["copies"], len(j["devices"]))')" = "('robustdice', 0.25, 'standby', 2, 4)" ] &&
	pass "phase 2 map: robustdice 0.25 standby over 4 devices, $vid is d$idx" ||
	fail "phase 2 map: $(head -c 300 "$TEST_TMP/a.json")"
kill_victim
wait_admin /admin/devices "any(d[\"id\"] == \"$vid\" and d[\"state\"] == \"DOWN\" for d in j[\"devices\"])" 20 &&
	pass "$vid killed and DOWN" || fail "$vid not DOWN: $(head -c 300 "$TEST_TMP/a.json")"
if "$FLEET_CLIENT" accuracy --url "$GW_URL" --models "$MODELS_DIR" --model "$model" \
	--limit "$limit" >"$TEST_TMP/fleet.json" 2>"$TEST_TMP/fleet.err"; then
	want=$(json_get "$TEST_TMP/eval.json" "[round(c[\"accuracy\"] * j[\"images\"]) for c in j[\"per_combo\"] if c[\"failed\"] == [\"d$idx\"]][0]")
	got=$(json_get "$TEST_TMP/fleet.json" 'j["correct"]')
	[ "$got" = "$want" ] && pass "$vid down: fleet $got/$limit correct = dicefleet eval --fail d$idx $want/$limit" ||
		fail "$vid down: fleet $got/$limit correct, dicefleet eval --fail d$idx $want/$limit"
else
	fail "fleet accuracy: $(head -c 300 "$TEST_TMP/fleet.err")"
fi
admin /admin/partition
[ "$(json_get "$TEST_TMP/a.json" 'j["version"]')" = "$pv" ] && pass "no repartition during phase 2" ||
	fail "phase 2 repartitioned: version $(json_get "$TEST_TMP/a.json" 'j["version"]')"
echo "fleet kill: $((SECONDS - t_begin)) s"
finish

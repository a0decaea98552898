# A worker frozen with SIGSTOP under load (4 workers, fmnist-mobilenet,
# robustdice ratio 0.25 standby, 3 concurrent clients), then resumed with
# SIGCONT. A stopped process keeps its sockets: connections are accepted
# and nothing answers, so only deadlines detect it (unlike a kill). The
# gateway runs with latency-derived stage deadlines (floor 300 ms, cap
# 1500 ms), a 5 s request deadline and no self-healing in the test's time.
#
# Checks:
#  - every request answers 200, each within the request deadline (+ 1 s
#    margin for a loaded machine); the measured max is printed;
#  - answers are truthful: degraded == (coverage < 1), an answer with
#    coverage < 1 names a failed device, and while the worker is stopped
#    some answers say coverage < 1 and name it;
#  - the device goes UP -> SUSPECT -> DOWN (GET /admin/events, in that
#    order), is DOWN in GET /admin/devices, /metrics and the devices table;
#    once DOWN, requests skip it (answers stay fast);
#  - after SIGCONT: a DOWN -> UP event, UP in /admin/devices, answers with
#    coverage 1.0 again.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fleet_lib.sh"

model=fmnist-mobilenet
require_models "$model"
sample=$DF_SOURCE_DIR/models/samples/0002-trouser.png
db="$TEST_TMP/sigstop.db"
victim=w2
request_timeout_ms=5000
clients=3
export DICEFLEET_ADMIN_TOKEN=sigstop-test-admin-token
auth=(-H "Authorization: Bearer $DICEFLEET_ADMIN_TOKEN")
sql() { sqlite3 -batch -noheader "$db" "$1"; }
# admin PATH: GET PATH into $TEST_TMP/a.json (empty object on failure).
admin() { curl -s -m 10 -o "$TEST_TMP/a.json" "${auth[@]}" "$GW_URL$1" || echo '{}' >"$TEST_TMP/a.json"; }
# victim_state: the victim's state in GET /admin/devices.
victim_state() {
	admin /admin/devices
	json_get "$TEST_TMP/a.json" '[d["state"] for d in j.get("devices", []) if d["id"] == "'$victim'"]'
}
# wait_state STATE SECONDS
wait_state() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		[ "$(victim_state)" = "['$1']" ] && return 0
		sleep 0.1
	done
	return 1
}

# client I: classifies until $TEST_TMP/stop exists; each answer is appended
# to $TEST_TMP/<phase>.log as the JSON body, then "HTTP-code seconds".
client() {
	local phase
	while [ ! -e "$TEST_TMP/stop" ]; do
		phase=$(cat "$TEST_TMP/phase")
		curl -s -m 30 -H 'Content-Type: image/png' --data-binary @"$sample" \
			-w '\n%{http_code} %{time_total}\n' "$GW_URL/v1/classify" \
			>"$TEST_TMP/c$1.out" 2>/dev/null || true
		cat "$TEST_TMP/c$1.out" >>"$TEST_TMP/$phase.$1.log"
	done
}

# summary PHASE: JSON with the answers of a phase (all clients).
summary() {
	cat "$TEST_TMP/$1".*.log 2>/dev/null | python3 -c '
import json, sys
lines = [l.strip() for l in sys.stdin if l.strip()]
out = {"n": 0, "non200": 0, "max_s": 0.0, "lat": [], "partial": 0,
       "names_victim": 0, "untruthful": 0, "full": 0}
body = None
for l in lines:
    parts = l.split()
    if len(parts) != 2 or not parts[0].isdigit():
        body = l
        continue
    code, secs = parts
    out["n"] += 1
    out["max_s"] = max(out["max_s"], float(secs))
    out["lat"].append(float(secs))
    if code != "200":
        out["non200"] += 1
        body = None
        continue
    j = json.loads(body) if body else {}
    body = None
    cov = j.get("coverage", -1)
    failed = j.get("failed_devices", [])
    if j.get("degraded") != (cov < 1) or (cov < 1 and not failed) or not 0 <= cov <= 1:
        out["untruthful"] += 1
    if cov == 1.0:
        out["full"] += 1
    elif cov >= 0:
        out["partial"] += 1
        out["names_victim"] += sys.argv[1] in failed
lat = sorted(out.pop("lat"))
out["p50_s"] = lat[len(lat) // 2] if lat else 0
print(json.dumps(out))
' "$victim"
}

start_workers 4
victim_pid=${WORKER_PIDS[1]}
start_gateway --db "$db" --model "$model" --method robustdice --ratio 0.25 \
	--replica-mode standby --impute zero \
	--stage-timeout-ms 1500 --stage-timeout-floor-ms 300 \
	--stage-timeout-multiplier 4 --request-timeout-ms "$request_timeout_ms" \
	--health-interval-ms 300 --health-timeout-ms 500 --down-after 2 \
	--up-after 2 --repartition-after-ms 600000 "${WORKER_ARGS[@]}"
wait_state UP 10 && pass "$victim UP at start" || fail "$victim not UP: $(cat "$TEST_TMP/a.json")"

echo before >"$TEST_TMP/phase"
client_pids=()
for ((i = 1; i <= clients; i++)); do
	client "$i" &
	client_pids+=($!)
	FLEET_PIDS+=($!)
done
sleep 3

t_stop=$(date +%s%3N)
echo stopped >"$TEST_TMP/phase"
kill -STOP "$victim_pid"
wait_state DOWN 15 && pass "$victim DOWN $(($(date +%s%3N) - t_stop)) ms after SIGSTOP" ||
	fail "$victim not DOWN 15 s after SIGSTOP: $(cat "$TEST_TMP/a.json")"
metric_down=$(curl -s "$GW_URL/metrics" | grep -c "^dicefleet_device_state{device=\"$victim\",state=\"DOWN\"} 1$" || true)
[ "$metric_down" = 1 ] && pass "/metrics: $victim DOWN" ||
	fail "/metrics: $(curl -s "$GW_URL/metrics" | grep "device=\"$victim\"")"
[ "$(sql "select state || ' ' || (consecutive_failures >= 2) from devices where id = '$victim'")" = "DOWN 1" ] &&
	pass "devices table: $victim DOWN, failures counted" ||
	fail "devices table: $(sql "select * from devices where id = '$victim'")"
echo down >"$TEST_TMP/phase"
sleep 2

t_cont=$(date +%s%3N)
echo resumed >"$TEST_TMP/phase"
kill -CONT "$victim_pid"
wait_state UP 15 && pass "$victim UP $(($(date +%s%3N) - t_cont)) ms after SIGCONT" ||
	fail "$victim not UP 15 s after SIGCONT: $(cat "$TEST_TMP/a.json")"
full=0
for ((i = 0; i < 100; i++)); do
	curl -s -m 30 -H 'Content-Type: image/png' --data-binary @"$sample" \
		"$GW_URL/v1/classify" >"$TEST_TMP/c.json" || true
	if [ "$(json_get "$TEST_TMP/c.json" 'j.get("coverage")' 2>/dev/null)" = 1.0 ]; then
		full=1
		break
	fi
	sleep 0.1
done
[ "$full" = 1 ] && pass "coverage 1.0 again after SIGCONT" ||
	fail "no full coverage after SIGCONT: $(head -c 300 "$TEST_TMP/c.json")"
echo after >"$TEST_TMP/phase"
sleep 2
touch "$TEST_TMP/stop"
for p in "${client_pids[@]}"; do
	wait "$p" 2>/dev/null || true
done

# ---- answers --------------------------------------------------------------
limit_s=$(python3 -c "print($request_timeout_ms / 1000 + 1)")
all_max=0
for phase in before stopped down resumed after; do
	s=$(summary "$phase")
	echo "phase $phase: $s"
	echo "$s" >"$TEST_TMP/s.json"
	[ "$(json_get "$TEST_TMP/s.json" 'j["n"] > 0 and j["non200"] == 0')" = True ] &&
		pass "$phase: all $(json_get "$TEST_TMP/s.json" 'j["n"]') requests answered 200" ||
		fail "$phase: $s"
	[ "$(json_get "$TEST_TMP/s.json" 'j["max_s"] < '"$limit_s")" = True ] &&
		pass "$phase: max latency $(json_get "$TEST_TMP/s.json" 'j["max_s"]') s < $limit_s s" ||
		fail "$phase: max latency over $limit_s s: $s"
	[ "$(json_get "$TEST_TMP/s.json" 'j["untruthful"]')" = 0 ] &&
		pass "$phase: degraded == (coverage < 1), failed devices named" ||
		fail "$phase: untruthful answers: $s"
	eval "sum_$phase=\$s"
done
echo "$sum_before" >"$TEST_TMP/s.json"
[ "$(json_get "$TEST_TMP/s.json" 'j["full"] >= 0.9 * j["n"]')" = True ] &&
	pass "before SIGSTOP: full coverage" || fail "before SIGSTOP: $sum_before"
echo "$sum_stopped" >"$TEST_TMP/s.json"
python3 -c 'import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); sys.exit(0 if a["names_victim"] + b["names_victim"] > 0 else 1)' "$sum_stopped" "$sum_down" &&
	pass "while stopped: answers with coverage < 1 name $victim" ||
	fail "no answer named $victim while it was stopped: $sum_stopped $sum_down"
# Calling the stopped worker would cost each request a deadline (>= 0.3 s).
python3 -c 'import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); sys.exit(0 if b["p50_s"] < a["p50_s"] + 0.25 else 1)' "$sum_before" "$sum_down" &&
	pass "while DOWN: requests skip $victim (median $(json_get <(echo "$sum_down") 'j["p50_s"]') s, before $(json_get <(echo "$sum_before") 'j["p50_s"]') s)" ||
	fail "while DOWN: slow answers, is $victim still called? before $sum_before, down $sum_down"

# ---- events ------------------------------------------------------------------
admin "/admin/events?device=$victim&limit=1000"
cp "$TEST_TMP/a.json" "$TEST_TMP/events.json"
echo "events of $victim (ms after SIGSTOP): $(json_get "$TEST_TMP/events.json" '" | ".join("%+d %s->%s (%s)" % (e["ts_ms"] - '"$t_stop"', e["from_state"], e["to_state"], e["cause"]) for e in j["events"] if e["kind"] == "health")')"
seq=$(json_get "$TEST_TMP/events.json" '" ".join("%s>%s" % (e["from_state"], e["to_state"]) for e in j["events"] if e["kind"] == "health" and e["ts_ms"] >= '"$t_stop"')')
python3 - "$seq" <<'EOF' && pass "events after SIGSTOP: UP>SUSPECT, SUSPECT>DOWN, then DOWN>UP" || fail "events after SIGSTOP: $seq"
import sys
seq = sys.argv[1].split()
i = seq.index("UP>SUSPECT") if "UP>SUSPECT" in seq else -1
j = seq.index("SUSPECT>DOWN", i + 1) if i >= 0 and "SUSPECT>DOWN" in seq[i + 1:] else -1
k = seq.index("DOWN>UP", j + 1) if j >= 0 and "DOWN>UP" in seq[j + 1:] else -1
sys.exit(0 if k > j > i >= 0 else 1)
EOF
# The stage call that raised the suspicion waited the latency-derived
# deadline (floor 300 ms), not the 1500 ms cap (when a probe noticed
# first, there is no call to look at).
late=$(json_get "$TEST_TMP/events.json" '" ".join(e["cause"].split("no answer in ")[1].split()[0] for e in j["events"] if e["kind"] == "health" and e["to_state"] == "SUSPECT" and e["ts_ms"] >= '"$t_stop"' and "call late" in e["cause"])')
late=${late%% *}
[ -z "$late" ] || [ "$late" -lt 1500 ] &&
	pass "SUSPECT after a late call: waited ${late:-(probe)} ms (< cap 1500 ms)" ||
	fail "the late call waited $late ms, not under the 1500 ms cap"
[ "$(json_get "$TEST_TMP/events.json" 'all(e["cause"] for e in j["events"] if e["kind"] == "health")')" = True ] &&
	pass "every health event has a cause" || fail "health event without a cause"
[ "$(sql "select count(*) from events where device_id = '$victim' and kind = 'health' and to_state = 'SUSPECT'")" -ge 1 ] &&
	pass "SUSPECT transition stored in SQLite" || fail "no SUSPECT event in SQLite"
[ "$(victim_state)" = "['UP']" ] && pass "$victim UP at the end" || fail "$victim at the end: $(cat "$TEST_TMP/a.json")"
finish

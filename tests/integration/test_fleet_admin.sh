# The gateway's admin API (DESIGN §7) with a real 2-worker fleet
# (fmnist-mobilenet, the fastest shipped model):
#  - auth: no DICEFLEET_ADMIN_TOKEN configured -> 403; missing token, wrong
#    token, token in another header or in the query -> 401; nothing in the
#    database changes on a refused request;
#  - GET /admin/devices, /admin/partition, /admin/events (paged by cursor,
#    filtered by device and since) with the right token;
#  - PUT /admin/replication: bad bodies are 400 naming the field and change
#    nothing; ratio 0 -> 1 under a classify load makes new versions (the
#    DB's active partition follows, the old version is dropped on the
#    workers, a worker's weight bytes grow), every request answers 200 on
#    the old or the new version, and a restart keeps the new ratio and
#    version;
#  - POST /admin/devices registers (201, then 200), DELETE removes (a
#    device of the active partition: a new version over the others).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fleet_lib.sh"

model=${FLEET_ADMIN_MODEL:-fmnist-mobilenet}
require_models "$model"
db="$TEST_TMP/admin.db"
sql() { sqlite3 -batch -noheader "$db" "$1"; }
TOKEN=admin-test-token-0123456789

# admin_call WANT DESC METHOD PATH [curl args...]: checks the HTTP status;
# the body is in $TEST_TMP/a.json.
admin_call() {
	local want=$1 desc=$2 method=$3 path=$4 code
	shift 4
	code=$(curl -s -o "$TEST_TMP/a.json" -w '%{http_code}' -X "$method" "$@" \
		"$GW_URL$path" || true)
	if [ "$code" = "$want" ]; then pass "$desc"; else
		fail "$desc: HTTP $code, expected $want: $(head -c 300 "$TEST_TMP/a.json")"; fi
}
auth=(-H "Authorization: Bearer $TOKEN")

export DICEFLEET_CLUSTER_TOKEN=fleet-admin-cluster-token
start_workers 2

# ---- no admin token configured: 403 everywhere ----------------------------
unset DICEFLEET_ADMIN_TOKEN
start_gateway --db "$db" --model "$model" --impute zero --ratio 0.25 "${WORKER_ARGS[@]}"
for p in /admin/devices /admin/partition /admin/events; do
	admin_call 403 "no token configured: GET $p is 403" GET "$p" "${auth[@]}"
done
json_get "$TEST_TMP/a.json" 'j["error"]["code"]' | grep -q . &&
	pass "403 body is a JSON error" || fail "403 body: $(cat "$TEST_TMP/a.json")"
stop_gateway TERM

# ---- token configured ----------------------------------------------------
export DICEFLEET_ADMIN_TOKEN=$TOKEN
start_gateway --db "$db" --model "$model" --impute zero --ratio 0.25
snapshot() {
	sql "select count(*) from devices; select count(*) from partitions;
	     select group_concat(key || '=' || value) from settings;
	     select version from partitions where state = 'active'"
}
before=$(snapshot)
for p in /admin/devices /admin/partition /admin/events; do
	admin_call 401 "no Authorization: GET $p is 401" GET "$p"
	admin_call 401 "wrong token: GET $p is 401" GET "$p" \
		-H "Authorization: Bearer ${TOKEN}x"
	admin_call 401 "token prefix: GET $p is 401" GET "$p" \
		-H "Authorization: Bearer ${TOKEN%?}"
	admin_call 401 "token in X-Admin-Token: GET $p is 401" GET "$p" \
		-H "X-Admin-Token: $TOKEN"
	admin_call 401 "token without Bearer: GET $p is 401" GET "$p" \
		-H "Authorization: $TOKEN"
	admin_call 401 "token in the query: GET $p is 401" GET "$p?token=$TOKEN"
done
[ "$(snapshot)" = "$before" ] && pass "refused requests change nothing in the database" ||
	fail "database changed: '$before' -> '$(snapshot)'"

admin_call 200 "GET /admin/devices with the token" GET /admin/devices "${auth[@]}"
[ "$(json_get "$TEST_TMP/a.json" '",".join(d["id"] + "=" + d["state"] for d in j["devices"])')" = "w1=UP,w2=UP" ] &&
	pass "devices: w1, w2 UP" || fail "devices: $(cat "$TEST_TMP/a.json")"
# After a probe round (--health-interval-ms 500) every device has a probe
# latency estimate (sub-millisecond on loopback, so not rounded to 0).
for ((i = 0; i < 50; i++)); do
	curl -s -o "$TEST_TMP/d.json" "${auth[@]}" "$GW_URL/admin/devices"
	[ "$(json_get "$TEST_TMP/d.json" 'all(d["latency_ms"] > 0 and d["call_latency_ms"] >= 0 and d["consecutive_failures"] == 0 and d["since_ms"] > 1.7e12 for d in j["devices"])')" = True ] && break
	sleep 0.1
done
[ "$i" -lt 50 ] && pass "devices carry latency estimates, failures and since_ms" ||
	fail "device fields: $(cat "$TEST_TMP/d.json")"

version=$(sql "select version from partitions where state = 'active'")
admin_call 200 "GET /admin/partition with the token" GET /admin/partition "${auth[@]}"
cp "$TEST_TMP/a.json" "$TEST_TMP/part.json"
[ "$(json_get "$TEST_TMP/part.json" '(j["version"], j["method"], j["ratio"], j["replica_mode"], j["copies"])')" = "($version, 'robustdice', 0.25, 'standby', 2)" ] &&
	pass "partition: version $version, robustdice, ratio 0.25, standby, 2 copies" ||
	fail "partition: $(head -c 400 "$TEST_TMP/part.json")"
[ "$(json_get "$TEST_TMP/part.json" 'all(d["neurons"] > 0 and d["weight_bytes"] > 0 and d["flops"] > 0 for d in j["devices"]) and len(j["devices"]) == 2')" = True ] &&
	pass "partition: per-device neurons, weight bytes, FLOPs" ||
	fail "partition devices: $(json_get "$TEST_TMP/part.json" 'j["devices"]')"
[ "$(json_get "$TEST_TMP/part.json" 'len(j["stages"]) > 0 and all(0 <= s["replica_coverage"] <= 1 for s in j["stages"])')" = True ] &&
	pass "partition: coverage per stage" ||
	fail "partition stages: $(json_get "$TEST_TMP/part.json" 'j["stages"]')"

# Events: paging by cursor returns every row once, in order.
n_events=$(sql "select count(*) from events")
[ "$n_events" -ge 2 ] && pass "$n_events events stored" || fail "only $n_events events"
ids=() cursor=0 pages=0
while :; do
	admin_call 200 "GET /admin/events page $pages" GET "/admin/events?limit=2&after=$cursor" "${auth[@]}" >/dev/null
	page=$(json_get "$TEST_TMP/a.json" '" ".join(str(e["id"]) for e in j["events"])')
	[ -n "$page" ] && ids+=($page)
	next=$(json_get "$TEST_TMP/a.json" 'j["next_cursor"]')
	pages=$((pages + 1))
	[ "$next" = None ] || [ $pages -gt 100 ] && break
	cursor=$next
done
[ "${ids[*]}" = "$(sql "select id from events order by id" | tr '\n' ' ' | sed 's/ $//')" ] &&
	pass "events paged 2 at a time: all ${#ids[@]} ids once, ascending" ||
	fail "paged ids '${ids[*]}'"
last=$(sql "select max(id) from events")
admin_call 200 "events before the newest" GET "/admin/events?before=$last&limit=1" "${auth[@]}"
[ "$(json_get "$TEST_TMP/a.json" '[e["id"] for e in j["events"]]')" = "[$(sql "select max(id) from events where id < $last")]" ] &&
	pass "before cursor: newest first" || fail "before: $(cat "$TEST_TMP/a.json")"
admin_call 200 "events of w2" GET "/admin/events?device=w2&limit=1000" "${auth[@]}"
[ "$(json_get "$TEST_TMP/a.json" 'len(j["events"]) == '"$(sql "select count(*) from events where device_id = 'w2'")"' and all(e["device_id"] == "w2" for e in j["events"])')" = True ] &&
	pass "device filter" || fail "device=w2: $(head -c 300 "$TEST_TMP/a.json")"
since=$(sql "select max(ts) from events")
admin_call 200 "events since the newest timestamp" GET "/admin/events?since=$since" "${auth[@]}"
[ "$(json_get "$TEST_TMP/a.json" 'len(j["events"]) == '"$(sql "select count(*) from events where ts >= $since")"' and all(e["ts_ms"] >= '"$since"' for e in j["events"])')" = True ] &&
	pass "since filter" || fail "since=$since: $(head -c 300 "$TEST_TMP/a.json")"
admin_call 400 "limit=0 is 400" GET "/admin/events?limit=0" "${auth[@]}"
admin_call 400 "after=abc is 400" GET "/admin/events?after=abc" "${auth[@]}"
admin_call 400 "after and before together is 400" GET "/admin/events?after=1&before=5" "${auth[@]}"

# ---- PUT /admin/replication ------------------------------------------------
n_parts=$(sql "select count(*) from partitions")
put() { admin_call "$1" "$2" PUT /admin/replication -H 'Content-Type: application/json' "${@:4}" --data-binary "$3"; }
put 401 "PUT without a token is 401" '{"ratio": 0.5}'
put 401 "PUT with a wrong token is 401" '{"ratio": 0.5}' -H "Authorization: Bearer nope"
put 401 "PUT with the token in X-Admin-Token is 401" '{"ratio": 0.5}' -H "X-Admin-Token: $TOKEN"
bad() {
	put 400 "PUT $1 is 400" "$1" "${auth[@]}"
	grep -q -- "$2" "$TEST_TMP/a.json" && pass "400 for $1 names $2" ||
		fail "400 for $1 does not name $2: $(cat "$TEST_TMP/a.json")"
}
bad '{"ratio": 1.5}' ratio
bad '{"ratio": -0.1}' ratio
bad '{"ratio": "0.5"}' ratio
bad '{"ratio": true}' ratio
bad '{"method": "robustdice"}' ratio
bad '{"ratio": 0.5, "method": "bogus"}' method
bad '{"ratio": 0.5, "method": 3}' method
bad '{"ratio": 0.5, "replica_mode": "sometimes"}' replica_mode
bad '{"ratio": 0.5, "copies": "2"}' copies
bad '{"ratio": 0.5, "copies": 9}' copies
bad '{"ratio": 0.5, "colour": 1}' colour
bad '[0.5]' object
bad 'ratio=0.5' JSON
[ "$(snapshot)" = "$before" ] && [ "$(sql "select count(*) from partitions")" = "$n_parts" ] &&
	pass "refused PUTs change nothing in the database" ||
	fail "database changed: '$before' -> '$(snapshot)'"

w1_url="http://127.0.0.1:$(cat "$TEST_TMP/w1.port")"
# w1_weight: weight bytes of w1's committed version, and how many it holds.
w1_weight() {
	curl -s "$w1_url/healthz" >"$TEST_TMP/h.json"
	json_get "$TEST_TMP/h.json" '(sum(v["weight_bytes"] for v in j["versions"] if v["state"] == "committed"), len(j["versions"]), j["version"])'
}

put 200 "PUT ratio 0" '{"ratio": 0}' "${auth[@]}"
v0=$(json_get "$TEST_TMP/a.json" 'j["version"]')
[ "$v0" -gt "$version" ] && pass "ratio 0 is version $v0 > $version" ||
	fail "ratio 0: $(cat "$TEST_TMP/a.json")"
expect_sql_eq() { local got; got=$(sql "$2"); [ "$got" = "$3" ] && pass "$1" || fail "$1: got '$got', expected '$3'"; }
expect_sql_eq "DB: version $v0 active with ratio 0" \
	"select version || '=' || ratio from partitions where state = 'active'" "$v0=0.0"
w0=$(w1_weight)
[ "$(echo "$w0" | cut -d, -f2- | tr -d ' )')" = "1,$v0" ] &&
	pass "w1 holds only version $v0 ($w0)" || fail "w1 after ratio 0: $w0; $(cat "$TEST_TMP/h.json")"

# Classify load during the ratio 0 -> 1 change.
sample="${DF_SAMPLES_DIR:-$DF_SOURCE_DIR/models/samples}/0000-ankle-boot.png"
load() {
	while [ ! -e "$TEST_TMP/stop" ]; do
		curl -s -o "$TEST_TMP/l$1.json" -w '%{http_code} ' -H 'Content-Type: image/png' \
			--data-binary @"$sample" "$GW_URL/v1/classify" >>"$TEST_TMP/load$1.txt" || true
		python3 -c 'import json,sys
try: print(json.load(open(sys.argv[1])).get("partition_version"))
except Exception: print("none")' "$TEST_TMP/l$1.json" >>"$TEST_TMP/ver$1.txt"
	done
}
load 1 &
LOAD1=$!
load 2 &
LOAD2=$!
sleep 1
put 200 "PUT ratio 1 under load" '{"ratio": 1}' "${auth[@]}"
cp "$TEST_TMP/a.json" "$TEST_TMP/put1.json"
sleep 1
touch "$TEST_TMP/stop"
wait $LOAD1 $LOAD2
v1=$(json_get "$TEST_TMP/put1.json" 'j["version"]')
[ "$v1" -gt "$v0" ] && [ "$(json_get "$TEST_TMP/put1.json" 'j["previous_version"]')" = "$v0" ] &&
	pass "ratio 1 is version $v1 (previous $v0)" || fail "ratio 1: $(cat "$TEST_TMP/put1.json")"
codes=$(cat "$TEST_TMP"/load*.txt)
n_req=$(echo $codes | wc -w)
[ "$n_req" -ge 4 ] && [ -z "$(echo $codes | tr ' ' '\n' | grep -v '^200$' || true)" ] &&
	pass "all $n_req requests during the change answered 200" || fail "statuses during the change: $codes"
vers=$(sort -u "$TEST_TMP"/ver*.txt | tr '\n' ' ')
[ -z "$(sort -u "$TEST_TMP"/ver*.txt | grep -vx -e "$v0" -e "$v1" || true)" ] &&
	pass "every answer on version $v0 or $v1 ($vers)" || fail "versions during the change: $vers"
expect_sql_eq "DB: version $v1 active with ratio 1" \
	"select version || '=' || ratio from partitions where state = 'active'" "$v1=1.0"
expect_sql_eq "DB: version $v0 retired" "select state from partitions where version = $v0" "retired"
expect_sql_eq "DB: ratio setting saved" "select value from settings where key = 'ratio'" "1"
w1=$(w1_weight)
[ "$(echo "$w1" | cut -d, -f2- | tr -d ' )')" = "1,$v1" ] &&
	pass "w1 holds only version $v1" || fail "w1 after ratio 1: $w1; $(cat "$TEST_TMP/h.json")"
b0=$(echo "$w0" | tr -d '( ' | cut -d, -f1)
b1=$(echo "$w1" | tr -d '( ' | cut -d, -f1)
[ "$b1" -gt "$b0" ] && pass "w1 weight bytes grow with ratio 0 -> 1: $b0 -> $b1" ||
	fail "w1 weight bytes $b0 -> $b1"
expect_sql_eq "a partition event records the change" \
	"select count(*) from events where kind = 'partition' and detail like '%-> $v1:%'" "1"

# A restart with the same --ratio flag as every start before (as
# run-local.sh and docker-compose always pass one) keeps the admin's ratio 1
# and version v1: a flag unchanged since the last start yields.
n_parts=$(sql "select count(*) from partitions")
stop_gateway TERM
start_gateway --db "$db" --model "$model" --impute zero --ratio 0.25
admin_call 200 "GET /admin/partition after restart" GET /admin/partition "${auth[@]}"
[ "$(json_get "$TEST_TMP/a.json" '(j["version"], j["ratio"])')" = "($v1, 1.0)" ] &&
	pass "restart keeps version $v1 and ratio 1" || fail "after restart: $(head -c 300 "$TEST_TMP/a.json")"
expect_sql_eq "restart makes no new version" "select count(*) from partitions" "$n_parts"
code=$(curl -s -o "$TEST_TMP/c.json" -w '%{http_code}' -H 'Content-Type: image/png' \
	--data-binary @"$sample" "$GW_URL/v1/classify")
[ "$code" = 200 ] && [ "$(json_get "$TEST_TMP/c.json" 'j["partition_version"]')" = "$v1" ] &&
	pass "classify after restart on version $v1" || fail "classify after restart: $code $(head -c 300 "$TEST_TMP/c.json")"

# ---- POST / DELETE /admin/devices -------------------------------------------
devs=$(sql "select group_concat(id) from devices")
admin_call 401 "POST /admin/devices without a token is 401" POST /admin/devices \
	--data-binary '{"id": "w3", "url": "http://127.0.0.1:1"}'
admin_call 401 "DELETE /admin/devices/w2 with a wrong token is 401" DELETE /admin/devices/w2 \
	-H "Authorization: Bearer x$TOKEN"
[ "$(sql "select group_concat(id) from devices")" = "$devs" ] &&
	pass "refused device changes change nothing" || fail "devices now $(sql "select group_concat(id) from devices")"
admin_call 400 "POST without url is 400" POST /admin/devices "${auth[@]}" --data-binary '{"id": "w3"}'
admin_call 400 "POST with a numeric url is 400" POST /admin/devices "${auth[@]}" --data-binary '{"id": "w3", "url": 5}'
admin_call 400 "POST with a non-http url is 400" POST /admin/devices "${auth[@]}" --data-binary '{"id": "w3", "url": "ftp://x"}'
admin_call 201 "POST registers w3" POST /admin/devices "${auth[@]}" \
	--data-binary '{"id": "w3", "url": "http://127.0.0.1:1"}'
[ "$(json_get "$TEST_TMP/a.json" '(j["id"], j["in_partition"])')" = "('w3', False)" ] &&
	pass "w3 registered, not in the partition" || fail "POST: $(cat "$TEST_TMP/a.json")"
expect_sql_eq "DB: w3 stored" "select url from devices where id = 'w3'" "http://127.0.0.1:1"
admin_call 200 "POST w3 again updates it" POST /admin/devices "${auth[@]}" \
	--data-binary '{"id": "w3", "url": "http://127.0.0.1:2"}'
admin_call 200 "GET /admin/devices lists w3" GET /admin/devices "${auth[@]}"
[ "$(json_get "$TEST_TMP/a.json" '[d["id"] for d in j["devices"]]')" = "['w1', 'w2', 'w3']" ] &&
	pass "devices w1 w2 w3" || fail "devices: $(cat "$TEST_TMP/a.json")"
n_parts=$(sql "select count(*) from partitions")
admin_call 200 "DELETE w3" DELETE /admin/devices/w3 "${auth[@]}"
expect_sql_eq "DB: w3 gone" "select count(*) from devices where id = 'w3'" "0"
expect_sql_eq "removing a device outside the partition makes no version" "select count(*) from partitions" "$n_parts"
expect_sql_eq "removal logged" "select count(*) from events where device_id = 'w3' and to_state = 'REMOVED'" "1"
admin_call 404 "DELETE w3 again is 404" DELETE /admin/devices/w3 "${auth[@]}"
admin_call 200 "DELETE w2 (in the partition)" DELETE /admin/devices/w2 "${auth[@]}"
v2=$(json_get "$TEST_TMP/a.json" 'j["version"]')
[ "$v2" -gt "$v1" ] && pass "removing w2 made version $v2" || fail "DELETE w2: $(cat "$TEST_TMP/a.json")"
expect_sql_eq "DB: devices now w1" "select group_concat(id) from devices" "w1"
code=$(curl -s -o "$TEST_TMP/c.json" -w '%{http_code}' -H 'Content-Type: image/png' \
	--data-binary @"$sample" "$GW_URL/v1/classify")
[ "$code" = 200 ] && [ "$(json_get "$TEST_TMP/c.json" '(j["partition_version"], j["coverage"])')" = "($v2, 1.0)" ] &&
	pass "classify on version $v2 with w1 alone, full coverage" ||
	fail "classify after DELETE w2: $code $(head -c 300 "$TEST_TMP/c.json")"

# w2 back: registered, it joins with the next partition change.
w2_url="http://127.0.0.1:$(cat "$TEST_TMP/w2.port")"
admin_call 201 "POST registers w2 again" POST /admin/devices "${auth[@]}" \
	--data-binary "{\"id\": \"w2\", \"url\": \"$w2_url\"}"
sleep 1.5 # a probe round (--health-interval-ms 500) marks it UP
put 200 "PUT ratio 0.5 with w2 back" '{"ratio": 0.5, "method": "sequential"}' "${auth[@]}"
v3=$(json_get "$TEST_TMP/a.json" 'j["version"]')
admin_call 200 "GET /admin/partition" GET /admin/partition "${auth[@]}"
[ "$(json_get "$TEST_TMP/a.json" '(j["version"], j["method"], j["ratio"], [d["id"] for d in j["devices"]])')" = "($v3, 'sequential', 0.5, ['w1', 'w2'])" ] &&
	pass "version $v3: sequential, ratio 0.5 over w1 and w2" || fail "partition: $(head -c 300 "$TEST_TMP/a.json")"
code=$(curl -s -o "$TEST_TMP/c.json" -w '%{http_code}' -H 'Content-Type: image/png' \
	--data-binary @"$sample" "$GW_URL/v1/classify")
[ "$code" = 200 ] && [ "$(json_get "$TEST_TMP/c.json" '(j["partition_version"], j["coverage"])')" = "($v3, 1.0)" ] &&
	pass "classify on version $v3, full coverage" ||
	fail "classify on $v3: $code $(head -c 300 "$TEST_TMP/c.json")"

# Restarted with the same flag again: version v3 stays; with an edited
# flag (the deployment changed): the flag wins and makes a new version.
stop_gateway TERM
start_gateway --db "$db" --model "$model" --impute zero --ratio 0.25
admin_call 200 "GET /admin/partition after restart with an unchanged --ratio" GET /admin/partition "${auth[@]}"
[ "$(json_get "$TEST_TMP/a.json" '(j["version"], j["ratio"])')" = "($v3, 0.5)" ] &&
	pass "unchanged --ratio 0.25 keeps the admin's ratio 0.5 (version $v3)" ||
	fail "after restart: $(head -c 300 "$TEST_TMP/a.json")"
stop_gateway TERM
start_gateway --db "$db" --model "$model" --impute zero --ratio 0.75
admin_call 200 "GET /admin/partition after restart with an edited --ratio" GET /admin/partition "${auth[@]}"
v4=$(json_get "$TEST_TMP/a.json" 'j["version"]')
[ "$(json_get "$TEST_TMP/a.json" 'j["ratio"]')" = 0.75 ] && [ "$v4" -gt "$v3" ] &&
	pass "an edited --ratio 0.75 wins at restart: version $v4" ||
	fail "after restart with --ratio 0.75: $(head -c 300 "$TEST_TMP/a.json")"
expect_sql_eq "DB: the edited flag is the stored setting" "select value from settings where key = 'ratio'" "0.75"

finish

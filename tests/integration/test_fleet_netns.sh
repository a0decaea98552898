# A worker in its own network namespace whose link is cut behaves like a
# killed one, and rejoins when the link returns.
#
# w1, w2 and the gateway run on the host; w3 runs in a network namespace
# behind a veth pair (host end 10.x.y.1, namespace end 10.x.y.2) and binds
# to its veth address. The cut takes the namespace end of the link down:
# the host end loses carrier and its route stays, and a permanent neighbour
# entry keeps the kernel from failing fast on ARP, so packets to w3 are
# silently dropped - connects and calls hang, as with a cut cable, and only
# the gateway's deadlines (--connect-timeout-ms, --stage-timeout-ms,
# --request-timeout-ms) bound them. (Taking the host end down instead
# removes the route: packets for 10.x.y.2 would leave by the default route,
# and a transparent proxy there may even answer them.)
#
# Checks:
#  - while cut: every request answers 200 within the request deadline
#    (+ 1 s for a loaded machine), some with coverage < 1 naming w3; w3
#    goes DOWN (GET /admin/events); after --repartition-after-ms a new
#    version over w1, w2 restores coverage 1.0;
#  - link back: w3 goes UP, a newer version includes it again (coverage
#    1.0, w3 holds weights of that version).
# Needs root and `ip netns`; otherwise prints SKIP and exits 77.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fleet_lib.sh"

model=fmnist-mobilenet
require_models "$model"
sample=$DF_SOURCE_DIR/models/samples/0002-trouser.png
db="$TEST_TMP/netns.db"
request_timeout_ms=4000
repartition_after_ms=2000
export DICEFLEET_ADMIN_TOKEN=netns-test-admin-token
auth=(-H "Authorization: Bearer $DICEFLEET_ADMIN_TOKEN")

# ---- namespace and veth pair (unique per run, removed on any exit) --------
NS=dfnet$$
VH=dfh$$ # host end
VN=dfn$$ # namespace end
# A /30 of 10.200.0.0/13 derived from the pid: concurrent runs differ.
net="10.$((200 + ($$ >> 14 & 7))).$(($$ >> 6 & 255)).$((($$ & 63) << 2))"
HOST_IP=${net%.*}.$((${net##*.} + 1))
NS_IP=${net%.*}.$((${net##*.} + 2))
netns_made=0
netns_cleanup() {
	[ "$netns_made" = 1 ] || return 0
	local p
	for p in $(ip netns pids "$NS" 2>/dev/null); do
		kill -KILL "$p" 2>/dev/null || true
	done
	ip netns del "$NS" 2>/dev/null || true # takes the veth pair with it
	ip link del "$VH" 2>/dev/null || true
}
trap 'fleet_cleanup; netns_cleanup' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

[ "$(id -u)" = 0 ] || fleet_skip "needs root for ip netns (uid $(id -u))"
command -v ip >/dev/null || fleet_skip "no ip command (iproute2)"
ip netns add "$NS" 2>"$TEST_TMP/ns.err" || fleet_skip "ip netns add failed: $(head -c 200 "$TEST_TMP/ns.err")"
netns_made=1
ip link add "$VH" type veth peer name "$VN" 2>"$TEST_TMP/ns.err" ||
	fleet_skip "cannot create a veth pair: $(head -c 200 "$TEST_TMP/ns.err")"
ip link set "$VN" netns "$NS"
ip addr add "$HOST_IP/30" dev "$VH"
ip link set "$VH" up
ip -n "$NS" addr add "$NS_IP/30" dev "$VN"
ip -n "$NS" link set lo up
ip -n "$NS" link set "$VN" up
ns_mac=$(ip -n "$NS" -o link show "$VN" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
ip neigh replace "$NS_IP" lladdr "$ns_mac" dev "$VH" nud permanent

# ---- fleet --------------------------------------------------------------------
start_workers 2
rm -f "$TEST_TMP/w3.port"
ip netns exec "$NS" "$WORKER" --id w3 --bind "$NS_IP" --port 0 \
	--port-file "$TEST_TMP/w3.port" --models "$MODELS_DIR" --threads 1 \
	--log-level warn >>"$TEST_TMP/w3.log" 2>&1 &
WORKER_PIDS+=($!)
FLEET_PIDS+=($!)
wait_file "$TEST_TMP/w3.port" 20 || { echo "FAIL: w3 did not start in $NS: $(tail -5 "$TEST_TMP/w3.log")" >&2; exit 1; }
w3_url="http://$NS_IP:$(cat "$TEST_TMP/w3.port")"
start_gateway --db "$db" --model "$model" --method robustdice --ratio 0.25 \
	--impute zero --connect-timeout-ms 300 --stage-timeout-ms 1000 \
	--request-timeout-ms "$request_timeout_ms" --health-interval-ms 300 \
	--health-timeout-ms 300 --down-after 2 \
	--repartition-after-ms "$repartition_after_ms" \
	"${WORKER_ARGS[@]}" --worker "w3=$w3_url"

# classify: one request; appends "code seconds coverage version failed" to
# $TEST_TMP/requests.txt and leaves the body in $TEST_TMP/c.json.
classify() {
	local out
	out=$(curl -s -m 30 -o "$TEST_TMP/c.json" -w '%{http_code} %{time_total}' \
		-H 'Content-Type: image/png' --data-binary @"$sample" "$GW_URL/v1/classify" || echo "000 30")
	echo "$out $(python3 -c 'import json,sys
try: j = json.load(open(sys.argv[1]))
except Exception: j = {}
print(j.get("coverage"), j.get("partition_version"), ",".join(j.get("failed_devices", [])) or "-")' "$TEST_TMP/c.json")" |
		tee -a "$TEST_TMP/requests.txt"
}
# w3_weights: bytes of weights w3 holds in its committed version (0 if none).
w3_weights() {
	curl -s -m 5 "$w3_url/healthz" | python3 -c 'import json,sys
j = json.load(sys.stdin)
print(sum(v["weight_bytes"] for v in j["versions"] if v["version"] == j["version"]))' 2>/dev/null || echo 0
}
# in_partition: ids of the devices of the active partition.
in_partition() {
	curl -s -m 10 "${auth[@]}" "$GW_URL/admin/partition" |
		python3 -c 'import json,sys; print(",".join(d["id"] for d in json.load(sys.stdin)["devices"]))' 2>/dev/null || echo "?"
}
# w3_event STATE AFTER_MS: ts_ms of the first event moving w3 to STATE at or
# after AFTER_MS (wall clock), or nothing.
w3_event() {
	curl -s -m 10 "${auth[@]}" "$GW_URL/admin/events?device=w3&limit=1000" |
		python3 -c 'import json,sys
ts = [e["ts_ms"] for e in json.load(sys.stdin)["events"] if e["to_state"] == sys.argv[1] and e["ts_ms"] >= int(sys.argv[2])]
print(min(ts) if ts else "")' "$1" "$2" 2>/dev/null || true
}
now_ms() { date +%s%3N; }

read -r code _ cov v1 _ < <(classify)
[ "$code" = 200 ] && [ "$cov" = 1.0 ] && [ "$(in_partition)" = w1,w2,w3 ] &&
	pass "3 workers, w3 behind a veth in $NS ($w3_url): coverage 1.0 on version $v1" ||
	fail "start: HTTP $code, coverage $cov, partition $(in_partition): $(head -c 300 "$TEST_TMP/c.json")"
wb=$(w3_weights)
[ "$wb" -gt 0 ] && pass "w3 holds $wb weight bytes" || fail "w3 holds no weights"

# ---- cut the link -------------------------------------------------------------
ip -n "$NS" link set "$VN" down
t_cut=$(now_ms)
ip route get "$NS_IP" | grep -q "dev $VH" ||
	fail "after the cut $NS_IP is not routed to $VH: $(ip route get "$NS_IP")"
: >"$TEST_TMP/requests.txt"
healed=0
while [ $(($(now_ms) - t_cut)) -lt 20000 ]; do
	read -r code _ cov v2 _ < <(classify)
	if [ "$code" = 200 ] && [ "$cov" = 1.0 ] && [ "$v2" -gt "$v1" ] 2>/dev/null; then
		healed=1
		break
	fi
	sleep 0.1
done
t_healed=$(now_ms)
cp "$TEST_TMP/requests.txt" "$TEST_TMP/cut.txt"
read -r n non200 slowest partial named < <(python3 -c '
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
print(len(rows), sum(r[0] != "200" for r in rows), max(float(r[1]) for r in rows),
      sum(r[2] not in ("1.0", "None") for r in rows),
      sum(r[2] not in ("1.0", "None") and "w3" in r[4].split(",") for r in rows))' "$TEST_TMP/cut.txt")
echo "link cut: $n requests (code seconds coverage version failed):"
sed 's/^/  /' "$TEST_TMP/cut.txt"
[ "$non200" = 0 ] && pass "link cut: all $n requests answered 200" ||
	fail "link cut: $non200 of $n requests not 200: $(grep -v '^200 ' "$TEST_TMP/cut.txt" | head -3)"
python3 -c "import sys; sys.exit(0 if $slowest <= $request_timeout_ms / 1000 + 1 else 1)" &&
	pass "link cut: slowest request ${slowest} s, within the ${request_timeout_ms} ms request deadline" ||
	fail "link cut: a request took ${slowest} s (request deadline ${request_timeout_ms} ms)"
[ "$partial" -gt 0 ] && [ "$named" = "$partial" ] &&
	pass "link cut: $partial answers with coverage < 1, each naming w3" ||
	fail "link cut: $partial answers with coverage < 1, $named naming w3: $(head -5 "$TEST_TMP/cut.txt")"
t_down=$(w3_event DOWN "$t_cut")
[ -n "$t_down" ] && pass "w3 DOWN $((t_down - t_cut)) ms after the cut (GET /admin/events)" ||
	fail "no DOWN event for w3 after the cut: $(curl -s "${auth[@]}" "$GW_URL/admin/events?device=w3" | head -c 400)"
[ "$healed" = 1 ] && [ "$(in_partition)" = w1,w2 ] &&
	pass "repartitioned over w1, w2 $((t_healed - t_cut)) ms after the cut: coverage 1.0 on version $v2" ||
	fail "no repartition within 20 s of the cut: partition $(in_partition); last: $(tail -1 "$TEST_TMP/cut.txt")"

# ---- link back ---------------------------------------------------------------
ip -n "$NS" link set "$VN" up
t_up=$(now_ms)
: >"$TEST_TMP/requests.txt"
rejoined=0
while [ $(($(now_ms) - t_up)) -lt 20000 ]; do
	read -r code _ cov v3 _ < <(classify)
	if [ "$code" = 200 ] && [ "$cov" = 1.0 ] && [ "$v3" -gt "$v2" ] 2>/dev/null; then
		rejoined=1
		break
	fi
	sleep 0.1
done
t_rejoined=$(now_ms)
non200=$(grep -vc '^200 ' "$TEST_TMP/requests.txt" || true)
[ "$non200" = 0 ] && pass "link back: all $(wc -l <"$TEST_TMP/requests.txt") requests answered 200" ||
	fail "link back: $non200 requests not 200: $(grep -v '^200 ' "$TEST_TMP/requests.txt" | head -3)"
t_w3up=$(w3_event UP "$t_up")
[ -n "$t_w3up" ] && pass "w3 UP $((t_w3up - t_up)) ms after the link came back" ||
	fail "no UP event for w3 after the link came back"
[ "$rejoined" = 1 ] && [ "$(in_partition)" = w1,w2,w3 ] &&
	pass "w3 rejoined $((t_rejoined - t_up)) ms after the link came back: version $v3, coverage 1.0" ||
	fail "w3 did not rejoin within 20 s: partition $(in_partition); last: $(tail -1 "$TEST_TMP/requests.txt")"
wb=$(w3_weights)
[ "$wb" -gt 0 ] && pass "w3 holds neurons again ($wb weight bytes)" || fail "w3 holds no weights after rejoining"
echo "w3 events (ms after the cut): $(curl -s -m 10 "${auth[@]}" "$GW_URL/admin/events?device=w3&limit=1000" |
	python3 -c 'import json,sys
print(", ".join("%s %s->%s" % (e["ts_ms"] - int(sys.argv[1]), e["kind"], e["to_state"])
                for e in json.load(sys.stdin)["events"] if e["ts_ms"] >= int(sys.argv[1])))' "$t_cut" 2>/dev/null || true)"
finish

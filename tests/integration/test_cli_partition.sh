# dicefleet partition and the partitioned dicefleet eval, on the shipped
# models: --fail 0 reproduces the unpartitioned accuracy exactly, and `full`
# with any single failure reproduces it exactly too.
. "$(dirname "$0")/lib.sh"

MODELS=${DF_MODELS_DIR:-$DF_SOURCE_DIR/models}
LIMIT=1000
json() { /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

ran=0
for m in fmnist-vgg fmnist-resnet fmnist-mobilenet; do
	dir=$MODELS/$m
	if [ ! -f "$dir/model.json" ]; then
		echo "skip $m: not in $MODELS"
		continue
	fi
	ran=$((ran + 1))
	expect_status 0 "$m: partition robustdice" "$DICEFLEET" partition "$dir" --devices 4 --method robustdice --ratio 0.25 --json --out "$TEST_TMP/map.json"
	overhead=$(json 'd["memory_overhead"]' <"$TEST_TMP/out")
	ndev=$(json 'len(d["devices"])' <"$TEST_TMP/out")
	[ "$ndev" = 4 ] && pass "$m: 4 devices listed" || fail "$m: $ndev devices listed"
	/usr/bin/python3 -c "import sys; o=float('$overhead'); sys.exit(0 if 0.2 < o < 0.3 else 1)" \
		&& pass "$m: ratio 0.25 costs about 25% more weights ($overhead)" \
		|| fail "$m: ratio 0.25 overhead $overhead"
	json 'd["method"], d["copies"], len(d["stages"])' <"$TEST_TMP/map.json" >/dev/null \
		&& pass "$m: --out wrote a map" || fail "$m: --out map unreadable"

	expect_status 0 "$m: unpartitioned eval" "$DICEFLEET" eval "$dir" --limit $LIMIT
	base=$(json 'd["correct"]' <"$TEST_TMP/out")
	for meth in sequential random layerwise robustdice; do
		expect_status 0 "$m: eval $meth --fail 0" "$DICEFLEET" eval "$dir" --limit $LIMIT --devices 4 --method $meth --fail 0
		got=$(json 'round(d["accuracy_nofail"] * d["images"])' <"$TEST_TMP/out")
		[ "$got" = "$base" ] && pass "$m: $meth without failure = unpartitioned ($base)" \
			|| fail "$m: $meth without failure $got correct, unpartitioned $base"
	done
	expect_status 0 "$m: eval full --fail 1" "$DICEFLEET" eval "$dir" --limit $LIMIT --devices 4 --method full --fail 1
	json 'min(c["accuracy"] for c in d["per_combo"]) == max(c["accuracy"] for c in d["per_combo"]) == d["accuracy_nofail"] and d["combos"] == 4' <"$TEST_TMP/out" | grep -q True \
		&& pass "$m: full keeps the exact accuracy under each single failure" \
		|| fail "$m: full under one failure: $(head -c 300 "$TEST_TMP/out")"
	expect_status 0 "$m: eval sequential ratio 0 --fail 1 zero" "$DICEFLEET" eval "$dir" --limit 300 --devices 4 --method sequential --ratio 0 --fail 1
	json 'd["coverage_mean"] < 1 and d["accuracy_mean"] < d["accuracy_nofail"]' <"$TEST_TMP/out" | grep -q True \
		&& pass "$m: a failure without replicas loses coverage and accuracy" \
		|| fail "$m: unprotected failure: $(head -c 300 "$TEST_TMP/out")"
done

# usage errors
dir=$(ls -d "$MODELS"/fmnist-* 2>/dev/null | head -n 1)
if [ -n "$dir" ]; then
	expect_status 2 "unknown method is a usage error" "$DICEFLEET" partition "$dir" --method magic
	expect_status 2 "ratio above 1 is a usage error" "$DICEFLEET" partition "$dir" --ratio 1.5
	expect_status 2 "--fail above --devices is a usage error" "$DICEFLEET" eval "$dir" --devices 2 --fail 3 --limit 10
	expect_status 2 "--fail without --devices is a usage error" "$DICEFLEET" eval "$dir" --fail 1 --limit 10
	expect_status 2 "unknown impute mode is a usage error" "$DICEFLEET" eval "$dir" --devices 2 --impute guess --limit 10
fi
[ "$ran" -gt 0 ] || fail "no shipped model found in $MODELS"
finish

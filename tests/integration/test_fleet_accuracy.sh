# Accuracy through a 4-worker fleet (robustdice, the defaults) on the first
# 1,000 Fashion-MNIST test images equals the in-process `dicefleet eval
# --limit 1000` figure exactly, for every shipped model. The client sends
# each test image as its preprocessed tensor through KServe v2 infer.
#
# Knobs: FLEET_MODELS, FLEET_ACCURACY_LIMIT.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fleet_lib.sh"

models=(${FLEET_MODELS:-fmnist-vgg fmnist-resnet fmnist-mobilenet})
limit=${FLEET_ACCURACY_LIMIT:-1000}
require_models "${models[@]}"
t_start=$SECONDS

start_workers 4
for model in "${models[@]}"; do
	if ! "$DICEFLEET" eval "$MODELS_DIR/$model" --limit "$limit" --threads 1 \
		>"$TEST_TMP/eval.json" 2>"$TEST_TMP/eval.err"; then
		fail "$model: dicefleet eval: $(head -c 300 "$TEST_TMP/eval.err")"
		continue
	fi
	start_gateway --db "$TEST_TMP/acc.db" --model "$model" "${WORKER_ARGS[@]}"
	if "$FLEET_CLIENT" accuracy --url "$GW_URL" --models "$MODELS_DIR" \
		--model "$model" --limit "$limit" >"$TEST_TMP/fleet.json" 2>"$TEST_TMP/fleet.err"; then
		want=$(json_get "$TEST_TMP/eval.json" 'j["correct"]')
		got=$(json_get "$TEST_TMP/fleet.json" 'j["correct"]')
		if [ "$got" = "$want" ]; then
			pass "$model: fleet $got/$limit correct = dicefleet eval $want/$limit"
		else
			fail "$model: fleet $got/$limit correct, dicefleet eval $want/$limit"
		fi
	else
		fail "$model: fleet accuracy run: $(head -c 400 "$TEST_TMP/fleet.err")"
	fi
	stop_gateway
done
stop_workers
echo "fleet accuracy: $((SECONDS - t_start)) s"
finish

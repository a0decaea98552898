# The fleet computes what one process computes: for 1, 2 and 4 workers and
# every partition method, the logits the gateway returns (KServe v2 infer)
# equal the unpartitioned model's within a relative error of 1e-5, on every
# sample PNG and the first 200 Fashion-MNIST test images, for every shipped
# model; /v1/classify's top-1 on every sample equals `dicefleet classify`'s.
#
# The reference chain: `dicefleet run` on each sample's preprocessed input
# gives the logits of record; fleet_client checks that its in-process
# reference (the same engine) reproduces them, then holds every fleet answer
# against that reference. Workers are started once per fleet size; only the
# gateway restarts between methods (each start pushes a new partition
# version to the running workers).
#
# Knobs (for quick local runs): FLEET_MODELS, FLEET_SIZES, FLEET_METHODS,
# FLEET_TEST_IMAGES.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fleet_lib.sh"

models=(${FLEET_MODELS:-fmnist-vgg fmnist-resnet fmnist-mobilenet})
sizes=(${FLEET_SIZES:-1 2 4})
methods=(${FLEET_METHODS:-sequential random layerwise full robustdice})
n_test=${FLEET_TEST_IMAGES:-200}
samples="${DF_SAMPLES_DIR:-$DF_SOURCE_DIR/models/samples}"
require_models "${models[@]}"
t_start=$SECONDS

for model in "${models[@]}"; do
	# References: dicefleet run on each sample, dicefleet classify top-1.
	ref="$TEST_TMP/ref-$model"
	mkdir -p "$ref/in"
	if ! "$FLEET_CLIENT" inputs --models "$MODELS_DIR" --model "$model" \
		--samples "$samples" --out "$ref/in" >/dev/null; then
		fail "$model: preprocessing the samples"
		continue
	fi
	for npy in "$ref/in"/*.npy; do
		name=$(basename "$npy" .npy)
		if ! "$DICEFLEET" run "$MODELS_DIR/$model/model.onnx" --input "$npy" \
			--output-dir "$ref/$name" --threads 1 >/dev/null 2>"$TEST_TMP/run.err"; then
			fail "$model: dicefleet run $name: $(head -c 300 "$TEST_TMP/run.err")"
		fi
	done
	"$DICEFLEET" classify "$MODELS_DIR/$model" "$samples"/*.png --top-k 1 \
		--threads 1 >"$TEST_TMP/classify.jsonl" 2>/dev/null ||
		fail "$model: dicefleet classify failed"
	python3 -c 'import json,os,sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(os.path.basename(r["image"]), r["top1"])' "$TEST_TMP/classify.jsonl" \
		>"$ref/top1.txt" || fail "$model: reading dicefleet classify output"

	for n in "${sizes[@]}"; do
		start_workers "$n"
		for method in "${methods[@]}"; do
			db="$TEST_TMP/$model-$n.db"
			start_gateway --db "$db" --model "$model" --method "$method" \
				--impute zero "${WORKER_ARGS[@]}"
			desc="$model, $n worker(s), $method"
			if "$FLEET_CLIENT" compare --url "$GW_URL" --models "$MODELS_DIR" \
				--model "$model" --samples "$samples" --ref-dir "$ref" \
				--test-images "$n_test" --tol 1e-5 \
				--expect-top1 "$ref/top1.txt" >"$TEST_TMP/cmp.json" \
				2>"$TEST_TMP/cmp.err"; then
				pass "$desc: $(cat "$TEST_TMP/cmp.json")"
			else
				fail "$desc: $(cat "$TEST_TMP/cmp.json") $(head -c 600 "$TEST_TMP/cmp.err")"
			fi
			stop_gateway
		done
		stop_workers
	done
done
echo "fleet equivalence: $((SECONDS - t_start)) s"
finish

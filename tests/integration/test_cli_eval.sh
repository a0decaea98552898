# `dicefleet eval` and `dicefleet classify`.
#
# Always: the tiny real model of data/eval_tiny (made by
# data/make_eval_fixture.py, whose NumPy run measured its test accuracy and
# its predictions for the sample images) on the full Fashion-MNIST test
# set, both engines, the sample images, and the error cases.
# When the shipped models exist (models/<name>/model.json): each is
# evaluated on all 10,000 test images and must match the accuracy its
# model.json reports within 0.001, and each PNG in models/samples must get
# the top-1 class of models/samples/expected.json. DF_MODELS_DIR overrides
# the models directory.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
TINY="$DF_SOURCE_DIR/tests/integration/data/eval_tiny"
MODELS=${DF_MODELS_DIR:-$DF_SOURCE_DIR/models}
DATA_DIR=${DICEFLEET_DATA_DIR:-/usr/share/datasets/fashion-mnist}

# check_eval_json FILE IMAGES TOLERANCE DESC: FILE holds exactly one JSON
# line with IMAGES images whose accuracy is within TOLERANCE of
# expected_accuracy, and consistent fields.
check_eval_json() {
	local msg
	if msg=$("$PY" - "$1" "$2" "$3" 2>&1 <<'EOF'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
if len(lines) != 1:
    sys.exit("expected one line on stdout, got %d" % len(lines))
r = json.loads(lines[0])
n, tol = int(sys.argv[2]), float(sys.argv[3])
for k in ("model", "dataset", "split", "images", "correct", "accuracy",
          "expected_accuracy", "seconds", "images_per_second", "engine", "threads"):
    if k not in r:
        sys.exit("missing key " + k)
if r["images"] != n:
    sys.exit("images %d, expected %d" % (r["images"], n))
if abs(r["accuracy"] - r["correct"] / n) > 1e-9:
    sys.exit("accuracy %r != correct/images" % r["accuracy"])
if r["expected_accuracy"] is None or abs(r["accuracy"] - r["expected_accuracy"]) > tol:
    sys.exit("accuracy %.4f vs model.json %r (tolerance %g)" % (
        r["accuracy"], r["expected_accuracy"], tol))
if not r["seconds"] > 0 or not r["images_per_second"] > 0:
    sys.exit("bad timing %r" % r)
print("%s: %d/%d = %.4f (model.json %.4f), %.1f s, %.0f images/s, %s" % (
    r["model"], r["correct"], n, r["accuracy"], r["expected_accuracy"],
    r["seconds"], r["images_per_second"], r["engine"]), file=sys.stderr)
EOF
	); then pass "$4"; else fail "$4: $msg"; fi
}

# check_classify OUT EXPECTED_JSON MODEL_NAME DESC: every line of OUT
# whose image is in expected.json[MODEL_NAME] has its top-1 class (and, where
# reference logits are given, their softmax scores within 1e-3), and every
# expected image was classified.
check_classify() {
	local msg
	if msg=$("$PY" - "$1" "$2" "$3" 2>&1 <<'EOF'
import json, math, os, sys
out, exp_path, name = sys.argv[1:4]
expected = json.load(open(exp_path))[name]
seen = {}
for line in open(out):
    r = json.loads(line)
    seen[os.path.basename(r["image"])] = r
bad = []
for f, e in sorted(expected.items()):
    want = e.get("predicted", e.get("top1"))
    r = seen.get(f)
    if r is None or "error" in r:
        bad.append("%s: %s" % (f, r and r["error"]))
        continue
    if r["top1"] != want or r["predictions"][0]["index"] != want:
        bad.append("%s: top1 %d, expected %d" % (f, r["top1"], want))
    s = [p["score"] for p in r["predictions"]]
    if s != sorted(s, reverse=True) or not 0 < s[0] <= 1:
        bad.append("%s: scores %r" % (f, s))
    if "logits" in e:  # softmax of the reference logits (rounded to 1e-4)
        m = max(e["logits"])
        ex = [math.exp(v - m) for v in e["logits"]]
        for p in r["predictions"]:
            want_p = ex[p["index"]] / sum(ex)
            if abs(p["score"] - want_p) > 1e-3:
                bad.append("%s: class %d score %.5f, reference %.5f" % (
                    f, p["index"], p["score"], want_p))
if bad:
    sys.exit("; ".join(bad))
EOF
	); then pass "$4"; else fail "$4: $msg"; fi
}

# --- help and usage errors ------------------------------------------------
expect_status 0 "eval --help exits 0" "$DICEFLEET" eval --help
for word in "MODEL_DIR" "--data-dir" "--limit" "--threads" "--engine" \
	"images_per_second" "exit status"; do
	expect_grep "$word" "$TEST_TMP/out" "eval --help mentions $word"
done
expect_status 2 "eval without MODEL_DIR is a usage error" "$DICEFLEET" eval
expect_status 2 "eval with two model dirs is a usage error" "$DICEFLEET" eval "$TINY" "$TINY"
expect_status 2 "eval --engine bogus is a usage error" "$DICEFLEET" eval "$TINY" --engine bogus
expect_status 2 "eval --dataset cifar10 is a usage error" "$DICEFLEET" eval "$TINY" --dataset cifar10
expect_grep "only fashion-mnist" "$TEST_TMP/err" "eval names the supported data set"
expect_status 2 "eval --limit -1 is a usage error" "$DICEFLEET" eval "$TINY" --limit -1
expect_status 0 "classify --help exits 0" "$DICEFLEET" classify --help
expect_grep "top-k" "$TEST_TMP/out" "classify --help mentions --top-k"
expect_status 2 "classify without images is a usage error" "$DICEFLEET" classify "$TINY"

# --- failures -------------------------------------------------------------
expect_status 1 "eval of a missing model dir fails" "$DICEFLEET" eval "$TEST_TMP/nope"
expect_grep "model.json" "$TEST_TMP/err" "missing model.json is named"
cp -r "$TINY" "$TEST_TMP/tampered"
printf 'x' >>"$TEST_TMP/tampered/model.onnx"
expect_status 1 "eval of a tampered model.onnx fails" "$DICEFLEET" eval "$TEST_TMP/tampered"
expect_grep "sha256" "$TEST_TMP/err" "the sha256 mismatch is reported"
expect_status 1 "classify of a tampered model.onnx fails" \
	"$DICEFLEET" classify "$TEST_TMP/tampered" "$TINY/samples/t10k-0000.png"
[ -s "$TEST_TMP/out" ] && fail "a failed model load prints nothing on stdout"
expect_status 1 "eval without the data set fails" "$DICEFLEET" eval "$TINY" --data-dir "$TEST_TMP"
expect_grep "t10k-images-idx3-ubyte" "$TEST_TMP/err" "the missing data file is named"

if [ ! -r "$DATA_DIR/t10k-images-idx3-ubyte.gz" ]; then
	fail "Fashion-MNIST not found in $DATA_DIR (install dataset-fashion-mnist)"
	finish
fi

# --- the tiny model: exact numbers from NumPy -----------------------------
expect_status 0 "eval eval_tiny (dnnl, full test set)" "$DICEFLEET" eval "$TINY" --limit 10000
check_eval_json "$TEST_TMP/out" 10000 0.001 "eval_tiny accuracy matches NumPy within 0.001"
expect_grep '"engine":"dnnl"' "$TEST_TMP/out" "dnnl is the default engine"
expect_grep "^eval eval-tiny: 10000/10000 (100%)$" "$TEST_TMP/err" \
	"progress as plain lines when stderr is not a terminal"
grep -q $'\r' "$TEST_TMP/err" && fail "no progress bar when stderr is not a terminal"
cp "$TEST_TMP/out" "$TEST_TMP/dnnl.json"
expect_status 0 "eval eval_tiny --engine ref --limit 2000" \
	"$DICEFLEET" eval "$TINY" --engine ref --limit 2000 --threads 1
check_eval_json "$TEST_TMP/out" 2000 0.03 "ref engine on 2000 images is close to the full-set accuracy"
expect_status 0 "eval eval_tiny --engine dnnl --limit 2000" \
	"$DICEFLEET" eval "$TINY" --limit 2000
cp "$TEST_TMP/out" "$TEST_TMP/dnnl2000.json"
expect_status 0 "eval eval_tiny --engine ref --limit 2000 again" \
	"$DICEFLEET" eval "$TINY" --engine ref --limit 2000
if "$PY" - "$TEST_TMP/out" "$TEST_TMP/dnnl2000.json" <<'EOF'
import json, sys
a, b = (json.loads(open(p).read()) for p in sys.argv[1:3])
sys.exit(abs(a["correct"] - b["correct"]) > 1)
EOF
then pass "ref and dnnl agree on the first 2000 images"; else fail "ref and dnnl disagree: $(cat "$TEST_TMP/out" "$TEST_TMP/dnnl2000.json")"; fi

# Workers split the images; the count must not depend on how many.
expect_status 0 "eval eval_tiny --threads 1" "$DICEFLEET" eval "$TINY" --threads 1 --limit 3000
expect_grep '"threads":1' "$TEST_TMP/out" "eval reports one worker"
sed 's/.*"correct":\([0-9]*\).*/\1/' "$TEST_TMP/out" >"$TEST_TMP/c1"
expect_status 0 "eval eval_tiny --threads 3" "$DICEFLEET" eval "$TINY" --threads 3 --limit 3000
expect_grep '"threads":3' "$TEST_TMP/out" "eval reports three workers"
sed 's/.*"correct":\([0-9]*\).*/\1/' "$TEST_TMP/out" >"$TEST_TMP/c3"
if cmp -s "$TEST_TMP/c1" "$TEST_TMP/c3"; then pass "1 and 3 workers count the same correct answers"
else fail "1 worker: $(cat "$TEST_TMP/c1"), 3 workers: $(cat "$TEST_TMP/c3")"; fi

expect_status 0 "classify eval_tiny samples" "$DICEFLEET" classify "$TINY" \
	"$TINY"/samples/*.png "$TINY"/samples/*.jpg --top-k 3
check_classify "$TEST_TMP/out" "$TINY/samples/expected.json" eval-tiny \
	"classify gives NumPy's top-1 for PNG, resized RGB PNG and JPEG samples"
expect_status 1 "classify with one unreadable file fails overall" "$DICEFLEET" classify "$TINY" \
	"$TINY/samples/t10k-0000.png" "$TINY/model.json" "$TEST_TMP/missing.png"
if [ "$(wc -l <"$TEST_TMP/out")" -eq 3 ] && sed -n 1p "$TEST_TMP/out" | grep -q '"top1":' &&
	sed -n 2p "$TEST_TMP/out" | grep -q '"not a PNG or JPEG image"' &&
	sed -n 3p "$TEST_TMP/out" | grep -q '"code":"not_found"'; then
	pass "classify reports each bad file as a JSON error line and goes on"
else
	fail "classify error lines: $(cat "$TEST_TMP/out")"
fi

# --- the shipped models ---------------------------------------------------
shipped=0
for json in "$MODELS"/*/model.json; do
	[ -e "$json" ] || continue
	dir=$(dirname "$json")
	name=$(basename "$dir")
	shipped=$((shipped + 1))
	start=$(date +%s)
	expect_status 0 "eval $name (full test set)" "$DICEFLEET" eval "$dir" --limit 10000
	check_eval_json "$TEST_TMP/out" 10000 0.001 "$name accuracy matches model.json within 0.001"
	echo "eval $name took $(($(date +%s) - start)) s"
	if [ -r "$MODELS/samples/expected.json" ] &&
		"$PY" -c "import json,sys; sys.exit('$name' not in json.load(open('$MODELS/samples/expected.json')))"; then
		expect_status 0 "classify $name samples" "$DICEFLEET" classify "$dir" "$MODELS"/samples/*.png
		check_classify "$TEST_TMP/out" "$MODELS/samples/expected.json" "$name" \
			"$name: C preprocessing gives PyTorch's top-1 for every sample PNG"
	else
		fail "$name: no entry in $MODELS/samples/expected.json"
	fi
done
[ "$shipped" -eq 0 ] && echo "note: no shipped models under $MODELS yet; only eval_tiny checked"
finish

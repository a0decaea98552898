# `dicefleet run`: runs the tiny two-input CNN of data/run_tiny.onnx (made by
# data/make_run_fixture.py, which also wrote its outputs as computed by plain
# NumPy) on both engines, checks the outputs against NumPy and against each
# other, the --repeat JSON line, input binding, and the error cases.
. "$(dirname "$0")/lib.sh"

DATA="$DF_SOURCE_DIR/tests/integration/data"
MODEL="$DATA/run_tiny.onnx"
X="$DATA/run_tiny_input.npy"
E="$DATA/run_tiny_extra.npy"
PY=/usr/bin/python3

# close_npy GOT WANT RTOL ATOL DESC: elementwise |got-want| <= atol + rtol|want|
# and the same shape.
close_npy() {
	local msg
	if msg=$("$PY" - "$1" "$2" "$3" "$4" 2>&1 <<'EOF'
import sys
import numpy as np
got, want = np.load(sys.argv[1]), np.load(sys.argv[2])
rtol, atol = float(sys.argv[3]), float(sys.argv[4])
if got.shape != want.shape or got.dtype != want.dtype:
    sys.exit(f"shape/dtype {got.shape} {got.dtype} vs {want.shape} {want.dtype}")
err = np.abs(got.astype(np.float64) - want)
bad = err > atol + rtol * np.abs(want)
if bad.any():
    sys.exit(f"max abs error {err.max():.3g} at {np.unravel_index(err.argmax(), err.shape)}")
EOF
	); then pass "$5"; else fail "$5: $msg"; fi
}

# --help documents the command.
expect_status 0 "run --help exits 0" "$DICEFLEET" run --help
for word in "--input" "NAME=" "--output-dir" "--engine" "--threads" "--repeat" \
	"median_ms" "exit status"; do
	expect_grep "$word" "$TEST_TMP/out" "run --help mentions $word"
done

# Reference engine, inputs bound by name: matches NumPy; file names are the
# output names with '/' and ':' replaced by '_'.
expect_status 0 "run --engine ref" "$DICEFLEET" run "$MODEL" --engine ref \
	--input "input=$X" --input "extra=$E" --output-dir "$TEST_TMP/ref"
[ -s "$TEST_TMP/out" ] && fail "run without --repeat prints nothing on stdout: $(head -c 200 "$TEST_TMP/out")"
expect_grep "probs:0" "$TEST_TMP/err" "run reports the outputs it wrote on stderr"
close_npy "$TEST_TMP/ref/logits_out.npy" "$DATA/run_tiny_logits.npy" 1e-5 1e-5 \
	"ref logits match NumPy"
close_npy "$TEST_TMP/ref/probs_0.npy" "$DATA/run_tiny_probs.npy" 1e-5 1e-7 \
	"ref probabilities match NumPy"

# oneDNN engine, bare inputs bound in graph order, output dir created with
# its parents: matches the reference engine.
expect_status 0 "run --engine dnnl" "$DICEFLEET" run "$MODEL" --engine dnnl \
	--input "$X" --input "$E" --output-dir "$TEST_TMP/dnnl/sub"
close_npy "$TEST_TMP/dnnl/sub/logits_out.npy" "$TEST_TMP/ref/logits_out.npy" 1e-4 1e-5 \
	"dnnl logits match ref"
close_npy "$TEST_TMP/dnnl/sub/probs_0.npy" "$TEST_TMP/ref/probs_0.npy" 1e-4 1e-6 \
	"dnnl probabilities match ref"

# Default engine (dnnl), default output dir (the working directory), and a
# mix: extra by name, the bare file fills the remaining input.
mkdir -p "$TEST_TMP/cwd"
expect_status 0 "run with mixed binding and defaults" \
	bash -c 'cd "$1" && shift && "$@"' _ "$TEST_TMP/cwd" \
	"$DICEFLEET" run "$MODEL" --input "extra=$E" --input "$X" --threads 1
close_npy "$TEST_TMP/cwd/probs_0.npy" "$TEST_TMP/ref/probs_0.npy" 1e-4 1e-6 \
	"mixed binding gives the same probabilities"

# Small ResNet- and MobileNetV2-style models exported by torch (fixtures of
# the importer's tests, with torch's own output): both engines agree with
# torch.
ONNX_DIR="$DF_SOURCE_DIR/tests/unit/data/onnx"
for m in torch_resnet_o13 torch_mbv2_o11; do
	for eng in ref dnnl; do
		expect_status 0 "$m runs on $eng" "$DICEFLEET" run "$ONNX_DIR/$m.onnx" \
			--engine "$eng" --input "$ONNX_DIR/${m}_input.npy" \
			--output-dir "$TEST_TMP/$m-$eng"
		set -- "$TEST_TMP/$m-$eng"/*.npy
		if [ "$#" -ne 1 ]; then fail "$m on $eng: expected one output file, got $*"; continue; fi
		close_npy "$1" "$ONNX_DIR/${m}_output.npy" 1e-4 1e-5 "$m on $eng matches torch"
	done
done

# --repeat: one JSON line on stdout with the documented fields.
check_json() { # ENGINE THREADS DESC
	local msg
	if msg=$("$PY" - "$TEST_TMP/out" "$MODEL" "$1" "$2" 2>&1 <<'EOF'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
if len(lines) != 1:
    sys.exit(f"{len(lines)} lines on stdout")
j = json.loads(lines[0])
want = {"model": sys.argv[2], "engine": sys.argv[3], "threads": int(sys.argv[4]), "repeat": 5}
for k, v in want.items():
    if j.get(k) != v:
        sys.exit(f"{k} = {j.get(k)!r}, expected {v!r}")
t = [j[k] for k in ("min_ms", "median_ms", "p90_ms", "mean_ms")]
if not all(isinstance(x, (int, float)) and x >= 0 for x in t):
    sys.exit(f"bad timings {t}")
if not (j["min_ms"] <= j["median_ms"] <= j["p90_ms"] and j["min_ms"] <= j["mean_ms"]):
    sys.exit(f"timings out of order {t}")
EOF
	); then pass "$3"; else fail "$3: $msg"; fi
}
expect_status 0 "run --repeat 5 (ref)" "$DICEFLEET" run "$MODEL" --engine ref \
	--input "$X" --input "$E" --repeat 5 --output-dir "$TEST_TMP/rep"
check_json ref 1 "--repeat prints the JSON line (ref)"
close_npy "$TEST_TMP/rep/probs_0.npy" "$TEST_TMP/ref/probs_0.npy" 0 0 \
	"--repeat still writes the outputs"
expect_status 0 "run --repeat 5 (dnnl, 2 threads)" "$DICEFLEET" run "$MODEL" \
	--engine dnnl --threads 2 --input "$X" --input "$E" --repeat 5 \
	--output-dir "$TEST_TMP/rep"
check_json dnnl 2 "--repeat prints the JSON line (dnnl)"

# Error cases: exit status and a message that says what is wrong.
"$PY" -c "import numpy as np, sys
np.save(sys.argv[1], np.zeros((1, 1, 4, 4), np.float32))
np.save(sys.argv[2], np.zeros((1, 1, 8, 8), np.int64))" \
	"$TEST_TMP/small.npy" "$TEST_TMP/int.npy"

expect_status 1 "missing input file fails" "$DICEFLEET" run "$MODEL" --engine ref \
	--input "$TEST_TMP/nope.npy" --input "$E" --output-dir "$TEST_TMP/e"
expect_grep "nope.npy" "$TEST_TMP/err" "missing input file is named"
expect_status 1 "wrong input shape fails" "$DICEFLEET" run "$MODEL" --engine ref \
	--input "$TEST_TMP/small.npy" --input "$E" --output-dir "$TEST_TMP/e"
expect_grep "input 'input': shape \[1,1,4,4\] does not match the model's \[1,1,8,8\]" \
	"$TEST_TMP/err" "wrong shape names the input and both shapes"
expect_status 1 "wrong shape fails on dnnl too" "$DICEFLEET" run "$MODEL" \
	--input "$TEST_TMP/small.npy" --input "$E" --output-dir "$TEST_TMP/e"
expect_grep "does not match the model's" "$TEST_TMP/err" "dnnl: same shape message"
expect_status 1 "wrong input dtype fails" "$DICEFLEET" run "$MODEL" --engine ref \
	--input "$TEST_TMP/int.npy" --input "$E" --output-dir "$TEST_TMP/e"
expect_grep "input 'input': dtype i64" "$TEST_TMP/err" "wrong dtype is explained"
[ -e "$TEST_TMP/e" ] && fail "failed runs must not create the output dir"
expect_status 2 "unknown input name is a usage error" "$DICEFLEET" run "$MODEL" \
	--input "bogus=$X" --input "$E"
expect_grep "no input named 'bogus'" "$TEST_TMP/err" "unknown input name is named"
expect_grep "'input' 'extra'" "$TEST_TMP/err" "unknown input name lists the inputs"
expect_status 2 "a missing input is a usage error" "$DICEFLEET" run "$MODEL" \
	--input "$X"
expect_grep "input 'extra' is not given" "$TEST_TMP/err" "missing input is named"
expect_status 2 "an input bound twice is a usage error" "$DICEFLEET" run "$MODEL" \
	--input "extra=$E" --input "extra=$E" --input "$X"
expect_status 2 "too many inputs is a usage error" "$DICEFLEET" run "$MODEL" \
	--input "$X" --input "$E" --input "$E"
expect_status 2 "unknown engine is a usage error" "$DICEFLEET" run "$MODEL" \
	--engine cuda --input "$X" --input "$E"
expect_grep "unknown engine 'cuda'" "$TEST_TMP/err" "unknown engine is named"
expect_status 2 "negative --threads is a usage error" "$DICEFLEET" run "$MODEL" \
	--threads -1 --input "$X" --input "$E"
expect_status 2 "no model is a usage error" "$DICEFLEET" run --input "$X"
expect_status 2 "unknown flag is a usage error" "$DICEFLEET" run "$MODEL" --frobnicate
expect_status 1 "a missing model fails" "$DICEFLEET" run "$TEST_TMP/none.onnx" \
	--input "$X"
expect_grep "none.onnx" "$TEST_TMP/err" "missing model is named"
finish

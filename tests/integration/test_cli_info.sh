# dicefleet info: text and JSON reports on torch-exported fixtures, errors
# on bad models, usage errors.
. "$(dirname "$0")/lib.sh"
FIX="$DF_SOURCE_DIR/tests/unit/data/onnx"
PY=/usr/bin/python3

expect_status 0 "info --help exits 0" "$DICEFLEET" info --help
expect_grep "usage: dicefleet info MODEL.onnx" "$TEST_TMP/out" "--help prints usage on stdout"
expect_status 0 "info is listed by dicefleet --help" "$DICEFLEET" --help
expect_grep "^  info " "$TEST_TMP/out" "info appears in the command list"

expect_status 0 "info on the ResNet fixture" "$DICEFLEET" info "$FIX/torch_resnet_o13.onnx"
cp "$TEST_TMP/out" "$TEST_TMP/resnet.txt"
expect_grep "^opset: *13$" "$TEST_TMP/resnet.txt" "text names the opset"
expect_grep "^  input  *\[1,1,28,28\]$" "$TEST_TMP/resnet.txt" "symbolic batch shown as 1"
expect_grep "^  logits  *\[1,10\]$" "$TEST_TMP/resnet.txt" "output and its shape"
expect_grep "^nodes (10, after folding and fusion):" "$TEST_TMP/resnet.txt" "BN folded, activations fused"
expect_grep "Add(.*)+Relu$" "$TEST_TMP/resnet.txt" "residual add and relu shown as post-ops"
expect_grep "^  parameters     5050 " "$TEST_TMP/resnet.txt" "parameter total"
expect_grep "^  MACs           458016 " "$TEST_TMP/resnet.txt" "MAC total"

expect_status 0 "info --json on the MobileNetV2 fixture" \
	"$DICEFLEET" info --json "$FIX/torch_mbv2_o11.onnx"
if $PY - "$TEST_TMP/out" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["model"]["opset"] == 11, d["model"]
assert d["inputs"] == [{"name": "input", "shape": [1, 1, 28, 28]}], d["inputs"]
assert d["outputs"][0]["shape"] == [1, 10], d["outputs"]
nodes = d["nodes"]
assert d["totals"]["nodes"] == len(nodes) == 14, len(nodes)
assert sum(n["macs"] for n in nodes) == d["totals"]["macs"] > 0
assert sum(1 for n in nodes if n["op"] == "Conv") == 11
clips = [p for n in nodes for p in n["postops"] if p.get("act") == "Clip"]
assert len(clips) == 8 and all(p["min"] == 0 and p["max"] == 6 for p in clips), clips
assert sum(1 for n in nodes for p in n["postops"] if p["kind"] == "add") == 2
assert any(n["op"] == "Conv" and n["attrs"]["group"] == 32 for n in nodes)
EOF
then pass "JSON report has the expected structure"; else fail "JSON report"; fi

expect_status 1 "a model with mismatched channels fails" \
	"$DICEFLEET" info "$FIX/bad_channel_mismatch.onnx"
expect_grep "node 'conv1' (Conv)" "$TEST_TMP/err" "the error names the node and op"
expect_status 1 "an unknown op fails" "$DICEFLEET" info "$FIX/bad_unknown_op.onnx"
expect_grep "unsupported op 'Foo'" "$TEST_TMP/err" "the unsupported op is named"
head -c 300 "$FIX/ok_conv_raw.onnx" >"$TEST_TMP/cut.onnx"
expect_status 1 "a truncated model fails" "$DICEFLEET" info "$TEST_TMP/cut.onnx"
expect_grep "not a valid ONNX model" "$TEST_TMP/err" "truncation is reported"
expect_status 1 "a missing file fails" "$DICEFLEET" info "$TEST_TMP/none.onnx"
expect_grep "none.onnx" "$TEST_TMP/err" "the missing path is named"

expect_status 2 "no model is a usage error" "$DICEFLEET" info
expect_status 2 "two models are a usage error" "$DICEFLEET" info a.onnx b.onnx
expect_status 2 "an unknown flag is a usage error" "$DICEFLEET" info --frob "$FIX/ok_gap.onnx"
finish

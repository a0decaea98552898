#!/usr/bin/python3
"""Writes the ONNX fixtures of tests/unit/test_onnx_import.c.

Run with Debian's /usr/bin/python3 (onnx 1.12, torch 1.13) from anywhere:

    /usr/bin/python3 tests/unit/data/onnx/make_fixtures.py

Outputs, next to this script (all committed, so tests need no python):
  ok_*.onnx      valid models, one feature each, checked with onnx.checker;
  bad_*.onnx     malformed or unsupported models the importer must reject;
  torch_*.onnx   small ResNet- and MobileNetV2-style models exported by torch;
  torch_*_{input,output}.npy   a fixed input and torch's output for it;
  expected.json  per valid model: output shapes, from onnx shape inference,
                 or from torch running the same op where shape inference
                 and torch differ (pooling with ceil_mode); and for those
                 with a reference ("ref": true) the files
  ref/<model>.in<i>.npy, ref/<model>.out<i>.npy  random inputs and the
                 outputs numpy/torch compute for them, written
                 independently of the model file, to hold the importer's
                 reading of each op's attributes against.
Weights are random with fixed seeds; rerunning gives the same files.
"""
import json
import os

import numpy as np
import onnx
import torch
import torch.nn.functional as Fn
from onnx import TensorProto as TP
from onnx import helper as H
from onnx import numpy_helper as NH

HERE = os.path.dirname(os.path.abspath(__file__))
RNG = np.random.default_rng(0)
EXPECTED = {}


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def init(name, arr, raw=True):
    """Initializer from a numpy array: raw_data, or the typed field."""
    if raw:
        return NH.from_array(arr, name)
    dt = {np.float32: TP.FLOAT, np.int64: TP.INT64, np.int32: TP.INT32}[arr.dtype.type]
    return H.make_tensor(name, dt, arr.shape, arr.flatten().tolist(), raw=False)


def vi(name, shape, dt=TP.FLOAT):
    return H.make_tensor_value_info(name, dt, shape)


def model(name, nodes, inputs, outputs, inits=(), opset=13, check=True,
          expect=None):
    g = H.make_graph(nodes, name, inputs, outputs, list(inits))
    m = H.make_model(g, opset_imports=[H.make_opsetid("", opset)],
                     producer_name="dicefleet-fixtures")
    m.ir_version = 7 if opset <= 14 else 8
    if check:
        # fill in the output shapes (left open above) from ONNX's own shape
        # inference, then let the checker see a complete model
        inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True, data_prop=True)
        outs = list(inferred.graph.output)
        for i, o in enumerate(outs):
            if not o.type.tensor_type.HasField("shape"):
                if expect is None:
                    raise RuntimeError("%s: no inferred shape for %s" % (name, o.name))
                outs[i] = vi(o.name, expect[i])
        m.graph.ClearField("output")
        m.graph.output.extend(outs)
        onnx.checker.check_model(m)
        if expect is None:
            expect = []
            for o in inferred.graph.output:
                dims = [d.dim_value if d.HasField("dim_value") else 1
                        for d in o.type.tensor_type.shape.dim]
                expect.append(dims)
        EXPECTED[name] = {"outputs": expect, "opset": opset}
    path = os.path.join(HERE, name + ".onnx")
    with open(path, "wb") as f:
        f.write(m.SerializeToString())
    return m


def node(op, ins, outs, name=None, **attrs):
    return H.make_node(op, ins, outs, name=name or outs[0] + "_node", **attrs)


def torch_pool_shape(kind, shape, k, s, p, ceil_mode, dil=1):
    x = torch.zeros(shape)
    if kind == "max":
        y = torch.nn.functional.max_pool2d(x, k, s, p, dil, ceil_mode=ceil_mode)
    else:
        y = torch.nn.functional.avg_pool2d(x, k, s, p, ceil_mode=ceil_mode)
    return list(y.shape)


# ---- valid: convolution ---------------------------------------------------

W = rand(4, 3, 3, 3)
B = rand(4)
for raw in (True, False):
    model("ok_conv_" + ("raw" if raw else "float_data"),
          [node("Conv", ["x", "W", "B"], ["y"], name="conv1", pads=[1, 1, 1, 1])],
          [vi("x", [1, 3, 8, 8])], [vi("y", None)],
          [init("W", W, raw), init("B", B, raw)])

for mode, k in (("SAME_UPPER", 2), ("SAME_LOWER", 2), ("VALID", 3)):
    model("ok_conv_" + mode.lower(),
          [node("Conv", ["x", "W"], ["y"], name="dw", auto_pad=mode, group=4,
                strides=[2, 1])],
          [vi("x", [1, 4, 7, 5])], [vi("y", None)],
          [init("W", rand(4, 1, k, k))], opset=11)

model("ok_conv_dilated_group",
      [node("Conv", ["x", "W", "B"], ["y"], name="c", kernel_shape=[3, 3],
            dilations=[2, 2], group=2, pads=[2, 1, 2, 1], strides=[1, 2])],
      [vi("x", [1, 4, 9, 9])], [vi("y", None)],
      [init("W", rand(6, 2, 3, 3)), init("B", rand(6))], opset=7)

model("ok_symbolic_batch",
      [node("Conv", ["x", "W"], ["y"], name="c")],
      [vi("x", ["N", 3, 5, 5])], [vi("y", None)],
      [init("W", rand(2, 3, 3, 3))], expect=[[1, 2, 3, 3]])

# initializers also listed as graph inputs (older exporters)
m = model("ok_init_as_input",
          [node("Conv", ["x", "W"], ["y"], name="c")],
          [vi("x", [1, 3, 5, 5]), vi("W", [2, 3, 3, 3])], [vi("y", None)],
          [init("W", rand(2, 3, 3, 3))], opset=9)

# ---- valid: Gemm / MatMul --------------------------------------------------

model("ok_gemm_transb",
      [node("Gemm", ["a", "B", "C"], ["y"], name="fc", alpha=0.5, beta=2.0, transB=1)],
      [vi("a", [2, 6])], [vi("y", None)],
      [init("B", rand(4, 6)), init("C", rand(4))])
model("ok_gemm_transa_row_c",
      [node("Gemm", ["a", "B", "C"], ["y"], name="fc", transA=1)],
      [vi("a", [6, 2])], [vi("y", None)],
      [init("B", rand(6, 4)), init("C", rand(1, 4))], opset=9)
model("ok_gemm_full_c",
      [node("Gemm", ["a", "B", "C"], ["y"], name="fc")],
      [vi("a", [2, 6])], [vi("y", None)],
      [init("B", rand(6, 4)), init("C", rand(2, 4))], opset=11)
model("ok_gemm_no_c",
      [node("Gemm", ["a", "B"], ["y"], name="fc", transB=1)],
      [vi("a", [1, 6])], [vi("y", None)], [init("B", rand(3, 6))], opset=11)
model("ok_gemm_computed_b",
      [node("Gemm", ["a", "b", "C"], ["y"], name="fc", alpha=2.0)],
      [vi("a", [2, 3]), vi("b", [3, 5])], [vi("y", None)], [init("C", rand(5))])
model("ok_matmul",
      [node("MatMul", ["a", "B"], ["m2"], name="mm2d"),
       node("MatMul", ["a3", "B3"], ["m3"], name="mm3d"),
       node("MatMul", ["a3", "b3"], ["mm"], name="mmc")],
      [vi("a", [1, 5]), vi("a3", [2, 1, 3, 5]), vi("b3", [3, 5, 4])],
      [vi("m2", None), vi("m3", None), vi("mm", None)],
      [init("B", rand(5, 3)), init("B3", rand(5, 2))])

# ---- valid: BatchNormalization --------------------------------------------

def bn_inits(c, p=""):
    return [init(p + "scale", rand(c)), init(p + "bias", rand(c)),
            init(p + "mean", rand(c)),
            init(p + "var", np.abs(rand(c)) + 0.5)]


for opset in (9, 15):
    model("ok_conv_bn_o%d" % opset,
          [node("Conv", ["x", "W"], ["c"], name="conv"),
           node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["y"],
                name="bn", epsilon=1e-3)],
          [vi("x", [1, 3, 6, 6])], [vi("y", None)],
          [init("W", rand(4, 3, 3, 3))] + bn_inits(4), opset=opset)
    model("ok_bn_alone_o%d" % opset,
          [node("Relu", ["x"], ["r"], name="relu"),
           node("BatchNormalization", ["r", "scale", "bias", "mean", "var"], ["y"],
                name="bn")],
          [vi("x", [1, 4, 3, 3])], [vi("y", None)], bn_inits(4), opset=opset)
model("ok_bn_spatial_o7",
      [node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y"],
            name="bn", spatial=1)],
      [vi("x", [1, 4, 3, 3])], [vi("y", None)], bn_inits(4), opset=7)

# ---- valid: activations ----------------------------------------------------

model("ok_activations",
      [node("Relu", ["x"], ["a"], name="relu"),
       node("LeakyRelu", ["a"], ["b"], name="leaky", alpha=0.2),
       node("Sigmoid", ["b"], ["y"], name="sig")],
      [vi("x", [1, 3, 2, 2])], [vi("y", None)])
model("ok_clip_attr_o10",
      [node("Clip", ["x"], ["y"], name="clip", min=0.0, max=6.0)],
      [vi("x", [1, 3])], [vi("y", None)], opset=10)
model("ok_clip_inputs_o11",
      [node("Constant", [], ["lo"], value=NH.from_array(np.array(0, np.float32))),
       node("Clip", ["x", "lo", "hi"], ["y"], name="clip")],
      [vi("x", [1, 3])], [vi("y", None)],
      [init("hi", np.array(6, np.float32))], opset=11)
model("ok_clip_max_only_o13",
      [node("Clip", ["x", "", "hi"], ["y"], name="clip")],
      [vi("x", [1, 3])], [vi("y", None)],
      [init("hi", np.array(1.5, np.float32))])
model("ok_conv_relu6_o13",
      [node("Conv", ["x", "W"], ["c"], name="conv"),
       node("Clip", ["c", "lo", "hi"], ["y"], name="relu6")],
      [vi("x", [1, 2, 4, 4])], [vi("y", None)],
      [init("W", rand(3, 2, 1, 1)), init("lo", np.array(0, np.float32)),
       init("hi", np.array(6, np.float32))])

# ---- valid: pooling --------------------------------------------------------

model("ok_maxpool_ceil_o10",
      [node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[3, 3],
            strides=[2, 2], ceil_mode=1)],
      [vi("x", [1, 2, 6, 6])], [vi("y", None)], opset=10,
      expect=[torch_pool_shape("max", [1, 2, 6, 6], 3, 2, 0, True)])
model("ok_maxpool_pads_dilations_o12",
      [node("MaxPool", ["x"], ["y", "idx"], name="pool", kernel_shape=[2, 2],
            strides=[2, 2], pads=[1, 1, 1, 1], dilations=[2, 2], ceil_mode=1)],
      [vi("x", [1, 2, 7, 7])], [vi("y", None)], opset=12,
      expect=[torch_pool_shape("max", [1, 2, 7, 7], 2, 2, 1, True, dil=2)])
model("ok_avgpool_ceil_pads_o11",
      [node("AveragePool", ["x"], ["y"], name="pool", kernel_shape=[2, 2],
            strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1)],
      [vi("x", [1, 1, 5, 5])], [vi("y", None)], opset=11,
      expect=[torch_pool_shape("avg", [1, 1, 5, 5], 2, 2, 1, True)])
model("ok_avgpool_same_upper_o7",
      [node("AveragePool", ["x"], ["y"], name="pool", kernel_shape=[3, 3],
            strides=[2, 2], auto_pad="SAME_UPPER")],
      [vi("x", [1, 1, 6, 5])], [vi("y", None)], opset=7)
model("ok_gap",
      [node("GlobalAveragePool", ["x"], ["y"], name="gap")],
      [vi("x", [1, 5, 3, 4])], [vi("y", None)])

# ---- valid: element-wise and layout ----------------------------------------

model("ok_add_mul_broadcast",
      [node("Add", ["x", "k"], ["a"], name="add"),
       node("Mul", ["a", "s"], ["b"], name="mul"),
       node("Add", ["b", "x"], ["y"], name="add2")],
      [vi("x", [1, 3, 2, 2])], [vi("y", None)],
      [init("k", rand(3, 1, 1)), init("s", np.array(0.5, np.float32))])
model("ok_concat_flatten_o11",
      [node("Concat", ["x", "z"], ["c"], name="cat", axis=-3),
       node("Flatten", ["c"], ["f"], name="flat", axis=-1),
       node("Concat", ["f", "f"], ["y"], name="cat2", axis=1)],
      [vi("x", [1, 2, 2, 3]), vi("z", [1, 1, 2, 3])], [vi("y", None)], opset=11)
model("ok_flatten_default_o9",
      [node("Flatten", ["x"], ["y"], name="flat")],
      [vi("x", [2, 3, 4])], [vi("y", None)], opset=9)
model("ok_reshape_zero_minus1",
      [node("Reshape", ["x", "s"], ["y"], name="reshape")],
      [vi("x", [1, 4, 3, 2])], [vi("y", None)],
      [init("s", np.array([0, -1, 2], np.int64))])
model("ok_reshape_allowzero_o14",
      [node("Reshape", ["x", "s"], ["y"], name="reshape", allowzero=1)],
      [vi("x", [1, 4, 3, 2])], [vi("y", None)],
      [init("s", np.array([2, 12], np.int64))], opset=14)
model("ok_identity",
      [node("Identity", ["x"], ["i"], name="id"),
       node("Identity", ["W"], ["Wi"], name="idw"),
       node("MatMul", ["i", "Wi"], ["y"], name="mm")],
      [vi("x", [1, 4])], [vi("y", None)], [init("W", rand(4, 2))])
model("ok_dropout_o10",
      [node("Dropout", ["x"], ["d", "mask"], name="drop", ratio=0.3),
       node("Relu", ["d"], ["y"], name="relu")],
      [vi("x", [1, 4])], [vi("y", None)], opset=10)
model("ok_dropout_o13",
      [node("Dropout", ["x", "ratio", "train"], ["d"], name="drop"),
       node("Relu", ["d"], ["y"], name="relu")],
      [vi("x", [1, 4])], [vi("y", None)],
      [init("ratio", np.array(0.2, np.float32)),
       H.make_tensor("train", TP.BOOL, [], [False])])
for opset in (11, 13):
    model("ok_softmax_3d_o%d" % opset,
          [node("Softmax", ["x"], ["y"], name="sm")],
          [vi("x", [2, 3, 4])], [vi("y", None)], opset=opset)
model("ok_softmax_axis1_o11",
      [node("Softmax", ["x"], ["y"], name="sm", axis=2)],
      [vi("x", [2, 3, 4])], [vi("y", None)], opset=11)

# ---- valid: constants and shape arithmetic ---------------------------------

model("ok_constant_value_o9",
      [node("Constant", [], ["k"], value=NH.from_array(rand(1, 3), "k")),
       node("Add", ["x", "k"], ["y"], name="add")],
      [vi("x", [2, 3])], [vi("y", None)], opset=9)
model("ok_constant_scalars_o12",
      [node("Constant", [], ["f"], value_float=2.5),
       node("Constant", [], ["fs"], value_floats=[1.0, 2.0, 3.0]),
       node("Constant", [], ["s"], value_ints=[3, -1]),
       node("Mul", ["x", "f"], ["a"], name="mul"),
       node("Add", ["a", "fs"], ["b"], name="add"),
       node("Reshape", ["b", "s"], ["y"], name="reshape")],
      [vi("x", [2, 3])], [vi("y", None)], opset=12, expect=[[3, 2]])
for opset in (11, 13):
    axes_attr = {"axes": [0]} if opset < 13 else {}
    axes_in = [] if opset < 13 else ["axes0"]
    inits = [] if opset < 13 else [init("axes0", np.array([0], np.int64))]
    model("ok_shape_chain_o%d" % opset,
          [node("Shape", ["x"], ["shape"], name="shape"),
           node("Constant", [], ["zero"], value=NH.from_array(np.array(0, np.int64)))
           if opset < 13 else node("Constant", [], ["zero"], value_int=0),
           node("Gather", ["shape", "zero"], ["n"], name="gather", axis=0),
           node("Unsqueeze", ["n"] + axes_in, ["n1"], name="unsq", **axes_attr),
           node("Constant", [], ["m1"], value=NH.from_array(np.array([-1], np.int64))),
           node("Concat", ["n1", "m1"], ["target"], name="cat", axis=0),
           node("Cast", ["target"], ["target64"], name="cast", to=TP.INT64),
           node("Reshape", ["x", "target64"], ["y"], name="reshape")],
          [vi("x", [1, 2, 3, 4])], [vi("y", None)], inits, opset=opset,
          expect=[[1, 24]])
model("ok_squeeze_unsqueeze_computed_o13",
      [node("GlobalAveragePool", ["x"], ["g"], name="gap"),
       node("Squeeze", ["g", "axes"], ["s"], name="squeeze"),
       node("Unsqueeze", ["s", "axes1"], ["y"], name="unsqueeze")],
      [vi("x", [1, 4, 3, 3])], [vi("y", None)],
      [init("axes", np.array([2, 3], np.int64)),
       init("axes1", np.array([-1], np.int64))])
model("ok_shape_start_end_o15",
      [node("Shape", ["x"], ["hw"], name="shape", start=-2),
       node("Constant", [], ["nc"], value=NH.from_array(np.array([1, -1], np.int64))),
       node("Concat", ["nc", "hw"], ["t"], name="cat", axis=0),
       node("Reshape", ["x", "t"], ["y"], name="reshape")],
      [vi("x", [1, 2, 3, 4])], [vi("y", None)], opset=15, expect=[[1, 2, 3, 4]])
model("ok_int32_initializer",
      [node("Cast", ["s32"], ["s"], name="cast", to=TP.INT64),
       node("Reshape", ["x", "s"], ["y"], name="reshape")],
      [vi("x", [2, 6])], [vi("y", None)],
      [init("s32", np.array([3, 4], np.int32), raw=False)], opset=13,
      expect=[[3, 4]])

# ---- malformed or unsupported ---------------------------------------------


def bad(name, nodes, inputs, outputs, inits=(), opset=13):
    model(name, nodes, inputs, outputs, inits, opset, check=False)


conv = [node("Conv", ["x", "W"], ["y"], name="conv1")]
bad("bad_unknown_op", [node("Foo", ["x"], ["y"], name="foo1")],
    [vi("x", [1, 3])], [vi("y", None)])
bad("bad_missing_initializer", conv, [vi("x", [1, 3, 5, 5])], [vi("y", None)])
bad("bad_channel_mismatch", conv, [vi("x", [1, 3, 5, 5])], [vi("y", None)],
    [init("W", rand(2, 4, 3, 3))])
bad("bad_attr_type",
    [node("Conv", ["x", "W"], ["y"], name="conv1", group=1.0)],
    [vi("x", [1, 3, 5, 5])], [vi("y", None)], [init("W", rand(2, 3, 3, 3))])
bad("bad_kernel_shape_3",
    [node("Conv", ["x", "W"], ["y"], name="conv1", kernel_shape=[3, 3, 3])],
    [vi("x", [1, 3, 5, 5])], [vi("y", None)], [init("W", rand(2, 3, 3, 3))])
bad("bad_conv1d", [node("Conv", ["x", "W"], ["y"], name="conv1")],
    [vi("x", [1, 3, 5])], [vi("y", None)], [init("W", rand(2, 3, 3))])
wrong = NH.from_array(rand(2, 3, 3, 3), "W")
wrong.raw_data = wrong.raw_data[:-4]
bad("bad_init_size", conv, [vi("x", [1, 3, 5, 5])], [vi("y", None)], [wrong])
def raw_tensor(name, dims, nbytes):
    t = TP(name=name, data_type=TP.FLOAT, dims=dims)
    t.raw_data = b"\0" * nbytes
    return t


bad("bad_huge_dims", conv, [vi("x", [1, 3, 5, 5])], [vi("y", None)],
    [raw_tensor("W", [1 << 40, 1 << 40], 16)])
bad("bad_huge_dims2", conv, [vi("x", [1, 3, 5, 5])], [vi("y", None)],
    [raw_tensor("W", [4, 1 << 26], 16)])
bad("bad_huge_input", [node("Relu", ["x"], ["y"], name="r")],
    [vi("x", [1 << 20, 1 << 20, 1 << 20])], [vi("y", None)])
ext = NH.from_array(rand(2, 3, 3, 3), "W")
ext.ClearField("raw_data")
ext.data_location = TP.EXTERNAL
ext.external_data.add(key="location", value="weights.bin")
bad("bad_external_data", conv, [vi("x", [1, 3, 5, 5])], [vi("y", None)], [ext])
bad("bad_int8_weight", conv, [vi("x", [1, 3, 5, 5])], [vi("y", None)],
    [NH.from_array(np.ones((2, 3, 3, 3), np.int8), "W")])
bad("bad_domain",
    [H.make_node("Relu", ["x"], ["y"], name="r", domain="com.microsoft")],
    [vi("x", [1, 3])], [vi("y", None)])
bad("bad_opset6", [node("Relu", ["x"], ["y"], name="r")],
    [vi("x", [1, 3])], [vi("y", None)], opset=6)
bad("bad_opset18", [node("Relu", ["x"], ["y"], name="r")],
    [vi("x", [1, 3])], [vi("y", None)], opset=18)
bad("bad_duplicate_output",
    [node("Relu", ["x"], ["y"], name="r1"), node("Sigmoid", ["x"], ["y"], name="r2")],
    [vi("x", [1, 3])], [vi("y", None)])
bad("bad_int_input", [node("Relu", ["x"], ["y"], name="r")],
    [vi("x", [1, 3], TP.INT64)], [vi("y", None)])
bad("bad_clip_attr_o11",
    [node("Clip", ["x"], ["y"], name="clip", min=0.0, max=6.0)],
    [vi("x", [1, 3])], [vi("y", None)], opset=11)
bad("bad_maxpool_indices_used",
    [node("MaxPool", ["x"], ["p", "idx"], name="pool", kernel_shape=[2, 2]),
     node("Cast", ["idx"], ["y"], name="cast", to=TP.FLOAT)],
    [vi("x", [1, 1, 4, 4])], [vi("y", None)], opset=12)
bad("bad_dropout_mask_used",
    [node("Dropout", ["x"], ["d", "mask"], name="drop"),
     node("Add", ["d", "mask"], ["y"], name="add")],
    [vi("x", [1, 4])], [vi("y", None)], opset=10)
bad("bad_dropout_training",
    [node("Dropout", ["x", "", "train"], ["y"], name="drop")],
    [vi("x", [1, 4])], [vi("y", None)], [H.make_tensor("train", TP.BOOL, [], [True])])
bad("bad_bn_training_o15",
    [node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y"],
          name="bn", training_mode=1)],
    [vi("x", [1, 4, 3, 3])], [vi("y", None)], bn_inits(4), opset=15)
bad("bad_reshape_allowzero",
    [node("Reshape", ["x", "s"], ["y"], name="reshape", allowzero=1)],
    [vi("x", [1, 4])], [vi("y", None)], [init("s", np.array([0, 4], np.int64))],
    opset=14)
bad("bad_reshape_computed_shape",
    [node("Reshape", ["x", "s"], ["y"], name="reshape")],
    [vi("x", [1, 4]), vi("s", [2])], [vi("y", None)])
bad("bad_flatten_negative_o9",
    [node("Flatten", ["x"], ["y"], name="flat", axis=-1)],
    [vi("x", [1, 4])], [vi("y", None)], opset=9)
bad("bad_gemm_no_c_o9",
    [node("Gemm", ["a", "B"], ["y"], name="fc")],
    [vi("a", [1, 6])], [vi("y", None)], [init("B", rand(6, 3))], opset=9)
bad("bad_unknown_attr",
    [node("Relu", ["x"], ["y"], name="r", foo=1)],
    [vi("x", [1, 3])], [vi("y", None)])
bad("bad_no_shape_input", [node("Relu", ["x"], ["y"], name="r")],
    [H.make_tensor_value_info("x", TP.FLOAT, None)], [vi("y", None)])
bad("bad_undefined_output", [node("Relu", ["x"], ["y"], name="r")],
    [vi("x", [1, 3])], [vi("z", None)])
bad("bad_identity_only", [node("Identity", ["x"], ["y"], name="id")],
    [vi("x", [1, 3])], [vi("y", None)])
m = onnx.ModelProto()
m.CopyFrom(onnx.load(os.path.join(HERE, "ok_activations.onnx")))
del m.opset_import[:]
with open(os.path.join(HERE, "bad_no_opset.onnx"), "wb") as f:
    f.write(m.SerializeToString())

# ---- numerical references ---------------------------------------------------

def T(a):
    return torch.from_numpy(np.array(a))


def softmax(x, axis):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def bn(x, i, eps=1e-5):
    s = i["scale"] / np.sqrt(i["var"] + eps)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return x * s.reshape(shape) + (i["bias"] - i["mean"] * s).reshape(shape)


def activations(x):
    a = np.maximum(x, 0)
    b = np.where(a >= 0, a, 0.2 * a)
    return 1 / (1 + np.exp(-b))


def avg_same_upper(x):
    """3x3/2 average with SAME_UPPER padding (top 0, bottom 1, left 1,
    right 1 for 6x5), the padding not counted."""
    pad = (1, 1, 0, 1)
    total = Fn.avg_pool2d(Fn.pad(T(x), pad), 3, 2) * 9
    count = Fn.avg_pool2d(Fn.pad(torch.ones(x.shape), pad), 3, 2) * 9
    return total / count


def inits_of(name):
    m = onnx.load(os.path.join(HERE, name + ".onnx"), load_external_data=False)
    return {t.name: NH.to_array(t) for t in m.graph.initializer}


# model -> function(inputs, initializers) -> list of outputs
REFS = {
    "ok_conv_raw": lambda x, i: [Fn.conv2d(T(x[0]), T(i["W"]), T(i["B"]), padding=1)],
    "ok_conv_same_upper": lambda x, i: [Fn.conv2d(Fn.pad(T(x[0]), (0, 1, 0, 1)), T(i["W"]),
                                                  stride=(2, 1), groups=4)],
    "ok_conv_same_lower": lambda x, i: [Fn.conv2d(Fn.pad(T(x[0]), (1, 0, 1, 0)), T(i["W"]),
                                                  stride=(2, 1), groups=4)],
    "ok_conv_valid": lambda x, i: [Fn.conv2d(T(x[0]), T(i["W"]), stride=(2, 1), groups=4)],
    "ok_conv_dilated_group": lambda x, i: [Fn.conv2d(
        Fn.pad(T(x[0]), (1, 1, 2, 2)), T(i["W"]), T(i["B"]), stride=(1, 2), dilation=2,
        groups=2)],
    "ok_conv_bn_o9": lambda x, i: [bn(Fn.conv2d(T(x[0]), T(i["W"])).numpy(), i, 1e-3)],
    "ok_conv_bn_o15": lambda x, i: [bn(Fn.conv2d(T(x[0]), T(i["W"])).numpy(), i, 1e-3)],
    "ok_bn_alone_o15": lambda x, i: [bn(np.maximum(x[0], 0), i)],
    "ok_gemm_transb": lambda x, i: [0.5 * x[0] @ i["B"].T + 2 * i["C"]],
    "ok_gemm_transa_row_c": lambda x, i: [x[0].T @ i["B"] + i["C"]],
    "ok_gemm_full_c": lambda x, i: [x[0] @ i["B"] + i["C"]],
    "ok_gemm_no_c": lambda x, i: [x[0] @ i["B"].T],
    "ok_gemm_computed_b": lambda x, i: [2 * x[0] @ x[1] + i["C"]],
    "ok_matmul": lambda x, i: [x[0] @ i["B"], x[1] @ i["B3"], x[1] @ x[2]],
    "ok_activations": lambda x, i: [activations(x[0])],
    "ok_clip_attr_o10": lambda x, i: [np.clip(x[0], 0, 6)],
    "ok_clip_max_only_o13": lambda x, i: [np.minimum(x[0], 1.5)],
    "ok_conv_relu6_o13": lambda x, i: [np.clip(Fn.conv2d(T(x[0]), T(i["W"])).numpy(), 0, 6)],
    "ok_maxpool_ceil_o10": lambda x, i: [Fn.max_pool2d(T(x[0]), 3, 2, ceil_mode=True)],
    "ok_maxpool_pads_dilations_o12": lambda x, i: [Fn.max_pool2d(T(x[0]), 2, 2, 1, 2,
                                                                 ceil_mode=True)],
    "ok_avgpool_ceil_pads_o11": lambda x, i: [Fn.avg_pool2d(T(x[0]), 2, 2, 1, ceil_mode=True,
                                                            count_include_pad=True)],
    "ok_avgpool_same_upper_o7": lambda x, i: [avg_same_upper(x[0])],
    "ok_gap": lambda x, i: [x[0].mean((2, 3), keepdims=True)],
    "ok_add_mul_broadcast": lambda x, i: [(x[0] + i["k"]) * i["s"] + x[0]],
    "ok_concat_flatten_o11": lambda x, i: [np.concatenate(
        [np.concatenate([x[0], x[1]], 1).reshape(6, 3)] * 2, 1)],
    "ok_reshape_zero_minus1": lambda x, i: [x[0].reshape(1, 12, 2)],
    "ok_identity": lambda x, i: [x[0] @ i["W"]],
    "ok_dropout_o13": lambda x, i: [np.maximum(x[0], 0)],
    "ok_softmax_3d_o11": lambda x, i: [softmax(x[0].reshape(2, 12), 1).reshape(2, 3, 4)],
    "ok_softmax_3d_o13": lambda x, i: [softmax(x[0], 2)],
    "ok_constant_scalars_o12": lambda x, i: [
        (x[0] * 2.5 + np.array([1, 2, 3], np.float32)).reshape(3, 2)],
    "ok_shape_chain_o13": lambda x, i: [x[0].reshape(1, 24)],
    "ok_squeeze_unsqueeze_computed_o13": lambda x, i: [
        x[0].mean((2, 3)).reshape(1, 4, 1)],
}
os.makedirs(os.path.join(HERE, "ref"), exist_ok=True)
for name, fn in sorted(REFS.items()):
    m = onnx.load(os.path.join(HERE, name + ".onnx"))
    rng = np.random.default_rng(3)
    xs = []
    for k, v in enumerate(m.graph.input):
        if v.name in {t.name for t in m.graph.initializer}:
            continue
        shape = [d.dim_value or 1 for d in v.type.tensor_type.shape.dim]
        xs.append(rng.standard_normal(shape).astype(np.float32))
        np.save(os.path.join(HERE, "ref", "%s.in%d.npy" % (name, len(xs) - 1)), xs[-1])
    with torch.no_grad():
        ys = fn(xs, inits_of(name))
    for k, y in enumerate(ys):
        y = y.numpy() if isinstance(y, torch.Tensor) else y
        assert list(y.shape) == EXPECTED[name]["outputs"][k], (name, y.shape)
        np.save(os.path.join(HERE, "ref", "%s.out%d.npy" % (name, k)),
                np.ascontiguousarray(y, dtype=np.float32))
    EXPECTED[name]["ref"] = True

# ---- torch-exported models -------------------------------------------------


class Block(torch.nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(cout)
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = torch.nn.Sequential(
                torch.nn.Conv2d(cin, cout, 1, stride, bias=False),
                torch.nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (self.down(x) if self.down is not None else x))


class ResNetS(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, 1, 1, bias=False), torch.nn.BatchNorm2d(8),
            torch.nn.ReLU(), torch.nn.MaxPool2d(3, 2, 1))
        self.layer1 = Block(8, 8, 1)
        self.layer2 = Block(8, 16, 2)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class InvertedResidual(torch.nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hid = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(cin, hid, 1, bias=False), torch.nn.BatchNorm2d(hid),
            torch.nn.ReLU6(),
            torch.nn.Conv2d(hid, hid, 3, stride, 1, groups=hid, bias=False),
            torch.nn.BatchNorm2d(hid), torch.nn.ReLU6(),
            torch.nn.Conv2d(hid, cout, 1, bias=False), torch.nn.BatchNorm2d(cout))

    def forward(self, x):
        return x + self.body(x) if self.use_res else self.body(x)


class MobileNetV2S(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, 2, 1, bias=False), torch.nn.BatchNorm2d(8),
            torch.nn.ReLU6())
        self.blocks = torch.nn.Sequential(
            InvertedResidual(8, 8, 1, 2), InvertedResidual(8, 16, 2, 2),
            InvertedResidual(16, 16, 1, 2))
        self.head = torch.nn.Sequential(
            torch.nn.Conv2d(16, 32, 1, bias=False), torch.nn.BatchNorm2d(32),
            torch.nn.ReLU6())
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.drop = torch.nn.Dropout(0.2)
        self.fc = torch.nn.Linear(32, 10)

    def forward(self, x):
        x = self.pool(self.head(self.blocks(self.stem(x))))
        return self.fc(self.drop(x.view(x.size(0), -1)))


def randomize_bn(net):
    g = torch.Generator().manual_seed(1)
    for mod in net.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            c = mod.num_features
            mod.weight.data = torch.rand(c, generator=g) + 0.5
            mod.bias.data = torch.randn(c, generator=g) * 0.1
            mod.running_mean = torch.randn(c, generator=g) * 0.1
            mod.running_var = torch.rand(c, generator=g) + 0.5


def export(net, name, opset, **kw):
    path = os.path.join(HERE, name + ".onnx")
    x = torch.from_numpy(np.random.default_rng(7).standard_normal((1, 1, 28, 28))
                         .astype(np.float32))
    with torch.no_grad():
        y = net(x)
    # PRESERVE (the model is in eval mode) skips the exporter's eval-mode
    # peephole pass, which would fold BatchNorm into Conv itself: the point
    # is to have the importer do that
    torch.onnx.export(net, x, path, opset_version=opset, do_constant_folding=False,
                      training=torch.onnx.TrainingMode.PRESERVE,
                      input_names=["input"], output_names=["logits"], **kw)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    np.save(os.path.join(HERE, name + "_input.npy"), x.numpy())
    np.save(os.path.join(HERE, name + "_output.npy"), y.numpy())
    EXPECTED[name] = {"outputs": [list(y.shape)], "opset": opset}


torch.manual_seed(0)
resnet = ResNetS().eval()
randomize_bn(resnet)
mbv2 = MobileNetV2S().eval()
randomize_bn(mbv2)
export(resnet, "torch_resnet_o11", 11, keep_initializers_as_inputs=True)
export(resnet, "torch_resnet_o13", 13,
       dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
export(mbv2, "torch_mbv2_o11", 11)
export(mbv2, "torch_mbv2_o13", 13,
       dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})

with open(os.path.join(HERE, "expected.json"), "w") as f:
    json.dump(EXPECTED, f, indent=1, sort_keys=True)
    f.write("\n")
print("wrote %d valid fixtures" % len(EXPECTED))

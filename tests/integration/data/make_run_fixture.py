#!/usr/bin/python3
"""Writes the fixture of test_cli_run.sh: a tiny two-input CNN in ONNX
(opset 13) plus its inputs and the outputs computed here with plain NumPy,
independently of dicefleet.

    /usr/bin/python3 tests/integration/data/make_run_fixture.py

Model (input [1,1,8,8] "input", [1,10] "extra"):
  Conv 4x1x3x3 pad 1 -> BatchNormalization -> Relu -> MaxPool 2x2 s2 (= p)
  -> depthwise Conv 4x1x3x3 pad 1, group 4 -> Clip(0, 6) -> Add p (residual)
  -> AveragePool 3x3 s1 pad 1 (count_include_pad 0) -> GlobalAveragePool
  -> Flatten -> Gemm 10x4 (transB) -> Add extra -> "logits/out"
  -> Softmax(axis -1) -> "probs:0"
Output names contain '/' and ':' so the CLI's file-name sanitizing shows.
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(20251126)


def conv2d(x, w, b, pad, group):
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = h + 2 * pad - kh + 1, wd + 2 * pad - kw + 1
    y = np.zeros((n, m, oh, ow), dtype=np.float64)
    mg = m // group
    for o in range(m):
        g = o // mg
        for i in range(oh):
            for j in range(ow):
                patch = xp[:, g * cg:(g + 1) * cg, i:i + kh, j:j + kw]
                y[:, o, i, j] = (patch * w[o]).sum(axis=(1, 2, 3)) + b[o]
    return y


def maxpool2(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def avgpool3_exclude_pad(x):
    n, c, h, w = x.shape
    y = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            win = x[:, :, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2]
            y[:, :, i, j] = win.mean(axis=(2, 3))
    return y


def main():
    f32 = np.float32
    w1 = rng.normal(0, 0.5, (4, 1, 3, 3)).astype(f32)
    b1 = rng.normal(0, 0.1, 4).astype(f32)
    gamma = rng.uniform(0.5, 1.5, 4).astype(f32)
    beta = rng.normal(0, 0.1, 4).astype(f32)
    mean = rng.normal(0, 0.1, 4).astype(f32)
    var = rng.uniform(0.5, 1.5, 4).astype(f32)
    eps = 1e-5
    w2 = rng.normal(0, 0.5, (4, 1, 3, 3)).astype(f32)
    b2 = rng.normal(0, 0.1, 4).astype(f32)
    wg = rng.normal(0, 0.5, (10, 4)).astype(f32)
    bg = rng.normal(0, 0.1, 10).astype(f32)
    x = rng.normal(0, 1, (1, 1, 8, 8)).astype(f32)
    extra = rng.normal(0, 0.1, (1, 10)).astype(f32)

    # NumPy reference, in float64.
    y = conv2d(x.astype(np.float64), w1, b1, 1, 1)
    y = (y - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + eps)
    y = y * gamma[None, :, None, None] + beta[None, :, None, None]
    y = np.maximum(y, 0)
    p = maxpool2(y)
    y = conv2d(p, w2, b2, 1, 4)
    y = np.clip(y, 0, 6) + p
    y = avgpool3_exclude_pad(y)
    y = y.mean(axis=(2, 3))
    logits = y @ wg.T.astype(np.float64) + bg + extra
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs = e / e.sum(axis=-1, keepdims=True)

    init = [numpy_helper.from_array(a, n) for a, n in [
        (w1, "w1"), (b1, "b1"), (gamma, "gamma"), (beta, "beta"),
        (mean, "mean"), (var, "var"), (w2, "w2"), (b2, "b2"),
        (wg, "wg"), (bg, "bg"), (np.array(0, f32), "lo"),
        (np.array(6, f32), "hi")]]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1",
                         pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("BatchNormalization",
                         ["c1", "gamma", "beta", "mean", "var"], ["bn1"],
                         name="bn1", epsilon=eps),
        helper.make_node("Relu", ["bn1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1",
                         kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="dw2",
                         pads=[1, 1, 1, 1], kernel_shape=[3, 3], group=4),
        helper.make_node("Clip", ["c2", "lo", "hi"], ["r2"], name="relu6"),
        helper.make_node("Add", ["r2", "p1"], ["s2"], name="residual"),
        helper.make_node("AveragePool", ["s2"], ["a2"], name="avg",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         count_include_pad=0),
        helper.make_node("GlobalAveragePool", ["a2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "wg", "bg"], ["fc"], name="fc",
                         transB=1),
        helper.make_node("Add", ["fc", "extra"], ["logits/out"], name="plus"),
        helper.make_node("Softmax", ["logits/out"], ["probs:0"],
                         name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "run_tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8]),
         helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1, 10])],
        [helper.make_tensor_value_info("logits/out", TensorProto.FLOAT, [1, 10]),
         helper.make_tensor_value_info("probs:0", TensorProto.FLOAT, [1, 10])],
        init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="dicefleet-tests")
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(HERE, "run_tiny.onnx"))
    np.save(os.path.join(HERE, "run_tiny_input.npy"), x)
    np.save(os.path.join(HERE, "run_tiny_extra.npy"), extra)
    np.save(os.path.join(HERE, "run_tiny_logits.npy"), logits.astype(f32))
    np.save(os.path.join(HERE, "run_tiny_probs.npy"), probs.astype(f32))


if __name__ == "__main__":
    main()

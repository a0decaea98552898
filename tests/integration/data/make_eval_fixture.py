#!/usr/bin/python3
"""Writes tests/integration/data/eval_tiny/: a tiny real Fashion-MNIST model
directory for the `dicefleet eval` / `classify` integration test, so that
test checks real numbers even where the shipped models are absent.

usage: /usr/bin/python3 tests/integration/data/make_eval_fixture.py

The model is Conv(1->6, 5x5, stride 2) + ReLU + Flatten + Gemm(864->10):
random fixed conv filters and a ridge-regression read-out fitted on 20,000
training images (about 80% test accuracy, in a second). Its accuracy on
the 10,000 test images and its predictions for the sample images are
computed here with NumPy (float64), from inputs preprocessed as torchvision
would (Pillow convert("L") + resize BILINEAR, x/255, (x-0.2860)/0.3530).
Needs python3-numpy, python3-onnx, python3-pil and dataset-fashion-mnist.
"""
import gzip
import hashlib
import json
import os
import struct

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "eval_tiny")
DATA = "/usr/share/datasets/fashion-mnist"
MEAN, STD = np.float32(0.2860), np.float32(0.3530)
LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
          "Shirt", "Sneaker", "Bag", "Ankle boot"]


def read_idx(name):
    with gzip.open(os.path.join(DATA, name), "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def prep(u8):
    """uint8 [N,28,28] -> float32 [N,1,28,28], as PyTorch computes it."""
    x = u8.astype(np.float32) / np.float32(255.0)
    return ((x - MEAN) / STD)[:, None]


def conv_features(x, w, b):
    """Conv 5x5 stride 2 no padding + ReLU, float64: [N,6,12,12] flattened."""
    n = x.shape[0]
    out = np.empty((n, w.shape[0], 12, 12))
    for i in range(12):
        for j in range(12):
            patch = x[:, 0, 2 * i:2 * i + 5, 2 * j:2 * j + 5].reshape(n, 25).astype(np.float64)
            out[:, :, i, j] = patch @ w.reshape(w.shape[0], 25).T.astype(np.float64) + b
    return np.maximum(out, 0).reshape(n, -1)


def logits(x, w, b, gw, gb):
    return conv_features(x, w, b) @ gw.T.astype(np.float64) + gb


def main():
    rng = np.random.default_rng(0)
    xtr = read_idx("train-images-idx3-ubyte.gz")[:20000]
    ytr = read_idx("train-labels-idx1-ubyte.gz")[:20000]
    xte = read_idx("t10k-images-idx3-ubyte.gz")
    yte = read_idx("t10k-labels-idx1-ubyte.gz")

    w = (rng.standard_normal((6, 1, 5, 5)) / 5).astype(np.float32)
    b = (rng.standard_normal(6) * 0.1).astype(np.float32)
    f = conv_features(prep(xtr), w, b)
    f1 = np.hstack([f, np.ones((f.shape[0], 1))])
    t = np.eye(10)[ytr]
    sol = np.linalg.solve(f1.T @ f1 + 10.0 * np.eye(f1.shape[1]), f1.T @ t)
    gw = sol[:-1].T.astype(np.float32)   # [10, 864]
    gb = sol[-1].astype(np.float32)

    lt = logits(prep(xte), w, b, gw, gb)
    pred = lt.argmax(1)
    top2 = np.sort(lt, 1)[:, -2:]
    acc = float((pred == yte).mean())
    near = int(((top2[:, 1] - top2[:, 0]) < 1e-4).sum())
    print("test accuracy %.4f; near-ties %d" % (acc, near))

    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "conv.w", "conv.b"], ["c"],
                          kernel_shape=[5, 5], strides=[2, 2], name="conv"),
         helper.make_node("Relu", ["c"], ["r"], name="relu"),
         helper.make_node("Flatten", ["r"], ["f"], axis=1, name="flatten"),
         helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["logits"], transB=1, name="fc")],
        "eval_tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(w, "conv.w"), numpy_helper.from_array(b, "conv.b"),
         numpy_helper.from_array(gw, "fc.w"), numpy_helper.from_array(gb, "fc.b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="make_eval_fixture.py")
    onnx.checker.check_model(model)
    os.makedirs(os.path.join(OUT, "samples"), exist_ok=True)
    onnx_path = os.path.join(OUT, "model.onnx")
    onnx.save(model, onnx_path)
    with open(os.path.join(OUT, "labels.txt"), "w") as fh:
        fh.write("\n".join(LABELS) + "\n")
    meta = {
        "name": "eval-tiny", "onnx": "model.onnx",
        "sha256": hashlib.sha256(open(onnx_path, "rb").read()).hexdigest(),
        "input": {"name": "input", "shape": [1, 1, 28, 28], "color": "grayscale",
                  "resize": [28, 28], "mean": [0.2860], "std": [0.3530]},
        "output": {"name": "logits"}, "labels": "labels.txt",
        "dataset": "fashion-mnist",
        "accuracy": {"test": round(acc, 4), "images": int(len(yte))},
        "params": int(w.size + b.size + gw.size + gb.size), "seed": 0, "opset": 13,
    }
    with open(os.path.join(OUT, "model.json"), "w") as fh:
        json.dump(meta, fh, indent=2)
        fh.write("\n")

    # Samples: test images as 28x28 PNG, one enlarged RGB PNG (conversion
    # and resizing), one JPEG. Only images with a clear top-1 margin.
    samples = {}
    picked = [i for i in range(200) if top2[i, 1] - top2[i, 0] > 0.05][:4]
    files = []
    for k, i in enumerate(picked):
        name = "t10k-%04d.png" % i
        Image.fromarray(xte[i]).save(os.path.join(OUT, "samples", name))
        files.append((name, int(yte[i])))
    big = Image.fromarray(xte[picked[0]]).resize((84, 70), Image.BICUBIC).convert("RGB")
    big.save(os.path.join(OUT, "samples", "rgb-84x70.png"))
    files.append(("rgb-84x70.png", int(yte[picked[0]])))
    Image.fromarray(xte[picked[1]]).save(os.path.join(OUT, "samples", "gray.jpg"), quality=95)
    files.append(("gray.jpg", int(yte[picked[1]])))
    for name, label in files:
        im = Image.open(os.path.join(OUT, "samples", name)).convert("L")
        if im.size != (28, 28):
            im = im.resize((28, 28), Image.BILINEAR)
        lg = logits(prep(np.asarray(im)[None]), w, b, gw, gb)[0]
        s = np.sort(lg)
        assert s[-1] - s[-2] > 0.01, name
        samples[name] = {"predicted": int(lg.argmax()), "label": label,
                         "logits": [round(float(v), 4) for v in lg]}
    with open(os.path.join(OUT, "samples", "expected.json"), "w") as fh:
        json.dump({"eval-tiny": samples}, fh, indent=2)
        fh.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()

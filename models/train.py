#!/usr/bin/python3
"""Train and export dicefleet's shipped Fashion-MNIST models.

Run with Debian's interpreter (it has python3-torch):

    /usr/bin/python3 models/train.py --model all --out models/

For each model NAME this writes NAME/model.onnx, NAME/model.json,
NAME/labels.txt and NAME/MODEL_CARD.md under --out, plus the shared
samples/ directory (one real test image per class as PNG and
samples/expected.json with the PyTorch top-1 prediction per model).

Everything is seeded (seed 0) and uses 2 CPU threads; the data comes from
the Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).
"""

import argparse
import datetime
import gzip
import hashlib
import json
import math
import os
import platform
import random
import re
import struct
import sys
import time
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA_DIR = "/usr/share/datasets/fashion-mnist"
MEAN = 0.2860
STD = 0.3530
NUM_VAL = 5000  # the last 5,000 images of the 60k training set, fixed
LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
          "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
SLUGS = ["t-shirt-top", "trouser", "pullover", "dress", "coat",
         "sandal", "shirt", "sneaker", "bag", "ankle-boot"]
OPSET = 13
CKPT_DIR = "/tmp/dicefleet-train"
SMOKE_STEPS = 0  # --smoke: pipeline test only, not a real model

# Per-model training recipe. Epoch counts were sized from a measured epoch
# time (idle 2 cores: VGG ~60 s, ResNet ~70-110 s, MobileNet ~90 s per epoch)
# so that each model trains in under ~20 minutes on an idle 2-core machine;
# the VGG reaches 93% test accuracy in 6 epochs.
RECIPES = {
    "fmnist-vgg": dict(epochs=6, batch=128, lr=0.1, wd=5e-4, smoothing=0.1),
    "fmnist-resnet": dict(epochs=12, batch=128, lr=0.1, wd=5e-4, smoothing=0.1),
    "fmnist-mobilenet": dict(epochs=10, batch=128, lr=0.1, wd=2e-4, smoothing=0.1),
}


# --------------------------------------------------------------------------
# data

def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError("%s: not an unsigned-byte IDX file" % path)
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError("%s: size mismatch" % path)
    return arr.reshape(dims)


def load_fashion_mnist():
    d = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x = read_idx(os.path.join(DATA_DIR, prefix + "-images-idx3-ubyte.gz"))
        y = read_idx(os.path.join(DATA_DIR, prefix + "-labels-idx1-ubyte.gz"))
        d[split] = (x, y)
    return d


def preprocess_u8(x_u8):
    """uint8 [N,28,28] -> float32 NCHW, x/255 then (x-mean)/std."""
    x = torch.from_numpy(np.array(x_u8)).float().div_(255.0)
    return x.sub_(MEAN).div_(STD).unsqueeze(1)


def augment(x01, gen):
    """Random crop (zero padding 2, in pixel space) + horizontal flip.

    x01: float [B,28,28] in [0,1]. Returns the same shape.
    """
    b = x01.shape[0]
    xp = F.pad(x01, (2, 2, 2, 2))  # pad value 0 = black pixel
    oy = torch.randint(0, 5, (b,), generator=gen)
    ox = torch.randint(0, 5, (b,), generator=gen)
    ar = torch.arange(28)
    rows = (oy[:, None] + ar[None, :])[:, :, None]
    cols = (ox[:, None] + ar[None, :])[:, None, :]
    bi = torch.arange(b)[:, None, None]
    out = xp[bi, rows, cols]
    flip = torch.rand(b, generator=gen) < 0.5
    out = torch.where(flip[:, None, None], out.flip(2), out)
    return out


# --------------------------------------------------------------------------
# models

def conv_bn(cin, cout, k=3, stride=1, groups=1, act="relu"):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    if act == "relu":
        layers.append(nn.ReLU(inplace=True))
    elif act == "relu6":
        layers.append(nn.ReLU6(inplace=True))
    return layers


class VGG(nn.Module):
    """VGG-style: 3x3 conv+BN+ReLU stacks, max-pools, hidden FC, classifier."""
    cfg = [32, "M", 64, 64, "M", 128, 128, "M"]

    def __init__(self, hidden=256, num_classes=10):
        super().__init__()
        layers, cin = [], 1
        for v in self.cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += conv_bn(cin, v)
                cin = v
        self.features = nn.Sequential(*layers)
        self.fc1 = nn.Linear(cin * 3 * 3, hidden)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x):
        x = self.features(x)
        x = torch.flatten(x, 1)
        return self.fc2(self.relu(self.fc1(x)))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + idt)


class ResNet(nn.Module):
    """ResNet-style: stem conv, basic blocks (32 @28x28, 64 @14x14, 128 @7x7)."""
    stages = [(32, 1), (64, 2), (128, 2)]

    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(1, 32))
        blocks, cin = [], 32
        for cout, stride in self.stages:
            blocks.append(BasicBlock(cin, cout, stride))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hid = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.block = nn.Sequential(
            *conv_bn(cin, hid, k=1, act="relu6"),                      # expand
            *conv_bn(hid, hid, k=3, stride=stride, groups=hid, act="relu6"),  # depthwise
            *conv_bn(hid, cout, k=1, act=None))                        # project (linear)

    def forward(self, x):
        out = self.block(x)
        return x + out if self.use_res else out


class MobileNetV2(nn.Module):
    """MobileNetV2-style: stem, inverted residual blocks, 1x1 head, GAP, FC."""
    # (expand t, out channels c, repeats n, first stride s)
    cfg = [(2, 32, 1, 1), (4, 48, 2, 1), (4, 96, 2, 2)]
    head = 256
    stem_stride = 2  # as in MobileNetV2: 28x28 -> 14x14

    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(1, 32, stride=self.stem_stride, act="relu6"))
        blocks, cin = [], 32
        for t, c, n, s in self.cfg:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.blocks = nn.Sequential(*blocks)
        self.head_conv = nn.Sequential(*conv_bn(cin, self.head, k=1, act="relu6"))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.head, num_classes)

    def forward(self, x):
        x = self.head_conv(self.blocks(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


BUILDERS = {"fmnist-vgg": VGG, "fmnist-resnet": ResNet, "fmnist-mobilenet": MobileNetV2}
STYLE = {"fmnist-vgg": "VGG-style", "fmnist-resnet": "ResNet-style",
         "fmnist-mobilenet": "MobileNetV2-style"}


# --------------------------------------------------------------------------
# measurement helpers

def layer_table(model):
    """Run one [1,1,28,28] input; return (rows, macs) for Conv2d/Linear."""
    rows, hooks = [], []

    def hook(mod, inp, out, name):
        x = inp[0]
        if isinstance(mod, nn.Conv2d):
            oc, oh, ow = out.shape[1], out.shape[2], out.shape[3]
            kh, kw = mod.kernel_size
            macs = oh * ow * oc * (mod.in_channels // mod.groups) * kh * kw
            kind = "Conv %dx%d/%d" % (kh, kw, mod.stride[0])
            if mod.groups > 1:
                kind += " depthwise" if mod.groups == mod.in_channels else " g%d" % mod.groups
            rows.append(dict(name=name, kind=kind, cin=mod.in_channels, cout=oc,
                             in_hw="%dx%d" % (x.shape[2], x.shape[3]),
                             out_hw="%dx%d" % (oh, ow), macs=macs,
                             params=sum(p.numel() for p in mod.parameters())))
        else:
            macs = mod.in_features * mod.out_features
            rows.append(dict(name=name, kind="Linear", cin=mod.in_features,
                             cout=mod.out_features, in_hw="-", out_hw="-", macs=macs,
                             params=sum(p.numel() for p in mod.parameters())))

    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            hooks.append(mod.register_forward_hook(
                lambda m, i, o, n=name: hook(m, i, o, n)))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return rows, sum(r["macs"] for r in rows)


def check_width_constraint(name, rows):
    # every Conv/Linear except the stem (first) and the classifier (last)
    for r in rows[1:-1]:
        if r["cout"] < 32:
            raise AssertionError("%s: %s has %d outputs (< 32)" % (name, r["name"], r["cout"]))
    assert rows[0]["cin"] == 1 and rows[-1]["cout"] == 10


@torch.no_grad()
def evaluate(model, x, y, batch=1000):
    model.eval()
    preds = []
    for i in range(0, x.shape[0], batch):
        preds.append(model(x[i:i + batch]).argmax(1))
    pred = torch.cat(preds)
    correct = pred == y
    acc = correct.float().mean().item()
    per_class = [correct[y == c].float().mean().item() for c in range(10)]
    return acc, per_class, pred


# --------------------------------------------------------------------------
# PNG (tiny, pure python: 8-bit grayscale, non-interlaced)

def png_write(path, img_u8):
    h, w = img_u8.shape
    raw = b"".join(b"\x00" + bytes(img_u8[r].tolist()) for r in range(h))

    def chunk(tag, data):
        c = struct.pack(">I", len(data)) + tag + data
        return c + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n"
           + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9))
           + chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(png)


def png_read_gray8(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        n, tag = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if tag == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat += body
        elif tag == b"IEND":
            break
    w, h, depth, ctype, _, _, interlace = hdr
    assert depth == 8 and ctype == 0 and interlace == 0, "only 8-bit gray supported"
    raw = zlib.decompress(idat)
    out = np.zeros((h, w), np.uint8)
    prev = np.zeros(w, np.int32)
    for r in range(h):
        ft = raw[r * (w + 1)]
        line = np.frombuffer(raw, np.uint8, w, r * (w + 1) + 1).astype(np.int32)
        cur = np.zeros(w, np.int32)
        for c in range(w):
            a = cur[c - 1] if c else 0
            b = prev[c]
            cc = prev[c - 1] if c else 0
            if ft == 0:
                p = 0
            elif ft == 1:
                p = a
            elif ft == 2:
                p = b
            elif ft == 3:
                p = (a + b) // 2
            else:
                pa, pb, pc = abs(b - cc), abs(a - cc), abs(a + b - 2 * cc)
                p = a if pa <= pb and pa <= pc else (b if pb <= pc else cc)
            cur[c] = (line[c] + p) & 0xFF
        out[r] = cur
        prev = cur
    return out


def write_samples(out_dir, x_test, y_test):
    sdir = os.path.join(out_dir, "samples")
    os.makedirs(sdir, exist_ok=True)
    files = []
    for c in range(10):
        idx = int(np.nonzero(y_test == c)[0][0])
        fname = "%04d-%s.png" % (idx, SLUGS[c])
        path = os.path.join(sdir, fname)
        png_write(path, x_test[idx])
        back = png_read_gray8(path)
        assert np.array_equal(back, x_test[idx]), "PNG round trip failed"
        files.append((fname, idx, c))
    files.sort()
    return sdir, files


# --------------------------------------------------------------------------
# tiny numpy interpreter for the exported graph (onnxruntime is not available)

def onnx_numpy_run(model_proto, feeds):
    from onnx import numpy_helper
    g = model_proto.graph
    env = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    env.update(feeds)

    def attr(node, name, default=None):
        for a in node.attribute:
            if a.name == name:
                import onnx
                return onnx.helper.get_attribute_value(a)
        return default

    def conv(x, w, b, strides, pads, group, dil):
        n, cin, h, wd = x.shape
        cout, cin_g, kh, kw = w.shape
        assert tuple(dil) == (1, 1)
        xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
        oh = (h + pads[0] + pads[2] - kh) // strides[0] + 1
        ow = (wd + pads[1] + pads[3] - kw) // strides[1] + 1
        out = np.zeros((n, cout, oh, ow), np.float64)
        cout_g = cout // group
        for gi in range(group):
            xs = xp[:, gi * cin_g:(gi + 1) * cin_g]
            ws = w[gi * cout_g:(gi + 1) * cout_g].astype(np.float64)
            for i in range(kh):
                for j in range(kw):
                    patch = xs[:, :, i:i + strides[0] * oh:strides[0], j:j + strides[1] * ow:strides[1]]
                    out[:, gi * cout_g:(gi + 1) * cout_g] += np.einsum(
                        "nchw,oc->nohw", patch, ws[:, :, i, j])
        if b is not None:
            out += b.reshape(1, -1, 1, 1)
        return out.astype(np.float32)

    for node in g.node:
        ins = [env[i] if i else None for i in node.input]
        op = node.op_type
        if op == "Conv":
            k = ins[1].shape[2:]
            r = conv(ins[0], ins[1], ins[2] if len(ins) > 2 else None,
                     attr(node, "strides", [1, 1]), attr(node, "pads", [0, 0, 0, 0]),
                     attr(node, "group", 1), attr(node, "dilations", [1, 1]))
            assert list(attr(node, "kernel_shape", k)) == list(k)
        elif op == "BatchNormalization":
            x, s, bb, m, v = ins
            eps = attr(node, "epsilon", 1e-5)
            sh = (1, -1, 1, 1)
            r = ((x - m.reshape(sh)) / np.sqrt(v.reshape(sh) + eps) * s.reshape(sh)
                 + bb.reshape(sh)).astype(np.float32)
        elif op == "Relu":
            r = np.maximum(ins[0], 0)
        elif op == "Clip":
            lo = ins[1] if len(ins) > 1 and ins[1] is not None else -np.inf
            hi = ins[2] if len(ins) > 2 and ins[2] is not None else np.inf
            r = np.clip(ins[0], lo, hi)
        elif op == "Add":
            r = ins[0] + ins[1]
        elif op == "MaxPool":
            k = attr(node, "kernel_shape")
            s = attr(node, "strides", k)
            assert list(attr(node, "pads", [0, 0, 0, 0])) == [0, 0, 0, 0]
            x = ins[0]
            oh = (x.shape[2] - k[0]) // s[0] + 1
            ow = (x.shape[3] - k[1]) // s[1] + 1
            r = np.full(x.shape[:2] + (oh, ow), -np.inf, np.float32)
            for i in range(k[0]):
                for j in range(k[1]):
                    r = np.maximum(r, x[:, :, i:i + s[0] * oh:s[0], j:j + s[1] * ow:s[1]])
        elif op == "GlobalAveragePool":
            r = ins[0].mean(axis=(2, 3), keepdims=True)
        elif op == "Flatten":
            ax = attr(node, "axis", 1)
            r = ins[0].reshape(int(np.prod(ins[0].shape[:ax])), -1)
        elif op == "Reshape":
            r = ins[0].reshape([int(d) for d in ins[1]])
        elif op == "Gemm":
            a, b = ins[0], ins[1]
            if attr(node, "transA", 0):
                a = a.T
            if attr(node, "transB", 0):
                b = b.T
            r = attr(node, "alpha", 1.0) * (a.astype(np.float64) @ b.astype(np.float64))
            if len(ins) > 2 and ins[2] is not None:
                r = r + attr(node, "beta", 1.0) * ins[2]
            r = r.astype(np.float32)
        elif op == "MatMul":
            r = ins[0] @ ins[1]
        elif op == "Constant":
            from onnx import numpy_helper as nh
            r = nh.to_array(attr(node, "value"))
        elif op == "Identity":
            r = ins[0]
        else:
            raise NotImplementedError("numpy runner: op %s" % op)
        env[node.output[0]] = r
    return [env[o.name] for o in g.output]


# --------------------------------------------------------------------------
# training

def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def param_groups(model, wd):
    decay, no_decay = [], []
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            decay.append(m.weight)
            if m.bias is not None:
                no_decay.append(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            no_decay += [m.weight, m.bias]
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def train_model(name, recipe, data, seed, log):
    seed_everything(seed)
    model = BUILDERS[name]()
    model = model.to(memory_format=torch.channels_last)  # ~15-30% faster on CPU
    xtr_u8, ytr = data["train"]
    n_train = xtr_u8.shape[0] - NUM_VAL
    x_train01 = torch.from_numpy(np.array(xtr_u8[:n_train])).float().div_(255.0)
    y_train = torch.from_numpy(ytr[:n_train].astype(np.int64))
    x_val = preprocess_u8(xtr_u8[n_train:])
    y_val = torch.from_numpy(ytr[n_train:].astype(np.int64))

    epochs, bs = recipe["epochs"], recipe["batch"]
    steps_per_epoch = n_train // bs  # drop last partial batch
    if SMOKE_STEPS:
        steps_per_epoch = SMOKE_STEPS
    total = epochs * steps_per_epoch
    warm = steps_per_epoch  # 1 epoch linear warm-up, then cosine to 0
    opt = torch.optim.SGD(param_groups(model, recipe["wd"]), lr=recipe["lr"],
                          momentum=0.9, nesterov=True)

    def lr_at(step):
        if step < warm:
            return recipe["lr"] * (step + 1) / warm
        p = (step - warm) / max(1, total - warm)
        return recipe["lr"] * 0.5 * (1 + math.cos(math.pi * p))

    crit = nn.CrossEntropyLoss(label_smoothing=recipe["smoothing"])
    gen = torch.Generator().manual_seed(seed)
    best = (-1.0, -1, None)
    history = []
    step = 0
    t0 = time.time()
    c0 = time.process_time()
    for ep in range(epochs):
        model.train()
        te = time.time()
        perm = torch.randperm(n_train, generator=gen)
        loss_sum, correct, seen = 0.0, 0, 0
        for bi in range(steps_per_epoch):
            idx = perm[bi * bs:(bi + 1) * bs]
            xb = augment(x_train01[idx], gen)
            xb = xb.sub_(MEAN).div_(STD).unsqueeze(1).contiguous(
                memory_format=torch.channels_last)
            yb = y_train[idx]
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            out = model(xb)
            loss = crit(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.item() * yb.shape[0]
            correct += (out.argmax(1) == yb).sum().item()
            seen += yb.shape[0]
        val_acc, _, _ = evaluate(model, x_val, y_val)
        ep_s = time.time() - te
        history.append(dict(epoch=ep + 1, loss=loss_sum / seen, train_acc=correct / seen,
                            val_acc=val_acc, seconds=ep_s))
        log("%s epoch %2d/%d loss %.4f train_acc %.4f val_acc %.4f (%.1fs, lr %.4f)" % (
            name, ep + 1, epochs, loss_sum / seen, correct / seen, val_acc, ep_s,
            lr_at(step - 1)))
        if val_acc > best[0]:
            best = (val_acc, ep + 1, {k: v.clone() for k, v in model.state_dict().items()})
    train_seconds = time.time() - t0
    cpu_seconds = time.process_time() - c0
    model.load_state_dict(best[2])
    model = model.to(memory_format=torch.contiguous_format)
    model.eval()
    return model, dict(best_val=best[0], best_epoch=best[1], history=history,
                       training_seconds=train_seconds, cpu_seconds=cpu_seconds,
                       n_train=n_train)


# --------------------------------------------------------------------------
# export + reports

def export_onnx(model, path):
    import onnx
    model.eval()
    dummy = torch.zeros(1, 1, 28, 28)
    torch.onnx.export(model, dummy, path, input_names=["input"], output_names=["logits"],
                      opset_version=OPSET, do_constant_folding=True,
                      training=torch.onnx.TrainingMode.EVAL, dynamic_axes=None)
    m = onnx.load(path)
    # The exporter emits Clip's min/max (ReLU6) as Constant nodes; store them
    # as initializers instead so a runtime needs no Constant op.
    consts = [nd for nd in m.graph.node if nd.op_type == "Constant"]
    for nd in consts:
        (a,) = nd.attribute
        assert a.name == "value", a.name
        t = onnx.TensorProto()
        t.CopyFrom(a.t)
        t.name = nd.output[0]
        m.graph.initializer.append(t)
        m.graph.node.remove(nd)
    if consts:
        onnx.save(m, path)
        m = onnx.load(path)
    onnx.checker.check_model(m)
    assert m.graph.input[0].name == "input" and m.graph.output[0].name == "logits"
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 1, 28, 28], dims
    return m


def verify_onnx(m, model, x_test, n, log, name):
    """Run the exported graph with the numpy interpreter, compare with torch."""
    max_diff, agree = 0.0, 0
    with torch.no_grad():
        for i in range(n):
            xi = x_test[i:i + 1]
            ref = model(xi).numpy()
            got = onnx_numpy_run(m, {"input": xi.numpy()})[0]
            assert got.shape == (1, 10), got.shape
            max_diff = max(max_diff, float(np.abs(got - ref).max()))
            agree += int(got.argmax() == ref.argmax())
    log("%s: onnx numpy-run on %d test images: top-1 agree %d/%d, max |logit diff| %.2e" % (
        name, n, agree, n, max_diff))
    assert agree == n and max_diff < 1e-3
    return max_diff, agree


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def json_compact(obj):
    """json.dumps(indent=2) with lists of numbers kept on one line."""
    txt = json.dumps(obj, indent=2)
    return re.sub(r"\[\s*([-0-9.e,\s]+?)\s*\]",
                  lambda mo: "[" + ", ".join(v.strip() for v in mo.group(1).split(",")) + "]",
                  txt)


def fmt_int(n):
    return "{:,}".format(n)


def write_card(path, name, model, rows, macs, params, info, test_acc, per_class,
               recipe, seed, onnx_ops, onnx_info, cmd):
    h = []
    h.append("# %s\n" % name)
    h.append("%s Fashion-MNIST classifier shipped with dicefleet. Trained by "
             "`models/train.py`; every number below was measured by that script "
             "(%s, %s).\n" % (STYLE[name], info["date"], info["host"]))
    h.append("## Input / output\n")
    h.append("- input `input`: float32 `[1,1,28,28]` (NCHW, grayscale, batch fixed to 1)")
    h.append("- preprocessing: uint8 pixel `x` -> `x/255` -> `(x - %.4f) / %.4f`" % (MEAN, STD))
    h.append("- output `logits`: float32 `[1,10]`, raw logits (no softmax); class names in `labels.txt`")
    h.append("- ONNX opset %d, exported with `model.eval()` and constant folding%s; "
             "graph ops: %s" % (
                 OPSET, " (the ReLU6 `Clip` min/max, emitted by the exporter as Constant "
                 "nodes, are stored as initializers)" if dict(onnx_ops).get("Clip") else "",
                 ", ".join("`%s` x%d" % kv for kv in onnx_ops)))
    h.append("- ONNX graph: %d nodes, %d initializers, %s stored weights%s\n" % (
        onnx_info["nodes"], onnx_info["inits"], fmt_int(onnx_info["weights"]),
        " (BatchNorm folded into Conv by the exporter)" if onnx_info["bn_folded"] else ""))
    h.append("## Architecture\n")
    h.append("Conv and Linear layers (BatchNorm and activations follow each conv as described; "
             "MACs at batch 1):\n")
    h.append("| # | layer | type | in ch | out ch | in HxW | out HxW | params | MACs |")
    h.append("|---|---|---|---:|---:|---|---|---:|---:|")
    for i, r in enumerate(rows):
        h.append("| %d | `%s` | %s | %d | %d | %s | %s | %s | %s |" % (
            i, r["name"], r["kind"], r["cin"], r["cout"], r["in_hw"], r["out_hw"],
            fmt_int(r["params"]), fmt_int(r["macs"])))
    h.append("")
    h.append(ARCH_NOTES[name] + "\n")
    h.append("- parameters (PyTorch, incl. BatchNorm affine): **%s**" % fmt_int(params))
    h.append("- MACs (conv + linear, batch 1): **%s** (~%.1f MFLOPs at 2 FLOPs/MAC)\n" % (
        fmt_int(macs), 2 * macs / 1e6))
    h.append("## Training recipe\n")
    h.append("- data: Fashion-MNIST from Debian `dataset-fashion-mnist` "
             "(`/usr/share/datasets/fashion-mnist`); train = first %s of the 60,000 "
             "training images, validation = last %s (fixed), test = the 10,000 test images "
             "(used only for the final figure)" % (fmt_int(info["n_train"]), fmt_int(NUM_VAL)))
    h.append("- augmentation: random crop 28x28 from the image zero-padded by 2 pixels, "
             "random horizontal flip (p=0.5)")
    h.append("- optimizer: SGD, momentum 0.9, Nesterov, batch size %d, weight decay %g "
             "(conv/linear weights only), label smoothing %.1f; training runs in "
             "channels_last memory format (speed only)" % (
                 recipe["batch"], recipe["wd"], recipe["smoothing"]))
    h.append("- LR schedule: linear warm-up over the first epoch to %g, then cosine to 0 "
             "(per step)" % recipe["lr"])
    h.append("- epochs: %d; the checkpoint with the best validation accuracy was kept "
             "(epoch %d)" % (recipe["epochs"], info["best_epoch"]))
    h.append("- seed %d (python `random`, numpy, `torch.manual_seed`, data order and "
             "augmentation from a seeded `torch.Generator`); `torch.set_num_threads(2)`, "
             "deterministic algorithms on" % seed)
    h.append("- software: Python %s, torch %s, onnx %s (Debian packages)\n" % (
        info["python"], info["torch"], info["onnx"]))
    h.append("| epoch | train loss | train acc (augmented) | val acc | seconds |")
    h.append("|---:|---:|---:|---:|---:|")
    for e in info["history"]:
        h.append("| %d | %.4f | %.4f | %.4f | %.1f |" % (
            e["epoch"], e["loss"], e["train_acc"], e["val_acc"], e["seconds"]))
    h.append("")
    h.append("## Results\n")
    h.append("- validation accuracy (5,000 images): **%.4f**" % info["best_val"])
    h.append("- test accuracy (fp32 PyTorch, eval mode, 10,000 images): **%.4f**" % test_acc)
    h.append("- training time: **%.0f s** (%.1f min) wall clock for %d epochs on this "
             "2-core machine (shared with other work), %d threads" % (
                 info["training_seconds"], info["training_seconds"] / 60,
                 recipe["epochs"], 2)
             + ("; process CPU time (user+sys, all threads) %.0f s" % info["cpu_seconds"]
                if "cpu_seconds" in info else "")
             + ". Other jobs ran on the same 2 cores meanwhile, so epoch wall times vary "
             "(fastest epoch %.0f s, slowest %.0f s).\n" % (
                 min(e["seconds"] for e in info["history"]),
                 max(e["seconds"] for e in info["history"])))
    h.append("Per-class test accuracy (1,000 images per class):\n")
    h.append("| idx | class | accuracy |")
    h.append("|---:|---|---:|")
    for c in range(10):
        h.append("| %d | %s | %.4f |" % (c, LABELS[c], per_class[c]))
    h.append("")
    h.append("## Reproduce\n")
    h.append("```sh\n%s\n```\n" % cmd)
    h.append("Training is seeded and uses deterministic CPU algorithms with a fixed "
             "thread count, so a re-run with the same Debian packages should give the "
             "same weights (two shortened test runs of this script produced "
             "byte-identical `model.onnx` files, and re-exporting the saved checkpoint "
             "reproduces the shipped file's sha256). Other torch versions may produce "
             "different bytes.")
    with open(path, "w") as f:
        f.write("\n".join(h) + "\n")


ARCH_NOTES = {
    "fmnist-vgg": (
        "Blocks: [conv3x3(32)-BN-ReLU, maxpool 2] -> [conv3x3(64)-BN-ReLU x2, maxpool 2] -> "
        "[conv3x3(128)-BN-ReLU x2, maxpool 2 (7->3)] -> flatten (128*3*3 = 1152) -> "
        "FC 256 + ReLU -> FC 10."),
    "fmnist-resnet": (
        "Stem conv3x3(32)-BN-ReLU at 28x28, then three basic blocks "
        "(conv3x3-BN-ReLU, conv3x3-BN, add shortcut, ReLU): 32 ch stride 1 (identity shortcut), "
        "64 ch stride 2 and 128 ch stride 2 (shortcut = 1x1 stride-2 conv + BN). "
        "Global average pool (7x7) -> FC 10."),
    "fmnist-mobilenet": (
        "Stem conv3x3(32) stride 2 (28x28 -> 14x14)-BN-ReLU6, then inverted residual blocks "
        "(1x1 expand conv-BN-ReLU6, "
        "3x3 depthwise conv-BN-ReLU6, 1x1 linear projection conv-BN, residual add when "
        "stride 1 and channels match), config (expand t, out c, repeats n, first stride s) = "
        "(2,32,1,1), (4,48,2,1), (4,96,2,2), i.e. 14x14 for blocks 0-2 and 7x7 for blocks 3-4; "
        "then 1x1 conv(256)-BN-ReLU6, global average pool (7x7) -> FC 10. "
        "Residual adds: blocks 0, 2 and 4."),
}


def run_one(name, args, data, log):
    import onnx
    recipe = dict(RECIPES[name])
    if args.epochs:
        recipe["epochs"] = args.epochs
    out_dir = os.path.join(args.out, name)
    os.makedirs(out_dir, exist_ok=True)
    os.makedirs(CKPT_DIR, exist_ok=True)
    ckpt = os.path.join(CKPT_DIR, "%s-e%d-s%d.pt" % (name, recipe["epochs"], args.seed))

    probe = BUILDERS[name]()
    rows, macs = layer_table(probe)
    check_width_constraint(name, rows)
    params = sum(p.numel() for p in probe.parameters())
    log("%s: params %s, MACs %s" % (name, fmt_int(params), fmt_int(macs)))

    if args.export_only:
        saved = torch.load(ckpt)
        model = BUILDERS[name]()
        model.load_state_dict(saved["state_dict"])
        info = saved["info"]
    else:
        model, info = train_model(name, recipe, data, args.seed, log)
        torch.save({"state_dict": model.state_dict(), "info": info}, ckpt)
    model.eval()

    x_test = preprocess_u8(data["test"][0])
    y_test = torch.from_numpy(data["test"][1].astype(np.int64))

    onnx_path = os.path.join(out_dir, "model.onnx")
    m = export_onnx(model, onnx_path)
    verify_onnx(m, model, x_test, args.verify_images, log, name)
    ops = {}
    for nd in m.graph.node:
        ops[nd.op_type] = ops.get(nd.op_type, 0) + 1
    onnx_ops = sorted(ops.items())
    onnx_info = dict(nodes=len(m.graph.node), inits=len(m.graph.initializer),
                     weights=int(sum(np.prod(t.dims) for t in m.graph.initializer)),
                     bn_folded="BatchNormalization" not in ops)
    log("%s: onnx ops %s" % (name, onnx_ops))

    test_acc, per_class, _ = evaluate(model, x_test, y_test)
    log("%s: test accuracy %.4f, best val %.4f (epoch %d), training %.1fs" % (
        name, test_acc, info["best_val"], info["best_epoch"], info["training_seconds"]))

    with open(os.path.join(out_dir, "labels.txt"), "w") as f:
        f.write("\n".join(LABELS) + "\n")

    meta = {
        "name": name, "onnx": "model.onnx", "sha256": sha256(onnx_path),
        "input": {"name": "input", "shape": [1, 1, 28, 28], "color": "grayscale",
                  "resize": [28, 28], "mean": [MEAN], "std": [STD]},
        "output": {"name": "logits"}, "labels": "labels.txt",
        "dataset": "fashion-mnist",
        "accuracy": {"test": round(test_acc, 4), "images": int(y_test.shape[0])},
        "per_class_accuracy": [round(a, 4) for a in per_class],
        "params": int(params), "macs": int(macs),
        "training_seconds": round(info["training_seconds"], 1),
        "seed": args.seed, "opset": OPSET,
    }
    with open(os.path.join(out_dir, "model.json"), "w") as f:
        f.write(json_compact(meta) + "\n")

    cmd = "/usr/bin/python3 models/train.py --model %s%s --out models/" % (
        name, (" --epochs %d" % args.epochs) if args.epochs else "")
    full = dict(info)
    full.update(date=info.get("date", datetime.date.today().isoformat()),
                host="%d CPU cores, %s" % (os.cpu_count(), platform.machine()),
                python=platform.python_version(), torch=torch.__version__,
                onnx=onnx.__version__)
    write_card(os.path.join(out_dir, "MODEL_CARD.md"), name, model, rows, macs, params,
               full, test_acc, per_class, recipe, args.seed, onnx_ops, onnx_info, cmd)
    return model


def write_expected(out_dir, models, files, log):
    """Decode the sample PNGs from disk, preprocess, record PyTorch top-1."""
    sdir = os.path.join(out_dir, "samples")
    path = os.path.join(sdir, "expected.json")
    expected = {}
    if os.path.exists(path):
        with open(path) as f:
            expected = json.load(f)
    for name, model in models.items():
        model.eval()
        entry = {}
        for fname, idx, label in files:
            img = png_read_gray8(os.path.join(sdir, fname))
            with torch.no_grad():
                logits = model(preprocess_u8(img[None]))[0]
            entry[fname] = {"predicted": int(logits.argmax()), "label": int(label),
                            "logits": [round(float(v), 4) for v in logits]}
        expected[name] = entry
        log("%s: samples correct %d/10" % (
            name, sum(e["predicted"] == e["label"] for e in entry.values())))
    with open(path, "w") as f:
        f.write(json_compact({k: expected[k] for k in sorted(expected)}) + "\n")


def main():
    global SMOKE_STEPS, CKPT_DIR
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="all", choices=["all"] + list(BUILDERS))
    ap.add_argument("--epochs", type=int, default=0,
                    help="override the per-model epoch count (default: recipe)")
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verify-images", type=int, default=16,
                    help="test images run through the numpy ONNX interpreter")
    ap.add_argument("--export-only", action="store_true",
                    help="skip training; reuse the checkpoint in %s" % CKPT_DIR)
    ap.add_argument("--bench", action="store_true",
                    help="time a few training steps per model and exit")
    ap.add_argument("--smoke", type=int, default=0, metavar="STEPS",
                    help="pipeline test: only STEPS batches per epoch (never ship these)")
    args = ap.parse_args()
    if args.smoke:
        SMOKE_STEPS = args.smoke
        CKPT_DIR += "-smoke"

    torch.set_num_threads(2)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False

    def log(msg):
        print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)

    names = list(BUILDERS) if args.model == "all" else [args.model]

    if args.bench:
        seed_everything(args.seed)
        crit = nn.CrossEntropyLoss()
        for name in names:
            m = BUILDERS[name]()
            opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
            x = torch.randn(128, 1, 28, 28)
            y = torch.randint(0, 10, (128,))
            for i in range(13):
                if i == 3:
                    t = time.time()
                loss = crit(m(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            dt = (time.time() - t) / 10
            log("%s: %.3fs/step of 128 -> %.1fs/epoch of 55k" % (name, dt, dt * 55000 / 128))
        return

    data = load_fashion_mnist()
    os.makedirs(args.out, exist_ok=True)
    _, files = write_samples(args.out, data["test"][0], data["test"][1])
    trained = {}
    for name in names:
        trained[name] = run_one(name, args, data, log)
    write_expected(args.out, trained, files, log)
    log("done")


if __name__ == "__main__":
    main()

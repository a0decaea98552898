#!/usr/bin/python3
"""Exports torchvision CNNs with random weights to ONNX for the engine
benchmark, plus one fixed random input.

usage: /usr/bin/python3 export_torchvision.py OUT_DIR [MODEL ...]

Writes OUT_DIR/<model>.onnx (opset 13, input "input" [1,3,224,224], output
"logits" [1,1000]) for resnet18, mobilenet_v2, squeezenet1_1 (or the models
named), OUT_DIR/input.npy: float32 [1,3,224,224] drawn from N(0,1) with
numpy seed 0, and OUT_DIR/<model>.torch.npy: PyTorch's own logits for that
input (a third opinion when comparing engines). Weights come from torch.manual_seed(0) (random init, no
download). BatchNorm running statistics are randomized too (a few training-
mode passes would be needed otherwise), so folded BN is exercised with
non-trivial scales. Needs Debian's python3-torch and python3-torchvision,
hence /usr/bin/python3.
"""
import os
import sys

import numpy as np
import torch
import torchvision

MODELS = ("resnet18", "mobilenet_v2", "squeezenet1_1")


def randomize_bn(model: torch.nn.Module) -> None:
    """Gives every BatchNorm non-trivial running stats and affine params."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(n, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(n, generator=g))


def export(name: str, out_dir: str, x_in: np.ndarray) -> str:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)
    randomize_bn(model)
    model.eval()
    path = os.path.join(out_dir, name + ".onnx")
    x = torch.zeros(1, 3, 224, 224)
    with torch.no_grad():
        torch.onnx.export(model, x, path, opset_version=13,
                          input_names=["input"], output_names=["logits"],
                          do_constant_folding=True)
        y = model(torch.from_numpy(x_in)).numpy().astype("<f4")
    np.save(os.path.join(out_dir, name + ".torch.npy"), y)
    return path


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out_dir = sys.argv[1]
    names = sys.argv[2:] or list(MODELS)
    os.makedirs(out_dir, exist_ok=True)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224))
    x = x.astype("<f4")
    np.save(os.path.join(out_dir, "input.npy"), x)
    for n in names:
        if n not in MODELS:
            print(f"unknown model {n} (expected one of {MODELS})",
                  file=sys.stderr)
            return 2
        print("exported", export(n, out_dir, x), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

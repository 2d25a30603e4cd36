#!/usr/bin/env python3
"""Checks a moco weight export against torchvision: the file must load into the matching torchvision ResNet
with nothing unexpected and, for a backbone export, only fc.weight and fc.bias missing; every tensor must
arrive unchanged; a forward pass must run. With --io, the backbone features (or a classifier's outputs) that
the C++ engine computed for a given input (written by the moco_export_sample program) are compared with
torchvision's.

    python3 tools/check_export.py resnet50.safetensors [--io resnet50_io.safetensors]

Needs torch, torchvision and safetensors. Exits non-zero, saying why, when a check fails.
"""
import argparse
import sys

import torch
import torch.nn as nn
import torchvision
from safetensors.torch import load_file

# torchvision constructor by (bottleneck blocks?, blocks per stage)
ARCHS = {
    (False, (2, 2, 2, 2)): "resnet18",
    (False, (3, 4, 6, 3)): "resnet34",
    (True, (3, 4, 6, 3)): "resnet50",
    (True, (3, 4, 23, 3)): "resnet101",
    (True, (3, 8, 36, 3)): "resnet152",
}


def fail(msg):
    print(f"check_export: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def infer_arch(sd):
    """torchvision architecture name, from which blocks and convs the keys name."""
    blocks = []
    for stage in range(1, 5):
        n = 0
        while f"layer{stage}.{n}.conv1.weight" in sd:
            n += 1
        blocks.append(n)
    bottleneck = "layer1.0.conv3.weight" in sd
    name = ARCHS.get((bottleneck, tuple(blocks)))
    if name is None:
        fail(f"no torchvision ResNet has {'bottleneck' if bottleneck else 'basic'} blocks {blocks}")
    return name


def build_model(name, sd):
    """The torchvision model the file should fit: stem and head adapted to what the file holds."""
    model = getattr(torchvision.models, name)()
    width = sd["conv1.weight"].shape[0]
    if width != 64:
        fail(f"conv1.weight has {width} output channels; torchvision ResNets have 64 (a width-scaled test model?)")
    if sd["conv1.weight"].shape[-1] == 3:  # the small-image stem: 3x3 stride-1 conv, no max-pool
        model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    feat = model.fc.in_features
    if "fc.weight" in sd:  # linear head (MoCo v1, or a classifier)
        model.fc = nn.Linear(feat, sd["fc.weight"].shape[0])
    elif "fc.0.weight" in sd:  # MLP head (MoCo v2)
        model.fc = nn.Sequential(nn.Linear(feat, sd["fc.0.weight"].shape[0]), nn.ReLU(),
                                 nn.Linear(sd["fc.2.weight"].shape[1], sd["fc.2.weight"].shape[0]))
    return model


def describe_head(fc):
    """'Linear 2048->128' or 'MLP 2048->2048->128'."""
    layers = [m for m in fc.modules() if isinstance(m, nn.Linear)]
    dims = [layers[0].in_features] + [m.out_features for m in layers]
    return ("Linear " if len(layers) == 1 else "MLP ") + "->".join(map(str, dims))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export", help="a .safetensors file written by moco's export")
    ap.add_argument("--io", help="reference input and features from moco_export_sample")
    ap.add_argument("--tol", type=float, default=1e-4, help="max |diff| / max |feature| for --io (default 1e-4)")
    args = ap.parse_args()

    sd = load_file(args.export)
    name = infer_arch(sd)
    has_head = any(k.startswith("fc.") for k in sd)
    model = build_model(name, sd)
    n_param = sum(v.numel() for k, v in sd.items() if v.dtype == torch.float32 and ".running_" not in k)
    print(f"file:        {args.export}")
    print(f"tensors:     {len(sd)} ({sum(v.dtype == torch.float32 for v in sd.values())} float32, "
          f"{sum(v.dtype == torch.int64 for v in sd.values())} int64)")
    print(f"parameters:  {n_param:,} (float32 entries other than BN running statistics)")
    print(f"model:       torchvision.models.{name}(){' with small stem' if model.maxpool.__class__ is nn.Identity else ''}"
          f"{', head ' + describe_head(model.fc) if has_head else ''}")

    result = model.load_state_dict(sd, strict=False)
    missing, unexpected = sorted(result.missing_keys), sorted(result.unexpected_keys)
    print(f"missing:     {missing}")
    print(f"unexpected:  {unexpected}")
    want_missing = [] if has_head else ["fc.bias", "fc.weight"]
    if missing != want_missing:
        fail(f"missing keys {missing}, expected {want_missing}")
    if unexpected:
        fail(f"unexpected keys {unexpected}")

    # load_state_dict copies; every tensor must have arrived bit for bit, counters as int64 scalars.
    state = model.state_dict()
    for k, v in sd.items():
        if state[k].dtype != v.dtype or state[k].shape != v.shape or not torch.equal(state[k], v):
            fail(f"{k}: model holds {state[k].dtype} {tuple(state[k].shape)}, file {v.dtype} {tuple(v.shape)}")
    nbt = [k for k in sd if k.endswith("num_batches_tracked")]
    if any(sd[k].dtype != torch.int64 or sd[k].dim() != 0 for k in nbt):
        fail("num_batches_tracked must be int64 scalars")
    print(f"values:      all {len(sd)} tensors equal after load_state_dict; {len(nbt)} num_batches_tracked int64 []")

    model.eval()
    if not has_head:
        model.fc = nn.Identity()  # the features, since the file brings no classifier
    with torch.no_grad():
        x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        y = model(x)
    if not torch.isfinite(y).all():
        fail("forward produced non-finite values")
    print(f"forward:     input {tuple(x.shape)} -> output {tuple(y.shape)}, mean {y.mean():.4f}, std {y.std():.4f}")

    if args.io:
        io = load_file(args.io)
        # a backbone's features, or a classifier's outputs (moco_export_sample writes both kinds)
        key = "outputs" if has_head else "features"
        if key not in io:
            fail(f"--io {args.io} holds no '{key}' to compare with this {'classifier' if has_head else 'backbone'}")
        with torch.no_grad():
            ours = io[key]
            theirs = model(io["input"])
        err = (ours - theirs).abs().max().item()
        scale = theirs.abs().max().item()
        print(f"reference:   input {tuple(io['input'].shape)}: max |moco - torchvision| = {err:.3g} "
              f"(largest of the {key} {scale:.3g}, relative {err / scale:.3g}, tolerance {args.tol:g})")
        if not err <= args.tol * scale:
            fail(f"{key} differ by {err:.3g}, more than {args.tol:g} x {scale:.3g}")
    print("OK")


if __name__ == "__main__":
    main()

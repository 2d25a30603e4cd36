#!/usr/bin/env python3
"""Converts a PyTorch ResNet checkpoint into the safetensors file that `moco knn --pretrained` and
`moco lincls --pretrained` read: the backbone under torchvision's names, float32, num_batches_tracked int64.

It takes the authors' MoCo checkpoints (main_moco.py's checkpoint_XXXX.pth.tar, and the released
moco_v1_200ep_pretrain.pth.tar, moco_v2_800ep_pretrain.pth.tar, ...): it keeps module.encoder_q.* without
the fc, as main_lincls.py does when it loads --pretrained. A plain state_dict (torchvision's own weights, a
DDP model's module.*) works too. The checkpoint is read with torch.load(weights_only=True): tensors and plain
containers only, no code from the file is run.

    python3 tools/convert_moco_checkpoint.py moco_v2_800ep_pretrain.pth.tar r50_moco_v2.safetensors
    python3 tools/convert_moco_checkpoint.py CKPT --encoder k      # the momentum encoder instead
    python3 tools/convert_moco_checkpoint.py CKPT --keep-fc        # the head too (ignored by --pretrained)

The names are checked against torchvision.models.<arch>(): every backbone tensor must be there with its shape,
and nothing else but the fc.
"""
import argparse
import sys

import torch
import torchvision
from safetensors.torch import save_file

PREFIXES = {"q": ["module.encoder_q.", "encoder_q."], "k": ["module.encoder_k.", "encoder_k."]}


def backbone_tensors(state, encoder, keep_fc):
    """The backbone (and the fc when keep_fc) of `state`, by torchvision's names; the prefix it found."""
    for prefix in PREFIXES[encoder] + ["module.", ""]:
        picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if "conv1.weight" in picked:
            if not keep_fc:
                picked = {k: v for k, v in picked.items() if not k.startswith("fc.")}
            return picked, prefix
    raise SystemExit(f"no conv1.weight under any of {PREFIXES[encoder] + ['module.', '']}: not a ResNet "
                     f"checkpoint (first keys: {list(state)[:4]})")


def arch_of(tensors):
    """torchvision's ResNet of these tensors, from the block counts per stage (as moco's loader infers it)."""
    blocks = [len({k.split(".")[1] for k in tensors if k.startswith(f"layer{s}.")}) for s in range(1, 5)]
    bottleneck = "layer1.0.conv3.weight" in tensors
    table = ({(3, 4, 6, 3): "resnet50", (3, 4, 23, 3): "resnet101", (3, 8, 36, 3): "resnet152"} if bottleneck
             else {(2, 2, 2, 2): "resnet18", (3, 4, 6, 3): "resnet34"})
    if tuple(blocks) not in table:
        raise SystemExit(f"blocks per stage {blocks} are none of torchvision's ResNets")
    return table[tuple(blocks)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="the .pth.tar or .pth file")
    ap.add_argument("out", help="the .safetensors file to write")
    ap.add_argument("--encoder", choices=["q", "k"], default="q", help="MoCo's query (default) or key encoder")
    ap.add_argument("--keep-fc", action="store_true", help="keep the fc (MoCo's head) as well")
    args = ap.parse_args()

    loaded = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict):
        raise SystemExit(f"{args.checkpoint}: expected a dict (a state_dict, or a checkpoint with 'state_dict')")
    tensors, prefix = backbone_tensors(state, args.encoder, args.keep_fc)
    arch = arch_of(tensors)
    out = {}
    for k, v in tensors.items():
        if not torch.is_tensor(v):
            raise SystemExit(f"{prefix}{k} is a {type(v).__name__}, not a tensor")
        out[k] = v.detach().to(torch.int64 if k.endswith("num_batches_tracked") else torch.float32).contiguous()

    # the check, on the names themselves (load_state_dict would fill missing BN counters in silently): every
    # tensor of torchvision's backbone, and nothing else but the fc. Checkpoints from before PyTorch 0.4.1
    # have no num_batches_tracked; eval-mode BN never reads it, so it is written as 0, and said.
    want = {k: v for k, v in getattr(torchvision.models, arch)().state_dict().items() if not k.startswith("fc.")}
    counters = [k for k in want if k.endswith("num_batches_tracked") and k not in out]
    for k in counters:
        out[k] = torch.zeros((), dtype=torch.int64)
    missing = [k for k in want if k not in out]
    unexpected = [k for k in out if k not in want and not k.startswith("fc.")]
    wrong = [f"{k} {tuple(out[k].shape)} vs {tuple(want[k].shape)}" for k in want
             if k in out and out[k].shape != want[k].shape]
    if missing or unexpected or wrong:
        raise SystemExit(f"not torchvision's {arch}: missing {missing}, unexpected {unexpected}, shapes {wrong}")
    if counters:
        print(f"{len(counters)} BN counters (num_batches_tracked) were absent and are written as 0")

    save_file(out, args.out, metadata={"format": "pt", "arch": arch})
    epoch = loaded.get("epoch", "?") if "state_dict" in loaded else "?"
    where = f"{prefix}*" if prefix else "the top level"
    print(f"wrote {args.out}: {arch} from {where} of {args.checkpoint} (epoch {epoch}), "
          f"{len(out)} tensors, {sum(v.numel() for v in out.values() if v.is_floating_point())} parameters and statistics")


if __name__ == "__main__":
    sys.exit(main())

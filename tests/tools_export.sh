#!/usr/bin/env bash
# The Python export tools on a real export from moco_export_sample (ResNet-18, full width):
#   tools_export.sh <moco_export_sample> <source dir> detectron2   -> convert_detectron2.py, keys checked (numpy)
#   tools_export.sh <moco_export_sample> <source dir> torchvision  -> check_export.py --io (torch, torchvision), on
#                                                                   the backbone and on a classifier
#   tools_export.sh <moco_export_sample> <source dir> authors      -> an authors'-style MoCo v2 checkpoint written by
#                                                                   torch, convert_moco_checkpoint.py, then loaded as
#                                                                   --pretrained: features against torchvision's
# Exits 77 (ctest: skipped) when the Python packages a mode needs are not installed.
set -euo pipefail
sample=$1 src=$2 mode=$3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
case $mode in
  detectron2)
    # the first python3 with numpy: the one on PATH, else Debian's (python3-numpy, tools/setup.sh), which a
    # python3 of pyenv or a venv on PATH would hide
    py=
    for p in python3 /usr/bin/python3; do
      command -v "$p" >/dev/null && "$p" -c 'import numpy' 2>/dev/null && { py=$p; break; }
    done
    [ -n "$py" ] || { echo "numpy not installed: skipped"; exit 77; }
    "$sample" "$dir" 18 1
    "$py" "$src/tools/convert_detectron2.py" "$dir/resnet18.safetensors" "$dir/r18.pkl"
    "$py" - "$dir/r18.pkl" <<'PY'
import pickle, sys
d = pickle.load(open(sys.argv[1], "rb"), encoding="latin1")
m = d["model"]
assert d["__author__"] == "moco" and d["matching_heuristics"] is True, d.keys()
assert len(m) == 100, len(m)  # 120 entries - 20 num_batches_tracked
for k in ["stem.conv1.weight", "stem.conv1.norm.running_var", "res2.1.conv2.norm.bias", "res3.0.shortcut.weight",
          "res5.0.shortcut.norm.running_mean"]:
    assert k in m, k
bad = [k for k in m if "layer" in k or "bn" in k or "downsample" in k or k.startswith("fc.")]
assert not bad, bad
assert m["stem.conv1.weight"].shape == (64, 3, 7, 7) and m["stem.conv1.weight"].dtype == "float32"
print("detectron2 keys OK")
PY
    ;;
  torchvision)
    python3 -c 'import torch, torchvision, safetensors' 2>/dev/null || { echo "torch/torchvision/safetensors not installed: skipped"; exit 77; }
    "$sample" "$dir" 18 1
    python3 "$src/tools/check_export.py" "$dir/resnet18.safetensors" --io "$dir/resnet18_io.safetensors" --tol 1e-5
    # the backbone with a probe as its fc (moco export --probe): strict load as resnet18(num_classes=10)
    python3 "$src/tools/check_export.py" "$dir/resnet18_cls.safetensors" --io "$dir/resnet18_cls_io.safetensors" \
      --tol 1e-5
    ;;
  authors)
    python3 -c 'import torch, torchvision, safetensors' 2>/dev/null || { echo "torch/torchvision/safetensors not installed: skipped"; exit 77; }
    # ResNet-18 with the v2 MLP head as main_moco.py builds it, BN statistics and affine away from their
    # initial values, saved as main_moco.py saves (module.encoder_q.* and _k.*, queue, optimizer), with the
    # eval-mode backbone features of a random input
    python3 - "$dir" <<'PY'
import sys, torch, torchvision
from safetensors.torch import save_file
torch.manual_seed(0)
out = sys.argv[1]
q = torchvision.models.resnet18(num_classes=128)
q.fc = torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.ReLU(), q.fc)
with torch.no_grad():
    for m in q.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2); m.running_var.uniform_(0.5, 1.5)
            m.weight.uniform_(0.5, 1.5); m.bias.uniform_(-0.2, 0.2); m.num_batches_tracked.fill_(123)
state = {"module.encoder_q." + k: v for k, v in q.state_dict().items()}
state.update({"module.encoder_k." + k: v.clone() for k, v in q.state_dict().items()})
state["module.queue"] = torch.randn(128, 4096)
state["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
opt = torch.optim.SGD(q.parameters(), lr=0.03, momentum=0.9)
torch.save({"epoch": 200, "arch": "resnet18", "state_dict": state, "optimizer": opt.state_dict()}, out + "/ckpt.pth.tar")
q.fc = torch.nn.Identity()
q.eval()
x = torch.randn(2, 3, 64, 64)
with torch.no_grad():
    f = q(x)
save_file({"input": x, "features": f}, out + "/io.safetensors")
PY
    python3 "$src/tools/convert_moco_checkpoint.py" "$dir/ckpt.pth.tar" "$dir/r18.safetensors"
    "$sample" --check-pretrained "$dir/r18.safetensors" "$dir/io.safetensors" 1e-5
    ;;
  *) echo "unknown mode '$mode'; expected detectron2, torchvision or authors"; exit 2 ;;
esac

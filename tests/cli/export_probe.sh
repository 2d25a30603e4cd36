#!/usr/bin/env bash
# `moco export --probe` end to end, on both backbones `moco lincls` probes:
#   - a training checkpoint: train a few steps, probe its query encoder, export backbone + probe;
#   - a --pretrained file: export that backbone alone, probe the file, export file + probe.
# The same backbone, seed, data and size give the same probe either way, so the two classifiers must be the
# same bytes. Each holds the exported backbone's tensors byte for byte and fc.weight (classes, features) and
# fc.bias (classes) of the probe. Refused, each with a message naming the mistake: a probe of another backbone
# (the key encoder), a probe of the network at its initialisation (lincls --random-init), --pretrained without
# --probe, --pretrained with --checkpoint or --encoder.
#   export_probe.sh <moco binary>
set -euo pipefail
source "$(dirname "$0")/moco_calls.sh" "$1"  # $moco, $dir, ${data[@]}; fail, run, expect_error
expect_export_error() {  # expect_error, and no classifier written
  expect_error "$@"
  [ ! -e "$dir/x.safetensors" ] || fail "moco ${*:2} left $dir/x.safetensors"
}

run train "${data[@]}" --device cpu --width 2 --image-size 16 -b 32 --moco-k 64 --max-steps 2 --seed 3 \
  --out "$dir/train"
ck=$dir/train/checkpoint.mocockpt
probe=(--device cpu --epochs 2 -b 64 --lr 0.1 --train-limit 256 --test-limit 64 --image-size 16 --seed 3)
run lincls "${data[@]}" --checkpoint "$ck" "${probe[@]}" --out "$dir/p_ck"
run export --checkpoint "$ck" --probe "$dir/p_ck/lincls.mocockpt" --out "$dir/cls_ck.safetensors"
echo "ok: $(cat "$dir/out")"

run export --checkpoint "$ck" --out "$dir/backbone.safetensors"
run lincls "${data[@]}" --pretrained "$dir/backbone.safetensors" "${probe[@]}" --out "$dir/p_pre"
run export --pretrained "$dir/backbone.safetensors" --probe "$dir/p_pre/lincls.mocockpt" \
  --out "$dir/cls_pre.safetensors"
echo "ok: $(cat "$dir/out")"

cmp "$dir/cls_ck.safetensors" "$dir/cls_pre.safetensors" ||
  fail "the classifier from the checkpoint and the one from its exported backbone differ"
echo "ok: both classifiers are the same bytes"

# The classifier against the backbone file: every backbone tensor the same dtype, shape and bytes, and the fc
# sized (classes, features), with nothing else. Read with the standard library (an 8-byte header length, a
# JSON header, then the data).
python3 - "$dir/backbone.safetensors" "$dir/cls_pre.safetensors" <<'PY'
import json, struct, sys

def read(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    data = raw[8 + n:]
    return {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in header.items()}

backbone, cls = read(sys.argv[1]), read(sys.argv[2])
assert not any(k.startswith("fc.") for k in backbone), "the backbone export holds an fc"
for k, v in backbone.items():
    assert k in cls and cls[k] == v, "backbone tensor %s differs in the classifier" % k
extra = sorted(set(cls) - set(backbone))
assert extra == ["fc.bias", "fc.weight"], extra
classes, features = cls["fc.weight"][1]
assert cls["fc.bias"][1] == [classes] and classes >= 2, cls["fc.bias"][1]
assert cls["fc.weight"][0] == cls["fc.bias"][0] == "F32"
assert any(b != 0 for b in cls["fc.weight"][2]), "fc.weight is all zero"
print("ok: the classifier is the backbone's %d tensors and fc %dx%d" % (len(backbone), classes, features))
PY

expect_export_error "was trained on another backbone" export --checkpoint "$ck" --encoder key \
  --probe "$dir/p_ck/lincls.mocockpt" --out "$dir/x.safetensors"
expect_export_error "was trained on another backbone" export --pretrained "$dir/backbone.safetensors" \
  --probe "$dir/p_ck/lincls.mocockpt" --out "$dir/x.safetensors"
expect_export_error "only as a classifier, with --probe" export --pretrained "$dir/backbone.safetensors" \
  --out "$dir/x.safetensors"
expect_export_error "not both" export --checkpoint "$ck" --pretrained "$dir/backbone.safetensors" \
  --probe "$dir/p_pre/lincls.mocockpt" --out "$dir/x.safetensors"
expect_export_error "--encoder picks an encoder of a training checkpoint" export \
  --pretrained "$dir/backbone.safetensors" --encoder query --probe "$dir/p_pre/lincls.mocockpt" \
  --out "$dir/x.safetensors"
run lincls "${data[@]}" --checkpoint "$ck" --random-init "${probe[@]}" --out "$dir/p_init"
expect_export_error "moco lincls --random-init" export --checkpoint "$ck" \
  --probe "$dir/p_init/lincls.mocockpt" --out "$dir/x.safetensors"

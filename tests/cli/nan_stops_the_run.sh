#!/usr/bin/env bash
# A run whose state stops being finite (--lr 10000 --wd 1: the weights grow 10^4-fold a step) must stop with an
# error that names the loss (or, when an update overflowed the weights of a step whose loss was finite, the
# tensor) and the last good checkpoint, exit non-zero, and leave that checkpoint whole: it still reads back
# (moco export), every number in it is finite, and it holds the last step saved before the bad one.
#   nan_stops_the_run.sh <moco binary> [extra train flags, e.g. --device cuda --precision fp32]
set -uo pipefail
moco=$1
shift
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
source "$(dirname "$0")/train_data.sh" "$dir/data"  # Fashion-MNIST, else a small ImageFolder
if [[ " $* " == *" --device cuda "* ]]; then source "$(dirname "$0")/gpu_probe.sh" "$moco" "$dir/probe.log"; fi
out=$("$moco" train "${data[@]}" --width 2 -b 16 --bn-splits 2 --moco-k 64 --image-size 16 --epochs 10 --max-steps 30 \
  --save-every-steps 1 --lr 10000 --wd 1 --knn-every 0 --out "$dir/run" "$@" 2>&1)
rc=$?
err=$(printf '%s\n' "$out" | grep 'moco: error:' | tail -1)
failed=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; failed=1; fi; }
check "the run exits non-zero (exit $rc)" '[ $rc -ne 0 ]'
check "the error names the loss or the non-finite tensor: ${err:-<none>}" \
  '{ [[ "$err" == *"loss is "* ]] && [[ "$err" != *"loss is 0"* ]]; } || [[ "$err" == *"with an Inf or NaN, though its loss was finite"* ]]'
ck=$dir/run/checkpoint.mocockpt
check "the error names the last good checkpoint" '[[ "$err" == *"the last good checkpoint is $ck"* ]]'
# the steps that finished: each wrote a log line and then the checkpoint (--save-every-steps 1)
last=$(grep -E '"event": ?"checkpoint"' "$dir/run/metrics.jsonl" 2>/dev/null | tail -1 | grep -oE '"step": ?[0-9]+' | grep -oE '[0-9]+$')
steps=$(grep -c '"loss"' "$dir/run/metrics.jsonl" 2>/dev/null)
check "some steps finished before the loss went bad (${steps:-0}), and fewer than 30" '[ "${steps:-0}" -ge 1 ] && [ "${steps:-0}" -lt 30 ]'
# a bad loss stops the step before its update, so the last finished step was saved; overflowed weights are
# found when the step that made them is about to be saved, so the checkpoint is of the step before it
if [[ "$err" == *"though its loss was finite"* ]]; then want=$(( ${steps:-1} - 1 )); else want=${steps:-y}; fi
check "the last checkpoint is of the last step whose state was finite (${last:-none}, ${steps:-0} finished)" \
  '[ "${last:-x}" = "$want" ]'
check "the checkpoint reads back whole (moco export)" '"$moco" export --checkpoint "$ck" --head --out "$dir/w.safetensors" >/dev/null 2>&1'
# every tensor of the export finite (safetensors: 8-byte header length, JSON header, then the data)
finite='import json, math, struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
for name, t in json.loads(raw[8:8 + n]).items():
    if name == "__metadata__" or t["dtype"] != "F32": continue
    a, b = t["data_offsets"]
    vals = struct.unpack("<%df" % ((b - a) // 4), raw[8 + n + a:8 + n + b])
    if not all(math.isfinite(v) for v in vals): sys.exit(name + " is not finite")'
check "every number in the checkpoint is finite" 'python3 -c "$finite" "$dir/w.safetensors"'
# (a GPU run keeps its cuDNN plans beside the checkpoint too: conv_plans.txt)
check "no temporary file is left beside it" '[ -z "$(ls "$dir/run" | grep -v -E "^(checkpoint.mocockpt|metrics.jsonl|conv_plans.txt)$")" ]'
exit $failed

#!/usr/bin/env bash
# `moco train --device auto` on 2 ranks under mpirun where only rank 0 has a GPU (the CUDA emulator's
# MOCO_EMU_DEVICES=0 hides it from rank 1): the ranks agree, and both train on the CPU to the end, instead of
# rank 0 starting NCCL while rank 1 runs the CPU step's collectives.
#   auto_device_ranks.sh <mpiexec> <moco binary built on the CUDA emulator>
# Exits 77 (skipped) without python3.
set -euo pipefail
mpiexec=$1
moco=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 "$(dirname "$0")/write_test_images.py" "$dir/data" ||
  { echo "python3 is needed to write the images: skipped"; exit 77; }
export MOCO_COMM_TIMEOUT_S=20  # a mismatch of collectives ends in 20 s, not 300
args=(train "$dir/data" --device auto -a resnet18 --width 4 --image-size 32 --recipe small -b 8 --bn-splits 1
      --moco-k 64 --moco-dim 16 --epochs 1 --seed 3 -j 1 --out "$dir/run")
rc=0
"$mpiexec" -n 1 env MOCO_EMU_DEVICES=1 "$moco" "${args[@]}" : -n 1 env MOCO_EMU_DEVICES=0 "$moco" "${args[@]}" \
  >"$dir/out.txt" 2>&1 || rc=$?
cat "$dir/out.txt"
failed=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; failed=1; fi; }
check "the run ends with status 0 (got $rc)" '[ $rc -eq 0 ]'
check "rank 1 says it has no GPU" 'grep -q "cuda: rank 1: no usable CUDA device" "$dir/out.txt"'
check "rank 0 says every rank trains on the CPU" \
  'grep -q "another rank has no usable CUDA device, so every rank trains on the CPU" "$dir/out.txt"'
check "the run trained on the CPU" 'grep -q "^device: cpu" "$dir/out.txt"'
steps=$(grep -c '"loss"' "$dir/run/metrics.jsonl" 2>/dev/null || true)
check "all 4 steps (64 images, 2 ranks of 8) were logged (${steps:-0})" '[ "${steps:-0}" -eq 4 ]'
exit $failed

#!/usr/bin/env bash
# `moco train --device cuda` on W GPU ranks under mpirun, end to end: NCCL's id bootstrapped over MPI, shuffle BN
# across the ranks, rank 0 logging and checkpointing, then the same run stopped half way and resumed on W ranks,
# whose losses must equal the first run's bit for bit.
#   gpu_train_mpirun.sh <mpiexec> <moco binary> [W]      (W = 2; needs W GPUs on the node)
# On the CUDA emulator (ctest emu.dist.gpu_train_np2) the W ranks are W processes, each with its own emulated
# device (MOCO_EMU_DEVICES=W), whose NCCL traffic goes over MPI. Exits 77 (skipped) without python3.
set -euo pipefail
mpiexec=$1
moco=$2
w=${3:-2}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 "$(dirname "$0")/write_test_images.py" "$dir/data" ||
  { echo "python3 is needed to write the images: skipped"; exit 77; }
# 64 images, 8 per rank and step: 64 / (8 W) steps per epoch
args=(train "$dir/data" --device cuda -a resnet18 --width 8 --image-size 32 --recipe small -b 8 --bn-splits 1
      --moco-k 64 --moco-dim 16 --epochs 1 --seed 3 -j 1)
losses() { grep -o '"step": [0-9]*, "epoch": [0-9]*, "loss": [^,]*' "$1/metrics.jsonl"; }
run() { "$mpiexec" -n "$w" "$moco" "$@"; }

run "${args[@]}" --knn-every 1 --out "$dir/a" 2>"$dir/a.err" || { cat "$dir/a.err"; exit 1; }
grep -E "^device:|kNN top-1" "$dir/a.err"
grep -q "NCCL over $w ranks" "$dir/a.err" || { echo "FAIL: the run did not use NCCL over $w ranks"; exit 1; }
grep -q "\"world_size\": $w" "$dir/a/metrics.jsonl" || { echo "FAIL: metrics.jsonl does not say world_size $w"; exit 1; }
steps=$(losses "$dir/a" | wc -l)
[ "$steps" -eq $((64 / (8 * w))) ] || { echo "FAIL: $steps steps logged, expected $((64 / (8 * w)))"; exit 1; }
# each rank keeps its cuDNN plans (a search picks by timing, so ranks and processes choose apart): the second
# run takes the first's, rank by rank, and the resumed run its own beside the checkpoint
for r in $(seq 0 $((w - 1))); do
  [ -s "$dir/a/conv_plans.rank$r.txt" ] || { echo "FAIL: rank $r kept no conv_plans.rank$r.txt"; exit 1; }
done
MOCO_CONV_PLANS=$dir/a run "${args[@]}" --max-steps $((steps / 2)) --out "$dir/b" 2>"$dir/b.err" ||
  { cat "$dir/b.err"; exit 1; }
run "${args[@]}" --out "$dir/b" --resume "$dir/b/checkpoint.mocockpt" 2>"$dir/b2.err" || { cat "$dir/b2.err"; exit 1; }
grep -q "convolution plans from $dir/b/conv_plans.rank0.txt" "$dir/b2.err" ||
  { echo "FAIL: the resumed run did not take the plans beside its checkpoint"; cat "$dir/b2.err"; exit 1; }
# plans that cannot be read stop every rank with the reason, none left waiting at a collective
if MOCO_CONV_PLANS=$dir/none.txt timeout 120 "$mpiexec" -n "$w" "$moco" "${args[@]}" --out "$dir/c" 2>"$dir/c.err"; then
  echo "FAIL: a run given unreadable conv plans went on"; exit 1
fi
grep -q "cannot be read on rank" "$dir/c.err" || { echo "FAIL: no message naming the unreadable plans"; cat "$dir/c.err"; exit 1; }
if diff <(losses "$dir/a") <(losses "$dir/b"); then
  echo "resumed run on $w GPU ranks logged the same $steps losses, bit for bit"
else
  echo "FAIL: the resumed run's losses differ"; exit 1
fi

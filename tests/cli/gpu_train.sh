#!/usr/bin/env bash
# `moco train --device cuda` end to end on a small ImageFolder made here (random images of four classes, so
# no data set needs to be installed on the GPU machine): a run with the kNN monitor (on the head's features),
# then the same run stopped half way and resumed, whose losses must equal the first run's bit for bit, and
# `moco knn` (both feature layers) and `moco lincls` (backbone and probe on the device) on its checkpoint, a
# trained probe scored again by `lincls --evaluate`, and the same backbone exported and given back as
# --pretrained weights. Bit for bit because every kernel reduces
# in a fixed order and cuDNN's algorithms are deterministic and the same in all three processes: a search
# picks by timing, which can differ between processes, so the second run is given the first's plans
# (MOCO_CONV_PLANS) and the resumed run finds its own beside the checkpoint (conv_plans.txt).
#   gpu_train.sh <moco binary>            (MOCO_TEST_DEVICE=cpu runs the same checks on the CPU path)
# Exits 77 (skipped) without a usable GPU or without python3 to write the images.
set -euo pipefail
moco=$1
device=${MOCO_TEST_DEVICE:-cuda}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
if [ "$device" = cuda ]; then source "$(dirname "$0")/gpu_probe.sh" "$moco" "$dir/probe.log"; fi
python3 "$(dirname "$0")/write_test_images.py" "$dir/data" ||
  { echo "python3 is needed to write the images: skipped"; exit 77; }
args=(train "$dir/data" --device "$device" -a resnet18 --width 8 --image-size 32 --recipe small -b 16 --bn-splits 2
      --moco-k 64 --moco-dim 16 --epochs 2 --seed 3 -j 2)
losses() { grep -o '"step": [0-9]*, "epoch": [0-9]*, "loss": [^,]*' "$1/metrics.jsonl"; }

"$moco" "${args[@]}" --knn-every 1 --knn-feature head --out "$dir/a" 2>"$dir/a.err" || { cat "$dir/a.err"; exit 1; }
grep -E "^device:|kNN top-1" "$dir/a.err"
# the loader keeps well ahead of this small step: most steps find the next batch built, and the GPU copies it
# in while they compute (after an epoch's last step there is none until the next epoch starts)
if [ "$device" = cuda ]; then
  ready=$(grep -c '"next_ready": true' "$dir/a/metrics.jsonl" || true)
  echo "$ready of $(grep -c '"loss"' "$dir/a/metrics.jsonl") steps had the next batch staged during them"
  [ "$ready" -ge 1 ] || { echo "FAIL: no step had the next batch staged during it"; exit 1; }
fi
if [ "$device" = cuda ]; then
  [ -s "$dir/a/conv_plans.txt" ] || { echo "FAIL: the run wrote no conv_plans.txt beside its checkpoint"; exit 1; }
  export MOCO_CONV_PLANS=$dir/a  # the run folder: each rank its own plans (here the one rank's conv_plans.txt)
fi
"$moco" "${args[@]}" --max-steps 4 --out "$dir/b" 2>"$dir/b.err" || { cat "$dir/b.err"; exit 1; }
unset MOCO_CONV_PLANS
"$moco" "${args[@]}" --out "$dir/b" --resume "$dir/b/checkpoint.mocockpt" 2>"$dir/b2.err" || { cat "$dir/b2.err"; exit 1; }
if [ "$device" = cuda ]; then
  grep -q "convolution plans from $dir/b/conv_plans.txt" "$dir/b2.err" ||
    { echo "FAIL: the resumed run did not take the plans beside its checkpoint"; cat "$dir/b2.err"; exit 1; }
  grep -q "cannot be used here" "$dir/b.err" "$dir/b2.err" &&
    { echo "FAIL: a given plan was refused on the machine that chose it"; exit 1; }
  echo "the second run took the first's $(grep -vc '^#' "$dir/a/conv_plans.txt") convolution plans, the resumed run its own"
fi
# 64 images in steps of 16 for 2 epochs: 8 steps, of which the resumed run computed the last 4
n_a=$(losses "$dir/a" | wc -l)
[ "$n_a" -eq 8 ] || { echo "FAIL: the first run logged $n_a losses, expected 8"; exit 1; }
if diff <(losses "$dir/a") <(losses "$dir/b"); then
  echo "resumed $device run logged the same $n_a losses, bit for bit"
else
  echo "FAIL: the resumed $device run's losses differ"; exit 1
fi
# the monitor's records name what they scored; `moco knn` scores either layer. On this easy data the trained
# network scores 100%, so the comparison that can tell layers apart is at the random initialisation, which
# `moco knn --random-init` rebuilds from the run's config and seed: on the CPU its head score is the monitor's
# first one exactly (the same features at the same batch)
[ "$(grep -c '"event": "knn".*"knn_feature": "head"' "$dir/a/metrics.jsonl")" -eq 3 ] ||
  { echo "FAIL: expected 3 kNN records of head features (start and 2 epochs)"; grep '"knn"' "$dir/a/metrics.jsonl"; exit 1; }
for at in backbone head; do
  "$moco" knn "$dir/data" --checkpoint "$dir/a/checkpoint.mocockpt" --device "$device" -b 16 --knn-feature $at \
    | tee "$dir/knn_$at.out"
  grep -q "^knn_top1 [0-9.]* (.*; $at features, bank 64, queries 32, k 200)" "$dir/knn_$at.out" ||
    { echo "FAIL: moco knn --knn-feature $at printed no knn_top1 line of $at features"; exit 1; }
  "$moco" knn "$dir/data" --checkpoint "$dir/a/checkpoint.mocockpt" --device "$device" -b 16 --knn-feature $at \
    --random-init | tee "$dir/knn_random_$at.out"
done
if [ "$device" = cpu ]; then
  monitor=$(grep '"event": "knn"' "$dir/a/metrics.jsonl" | head -1 | grep -o '"knn_top1": [0-9.]*' | cut -d' ' -f2)
  head_score=$(cut -d' ' -f2 "$dir/knn_random_head.out") backbone_score=$(cut -d' ' -f2 "$dir/knn_random_backbone.out")
  python3 -c "import sys; sys.exit(abs($monitor - $head_score) > 0.005)" ||
    { echo "FAIL: the monitor's first head score $monitor, moco knn --random-init's $head_score"; exit 1; }
  echo "at the random initialisation: the monitor's head score $monitor, moco knn's $head_score (backbone: $backbone_score)"
fi
"$moco" lincls "$dir/data" --checkpoint "$dir/a/checkpoint.mocockpt" --device "$device" --epochs 2 -b 16 --lr 0.1 \
  --out "$dir/lincls" >"$dir/lincls.out" 2>"$dir/lincls.err" || { cat "$dir/lincls.err"; exit 1; }
grep -q '^lincls_top1 [0-9.]* ' "$dir/lincls.out" || { echo "FAIL: no lincls_top1 line"; cat "$dir/lincls.out"; exit 1; }
cat "$dir/lincls.out"
# A probe scored again by `lincls --evaluate` in a new process must score as its run's last epoch did. A probe of
# its own, trained long enough to score above chance (8 of the 32 test images, one class in four; top-5 over 4
# classes is always 100%), so that an evaluation that lost the probe's weights would show. On the CPU the same
# score; on the GPU within one test image, because this process times its own convolution algorithms (lincls
# keeps no plan file), so its features may differ from the training process's in the last bits.
"$moco" lincls "$dir/data" --checkpoint "$dir/a/checkpoint.mocockpt" --device "$device" --epochs 30 -b 16 \
  --lr 0.001 --out "$dir/probe" >"$dir/probe.out" 2>"$dir/probe.err" || { cat "$dir/probe.err"; exit 1; }
"$moco" lincls "$dir/data" --checkpoint "$dir/a/checkpoint.mocockpt" --device "$device" -b 16 \
  --resume "$dir/probe/lincls.mocockpt" --evaluate >"$dir/evaluate.out" 2>"$dir/evaluate.err" ||
  { cat "$dir/evaluate.err"; exit 1; }
top1() { grep -o '^lincls_top1 [0-9.]*' "$1" | cut -d' ' -f2 || true; }
trained=$(top1 "$dir/probe.out") evaluated=$(top1 "$dir/evaluate.out")
[ -n "$trained" ] && [ -n "$evaluated" ] ||
  { echo "FAIL: no lincls_top1 line from the probe's run or from --evaluate"; cat "$dir/probe.out" "$dir/evaluate.out"; exit 1; }
tolerance=0
[ "$device" = cpu ] || tolerance=$(python3 -c 'print(100 / 32)')
python3 -c "import sys; sys.exit(not float('$trained') > 25 + 100 / 32)" ||
  { echo "FAIL: the probe scored $trained, at chance: --evaluate's check would mean nothing"; cat "$dir/probe.out"; exit 1; }
python3 -c "import sys; sys.exit(not abs(float('$trained') - float('$evaluated')) <= $tolerance + 1e-9)" ||
  { echo "FAIL: lincls --evaluate scored top-1 $evaluated, the probe's last epoch $trained"; cat "$dir/evaluate.out"; exit 1; }
echo "lincls --evaluate of a trained probe: top-1 $evaluated (its run's last epoch: $trained; chance: 25)"

# the backbone exported, then evaluated as --pretrained weights (the network inferred from the tensors, the
# run's seed given): on the CPU the same numbers as from the checkpoint, the probe's losses bit for bit (the
# kNN scores are saturated at 100% here, so theirs is the weaker check)
"$moco" export --checkpoint "$dir/a/checkpoint.mocockpt" --out "$dir/backbone.safetensors" --head
"$moco" knn "$dir/data" --pretrained "$dir/backbone.safetensors" --seed 3 --device "$device" -b 16 \
  2>"$dir/pre_knn.err" | tee "$dir/pre_knn.out"
grep -q "^pretrained: resnet18-small-stem-w8 from .*, its 2 fc.\* tensors left aside" "$dir/pre_knn.err" ||
  { echo "FAIL: --pretrained did not say what it loaded"; cat "$dir/pre_knn.err"; exit 1; }
"$moco" lincls "$dir/data" --pretrained "$dir/backbone.safetensors" --seed 3 --device "$device" --epochs 2 -b 16 \
  --lr 0.1 --image-size 32 --out "$dir/pre_lincls" >"$dir/pre_lincls.out" 2>"$dir/pre_lincls.err" ||
  { cat "$dir/pre_lincls.err"; exit 1; }
cat "$dir/pre_lincls.out"
if [ "$device" = cpu ]; then
  [ "$(cut -d' ' -f2 "$dir/pre_knn.out")" = "$(cut -d' ' -f2 "$dir/knn_backbone.out")" ] ||
    { echo "FAIL: kNN of the --pretrained export differs from the checkpoint's"; exit 1; }
  probe() { sed 's/(.*)//' "$1.out"; grep -o '"loss": [^,]*' "$1/metrics.jsonl"; }
  diff <(probe "$dir/lincls") <(probe "$dir/pre_lincls") ||
    { echo "FAIL: the probe of the --pretrained export differs from the checkpoint's"; exit 1; }
  echo "kNN and linear probe of the exported backbone as --pretrained: the checkpoint's numbers"
fi

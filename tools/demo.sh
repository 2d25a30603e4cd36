#!/usr/bin/env bash
# The demo, on a fresh machine: installs what is missing, builds, pretrains MoCo on Fashion-MNIST, and prints
# the kNN top-1 of the trained network next to the same network at its random initialisation.
#
# It trains on the GPU where one is usable (--device auto) and on the CPU otherwise; the numbers in the
# README are the CPU's (pass --device cpu to reproduce them on a GPU machine). To fit in a few minutes on
# 2 cores it trains a narrow ResNet-18 (small-image stem, width 8) with batch 64 for 1400 steps
# (1.5 epochs, cosine schedule over 2); everything else is the small-image recipe (SPEC: lr 0.06, K 4096,
# m 0.99, T 0.1, wd 5e-4, 8 BN groups). Flags appended to the command go to `moco train` and override these:
# `bash tools/demo.sh --width 16 --max-steps 3000`.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash tools/setup.sh
export PATH="/usr/local/cuda/bin:$PATH"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"${JOBS:-2}" --target moco
built=$(date +%s)

out=${DEMO_OUT:-runs/demo}
rm -rf "$out"  # the demo's own folder: each demo is a fresh run
echo
echo "== pretraining on Fashion-MNIST (CPU), log in $out/metrics.jsonl"
build/moco train --out "$out" --width 8 -b 64 --epochs 2 --max-steps 1400 -p 100 "$@"
trained=$(date +%s)

echo
echo "== kNN top-1 on the Fashion-MNIST test split (bank: 10000 train images, 2000 test images)"
ck="$out/checkpoint.mocockpt"
random=$(build/moco knn --checkpoint "$ck" --random-init --bank 10000 --queries 2000)
learned=$(build/moco knn --checkpoint "$ck" --bank 10000 --queries 2000)
r=$(echo "$random" | awk '{print $2}')
t=$(echo "$learned" | awk '{print $2}')
done_at=$(date +%s)
echo
printf '  %-34s %6s %%\n' "random initialisation" "$r" "after MoCo pretraining" "$t"
printf '  %-34s %6s points\n' "difference" "$(awk -v a="$t" -v b="$r" 'BEGIN { printf "%+.2f", a - b }')"
echo
echo "times: setup+build $((built - start)) s, training $((trained - built)) s, kNN $((done_at - trained)) s"
echo "plot the curves: python3 tools/plot_metrics.py $out/metrics.jsonl   (needs matplotlib)"

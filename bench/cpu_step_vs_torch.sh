#!/usr/bin/env bash
# Whole MoCo steps on the CPU, moco against the PyTorch twin of the same step (same model, batch, queue,
# split-BN), one after the other on the same machine, and the ratio. Writes a dated record under
# bench/results/ with the commit, the commands and the raw output.
#   bash bench/cpu_step_vs_torch.sh [config...]     (default: the demo's and the small recipe's models)
# Needs build/moco and PyTorch (MOCO_WITH_TORCH=1 bash tools/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import torch' 2>/dev/null || { echo "PyTorch is not installed: MOCO_WITH_TORCH=1 bash tools/setup.sh"; exit 1; }
threads=$(nproc)
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(
  "--arch resnet18 --width 16 --image-size 32 -b 64 --moco-k 4096"
  "--arch resnet18 --width 16 --image-size 32 -b 256 --moco-k 4096"
  "--arch resnet18 --width 64 --image-size 32 -b 256 --moco-k 4096"
)
out="bench/results/$(date +%Y-%m-%d)-cpu-step-vs-torch.md"
{
  echo "# MoCo step on the CPU: moco vs the PyTorch twin"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "- commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with uncommitted changes)')"
  echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), no GPU"
  echo "- torch: $(python3 -c 'import torch; print(torch.__version__)'), $threads threads; moco: $threads threads (MOCO_THREADS unset)"
  echo "- command: bash bench/cpu_step_vs_torch.sh"
  echo
  echo "| config | moco img/s | torch img/s | moco / torch |"
  echo "|---|---|---|---|"
} >"$out.tmp"
raw=""
for c in "${configs[@]}"; do
  m=$(build/moco bench $c --steps 5 --warmup 1)
  t=$(python3 tools/torch_twin.py bench $c --steps 5 --warmup 1 --threads "$threads")
  mi=$(echo "$m" | grep -o 'img_per_s [0-9.]*' | awk '{print $2}')
  ti=$(echo "$t" | grep -o 'img_per_s [0-9.]*' | awk '{print $2}')
  echo "| \`$c\` | $mi | $ti | $(awk -v a="$mi" -v b="$ti" 'BEGIN { printf "%.2fx", a / b }') |" >>"$out.tmp"
  raw+=$'\n'"\$ build/moco bench $c --steps 5 --warmup 1"$'\n'"$m"$'\n'"\$ python3 tools/torch_twin.py bench $c --steps 5 --warmup 1 --threads $threads"$'\n'"$t"$'\n'
done
{
  echo
  echo "Raw output:"
  echo '```'
  echo "$raw"
  echo '```'
} >>"$out.tmp"
mv "$out.tmp" "$out"
cat "$out"

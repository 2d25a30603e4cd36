#!/usr/bin/env bash
# The data path, moco's Loader against torchvision's ImageFolder + DataLoader, on the same folder of synthetic
# ImageNet-like JPEGs (written by build/bench_loader), with 1 worker and one worker per core, one after the
# other on the same machine, and the ratio. Writes a dated record under bench/results/ with the commit, the
# commands and the raw output.
#   bash bench/loader_vs_torchvision.sh [images]     (default 256)
# Needs build/bench_loader and torchvision (MOCO_WITH_TORCH=1 bash tools/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import torchvision' 2>/dev/null || { echo "torchvision is not installed: MOCO_WITH_TORCH=1 bash tools/setup.sh"; exit 1; }
images=${1:-256}
folder=$(mktemp -d)
trap 'rm -rf "$folder"' EXIT
m=$(build/bench_loader "$images" "$folder")
t=$(python3 tools/torchvision_loader_peer.py "$folder")
out="bench/results/$(date +%Y-%m-%d)-loader-vs-torchvision.md"
{
  echo "# Data path: moco's loader vs torchvision's, MoCo v2 views"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "- commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with uncommitted changes)')"
  echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), no GPU"
  echo "- torch: $(python3 -c 'import torch, torchvision, PIL; print(torch.__version__, "torchvision", torchvision.__version__, "Pillow", PIL.__version__)')"
  echo "- command: bash bench/loader_vs_torchvision.sh $images"
  echo
  echo "torchvision's views are normalised fp32, as moco's f32 ones; the first ratio compares those. The u8"
  echo "views are the same views rounded once to 8 bits. The crops are what GPU training takes: the crop alone"
  echo "on the CPU, its colour jitter, grayscale, blur and flip on the GPU; the second ratio compares the CPU work"
  echo "of that data path with torchvision's whole one."
  echo
  echo "| workers | moco f32 images/s | moco u8 images/s | moco crops images/s | torchvision images/s | f32 / torchvision | crops / torchvision |"
  echo "|---|---|---|---|---|---|---|"
  for w in $(echo "$m" | awk '$1 == "workers" && $3 == "f32:" {print $2}'); do
    mf=$(echo "$m" | awk -v w="$w" '$1 == "workers" && $2 == w && $3 == "f32:" {print $4}')
    mu=$(echo "$m" | awk -v w="$w" '$1 == "workers" && $2 == w && $3 == "u8:" {print $4}')
    mc=$(echo "$m" | awk -v w="$w" '$1 == "workers" && $2 == w && $3 == "crops:" {print $4}')
    ti=$(echo "$t" | awk -v w="$w:" '$1 == "workers" && $2 == w {print $3}')
    echo "| $w | $mf | $mu | $mc | $ti | $(awk -v a="$mf" -v b="$ti" 'BEGIN { printf "%.2fx", a / b }') | $(awk -v a="$mc" -v b="$ti" 'BEGIN { printf "%.2fx", a / b }') |"
  done
  echo
  echo "Raw output:"
  echo '```'
  echo "\$ build/bench_loader $images FOLDER"
  echo "$m"
  echo "\$ python3 tools/torchvision_loader_peer.py FOLDER"
  echo "$t"
  echo '```'
} >"$out.tmp"
mv "$out.tmp" "$out"
cat "$out"

#!/usr/bin/env bash
# `--bn-splits auto`, train's default: 8 BN groups on one process (the single-process twin of the authors' 8
# GPUs' shuffle BN), 1 per rank with several ranks (each rank is one BN group, as each GPU is there). Read back
# from the run's configuration line in metrics.jsonl after one step.
#   bn_splits_default.sh <moco binary> <mpiexec>
set -euo pipefail
moco=$1
mpiexec=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
source "$(dirname "$0")/train_data.sh" "$dir/data"  # Fashion-MNIST, else a small ImageFolder
args=(train "${data[@]}" --device cpu --width 2 --image-size 16 -b 16 --moco-k 64 --epochs 1 --max-steps 1 -j 1)
splits() { grep -o '"bn_splits": *"[0-9]*"' "$1/metrics.jsonl" | grep -o '[0-9]*'; }
"$moco" "${args[@]}" --out "$dir/one" 2>"$dir/one.err" || { cat "$dir/one.err"; exit 1; }
"$mpiexec" -n 2 "$moco" "${args[@]}" --out "$dir/two" 2>"$dir/two.err" || { cat "$dir/two.err"; exit 1; }
one=$(splits "$dir/one") two=$(splits "$dir/two")
echo "default BN groups: $one on one process, $two per rank on 2 ranks"
[ "$one" = 8 ] && [ "$two" = 1 ] || { echo "FAIL: expected 8 and 1"; exit 1; }

#!/usr/bin/env bash
# MOCO_EMU_COUNT_ONLY=1 (the emulator computes nothing, for memory studies at full size) must leave what the
# GPU step allocates exactly as it is when the emulator computes everything: `moco_emu bench`'s memory line
# (every category's peak and the device total) is the same both ways, for the default step and with
# --recompute-bn-relu.
#   count_only_memory.sh <moco_emu binary>
set -euo pipefail
moco=$1
args=(bench --device cuda -a resnet18 --width 8 --stem imagenet --image-size 64 -b 8 --moco-k 16 --mlp --steps 1
      --warmup 1)
for extra in "" --recompute-bn-relu; do
  full=$("$moco" "${args[@]}" $extra 2>&1 | grep '^memory MiB')
  counted=$(MOCO_EMU_COUNT_ONLY=1 "$moco" "${args[@]}" $extra 2>&1 | grep '^memory MiB')
  if [ -z "$full" ] || [ "$full" != "$counted" ]; then
    echo "FAIL${extra:+ ($extra)}: computed: ${full:-<none>}"
    echo "     counted only: ${counted:-<none>}"
    exit 1
  fi
  echo "ok${extra:+ ($extra)}: the same both ways: $full"
done

#!/usr/bin/env bash
# A rehearsal of tools/device-run.sh without a GPU: the emulated builds of the same sources (moco_emu,
# moco_emu_tests, bench_*_emu from `cmake --build build`) stand in for a device bundle, the benchmarks run
# their self-checks only, and the script's parts env, tests, train and kernels run as they will on the GPU
# machine, down to the closing table and bench-record.md. It checks the script, not the GPU: the GPU run's
# few minutes on a GPU are not the place to find a typo in it. About 15 minutes on 2 cores.
#   bash tools/device-run-rehearsal.sh [BUILD_DIR] [OUT_DIR]      (defaults: build, /tmp/device-run-rehearsal)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(cd "${1:-$repo/build}" && pwd)
out=${2:-/tmp/device-run-rehearsal}
bundle=$(mktemp -d)
trap 'rm -rf "$bundle"' EXIT
[ -x "$build/moco_emu" ] && [ -x "$build/moco_emu_tests" ] ||
  { echo "no emulated build in $build: run cmake --build $build first (needs python3 for the emulator)" >&2; exit 2; }
ln -s "$build/moco_emu" "$bundle/moco"
ln -s "$build/moco_emu_tests" "$bundle/moco_gpu_tests"
for b in "$build"/bench_*_emu; do ln -s "$b" "$bundle/$(basename "$b" _emu)"; done
echo "emu-$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)" >"$bundle/COMMIT"
MOCO_BENCH_CHECK_ONLY=1 DEVICE_RUN_BUDGET_S=${DEVICE_RUN_BUDGET_S:-1500} \
  bash "$repo/tools/device-run.sh" "$bundle" "$out" env tests train kernels

#!/usr/bin/env bash
# The one test command: installs dependencies, builds everything (CUDA sources too when nvcc exists) and runs
# the whole suite through ctest. GPU tests skip, saying why, on machines without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export PATH="/usr/local/cuda/bin:$PATH"
JOBS="${JOBS:-2}"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$JOBS"
cd build
ctest --output-on-failure -j"$JOBS" "$@"

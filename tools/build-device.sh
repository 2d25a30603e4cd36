#!/usr/bin/env bash
# Builds, on a development machine, what a GPU machine without network or Debian's -dev packages can run:
# the `moco` program, the gpu tests and the GPU benchmarks for Hopper (sm_90a), with the non-CUDA shared
# libraries they need (OpenBLAS and its Fortran runtime, libjpeg-turbo, libwebp, libtiff, stb, zlib) copied
# beside them. CUDA's own libraries (cudart, cuBLAS, cuDNN, NCCL) are taken from the GPU machine (tools/device-run.sh
# finds them).
#
#   bash tools/build-device.sh [BUNDLE]     # default BUNDLE: device-bundle (ignored by git; about 57 MiB)
#
# It also packs BUNDLE as build-pack/BUNDLE.tar.xz (about 10 MiB), which is what travels. Then, on the GPU
# machine, from the repository root:
#   tar xJf build-pack/device-bundle.tar.xz && bash tools/device-run.sh device-bundle OUT_DIR
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bundle=${1:-$repo/device-bundle}
build=$repo/build-device
[ -d /usr/local/cuda/bin ] && export PATH=/usr/local/cuda/bin:$PATH
command -v nvcc >/dev/null || { echo "build-device: nvcc not found; install the CUDA toolkit" >&2; exit 2; }

# No MPI: the GPU machine has no Open MPI runtime to link against, and one GPU needs no CPU ranks.
# No oneDNN either: its 40 MB would not fit the bundle, and on the GPU machine the CPU path is only the
# reference the gpu tests compare against (im2col + OpenBLAS).
cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOCO_CUDA=ON -DMOCO_ONEDNN=OFF \
  -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON >/dev/null
targets="moco moco_gpu_tests bench_softmax_forms"  # the last: the softmax-CE study (bench/explore/)
for b in "$repo"/bench/*.cpp; do
  name=bench_$(basename "$b" .cpp)
  case $name in bench_augment | bench_decode | bench_loader) ;; *) targets="$targets $name" ;; esac
done
cmake --build "$build" -j"${JOBS:-2}" --target $targets

rm -rf "$bundle"
mkdir -p "$bundle/lib"
for t in $targets; do cp "$build/$t" "$bundle/"; done
# every library the binaries resolve outside the CUDA toolkit and the C/C++ runtime
for t in $targets; do ldd "$build/$t"; done | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
  grep -v -E '/usr/local/cuda|lib(c|m|dl|rt|pthread|gcc_s|stdc\+\+)\.so' | while read -r lib; do
    cp -L "$lib" "$bundle/lib/"
  done
git -C "$repo" rev-parse HEAD >"$bundle/COMMIT" 2>/dev/null || echo unknown >"$bundle/COMMIT"
ls "$bundle" "$bundle/lib"
echo "build-device: $(du -sh "$bundle" | cut -f1) in $bundle (commit $(cat "$bundle/COMMIT"))"
# The bundle and the working tree together may exceed the size limit of a copy to a GPU machine (64 MiB where
# this was written), OpenBLAS alone being 36 MB: an xz archive of it (about 10 MiB) in an ignored folder travels instead, unpacked there with
#   tar xJf build-pack/$(basename "$bundle").tar.xz     (from the repository root; it holds $(basename "$bundle")/)
mkdir -p "$repo/build-pack"
pack=$repo/build-pack/$(basename "$bundle").tar.xz
rm -f "$pack"  # never an older archive left to send if this one fails
tar cf - -C "$(dirname "$bundle")" "$(basename "$bundle")" | xz -T"${JOBS:-2}" -6 >"$pack.tmp" ||
  { rm -f "$pack.tmp"; echo "build-device: packing $bundle into $pack failed (is xz installed? disk space?)" >&2; exit 1; }
mv "$pack.tmp" "$pack"
echo "build-device: packed as $pack ($(du -sh "$pack" | cut -f1))"

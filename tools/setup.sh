#!/usr/bin/env bash
# Installs what moco needs on a fresh Debian 12 machine. Safe to run again: it installs only what is missing.
#   CUDA toolkit (nvcc, cuDNN, cuBLAS, NCCL) is optional: when /usr/local/cuda/bin/nvcc exists the CUDA backend
#   is compiled too; without it the CPU path builds alone.
#   MOCO_WITH_TORCH=1 also installs PyTorch from PyPI (only needed to regenerate fixtures or run the peer).
set -euo pipefail

APT_PACKAGES=(
  cmake ninja-build g++ pkg-config
  libopenblas-dev         # OpenBLAS: the float GEMMs of the CPU path
  libdnnl-dev             # oneDNN: the CPU path's float convolutions
  libgtest-dev            # GoogleTest
  libjpeg62-turbo-dev     # libjpeg-turbo: JPEG decode with Pillow's pixels
  libstb-dev              # stb_image: PNG/BMP decode
  libwebp-dev             # libwebp: WebP decode
  libtiff-dev             # libtiff: TIFF decode
  zlib1g-dev              # reading the Fashion-MNIST .gz files directly
  dataset-fashion-mnist   # the embedded default data set
  openmpi-bin libopenmpi-dev   # CPU ranks for the distributed tests
  python3
  python3-numpy           # the export tools' tests (tools/convert_detectron2.py, checked in ctest)
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all Debian packages present"
fi

if [ "${MOCO_WITH_TORCH:-0}" = "1" ]; then
  python3 -m pip install -q torch torchvision numpy safetensors
fi

if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "setup: CUDA toolkit found; the CUDA backend will be compiled"
else
  echo "setup: no CUDA toolkit found; building the CPU path only (install NVIDIA's CUDA toolkit for the GPU path)"
fi

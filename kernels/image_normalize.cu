// uint8 images to normalised network input, on the device after a (small, uint8) host-to-device copy.
//
// What it computes: images (N, H, W, 3) uint8 -> out (N, H, W, 3) of T (fp32 or bf16), v = (u / 255 -
// mean_ch) / std_ch in float32 as torchvision's ToTensor + Normalize compute it (two IEEE divisions, so the
// fp32 values are torchvision's bit for bit, and the bf16 ones what autocast makes of them), in the GPU step's
// layout and dtype (DESIGN decision 6), bf16 rounded to nearest even once. The 3 x 256 values come from the
// CPU's normalize_to_chw, once on the host, and are looked up from shared memory.
// CPU reference: normalize_to_chw (src/data/augment_pipeline.cpp), exactly, in
// tests/gpu/test_moco_kernels.cpp, beside the plain formula in double (within fp32 and bf16 rounding).
//
// What is fused and why: conversion, normalisation and (for bf16) rounding are one pass, so the batch crosses
// PCIe as uint8 (a quarter of fp32) and the normalised tensor is written once. One thread per pixel: three
// bytes in, three values out.
#include "../src/cuda/check.h"
#include "image_normalize.cuh"
#include "moco/augment.h"
#include "vec_io.cuh"

namespace moco::kernels {

namespace {

constexpr int kThreads = 256;

// The normalised value of every byte, per channel: 3 KiB, passed by value and copied to shared memory, where
// the lookups of a warp's 32 pixels mostly fall in different banks.
struct ByteTable {
  float v[3][256];
};

// The CPU's own normalisation of a ramp of 256 grey pixels: (1, 256, 3) bytes to (3, 1, 256) floats, which is
// the table's layout, so the device holds the CPU view's values by construction.
ByteTable imagenet_table() {
  uint8_t ramp[256 * 3];  // (1, 256, 3): pixel u is (u, u, u)
  for (int u = 0; u < 256; ++u) ramp[u * 3] = ramp[u * 3 + 1] = ramp[u * 3 + 2] = (uint8_t)u;
  ByteTable t{};
  normalize_to_chw(ramp, 1, 256, &t.v[0][0]);
  return t;
}

template <class T>
__global__ void image_to_nhwc_kernel(int64_t pixels, ByteTable t, const uint8_t* __restrict__ in,  // (N, H, W, 3)
                                     T* __restrict__ out) {                                        // (N, H, W, 3)
  __shared__ float table[3][256];
  for (int i = threadIdx.x; i < 3 * 256; i += blockDim.x) table[i / 256][i % 256] = t.v[i / 256][i % 256];
  __syncthreads();
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < pixels; p += stride)
    for (int ch = 0; ch < 3; ++ch) out[p * 3 + ch] = vec::from_f<T>(table[ch][in[p * 3 + ch]]);
}

// At most 1024 blocks, about one wave on an H100 (132 SMs of 2048 threads), each striding over the pixels: every
// block first copies the 3 KiB table, so more blocks would copy it more often than the images are read.
int grid_for(int64_t items) {
  constexpr int64_t kMaxBlocks = 1024;
  int64_t blocks = (items + kThreads - 1) / kThreads;
  return (int)(blocks < 1 ? 1 : (blocks > kMaxBlocks ? kMaxBlocks : blocks));
}

}  // namespace

template <class T>
void image_to_nhwc(int64_t n, int64_t h, int64_t w, const uint8_t* images, T* out, cudaStream_t stream) {
  MOCO_CHECK(n >= 0 && h >= 1 && w >= 1, "image_to_nhwc: need N >= 0, H, W >= 1, got N=", n, " H=", h, " W=", w);
  if (n == 0) return;
  MOCO_CHECK(images && out, "image_to_nhwc: images and out must be non-null");
  image_to_nhwc_kernel<T><<<grid_for(n * h * w), kThreads, 0, stream>>>(n * h * w, imagenet_table(), images, out);
  MOCO_CUDA_CHECK_LAUNCH();
}

template void image_to_nhwc<float>(int64_t, int64_t, int64_t, const uint8_t*, float*, cudaStream_t);
template void image_to_nhwc<__nv_bfloat16>(int64_t, int64_t, int64_t, const uint8_t*, __nv_bfloat16*, cudaStream_t);

}  // namespace moco::kernels

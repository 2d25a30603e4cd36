// uint8 images to normalised network input, on the device after a (small, uint8) host-to-device copy.
//
// What it computes: images (N, H, W, 3) uint8 -> v = u * scale_ch + bias_ch, scale_ch = 1 / (255 std_ch),
// bias_ch = -mean_ch / std_ch (torchvision ToTensor + Normalize), written as
//   image_to_bf16_nhwc: (N, H, W, 3) bf16 (the GPU step's layout and dtype, DESIGN decision 6)
//   image_to_f32_nchw:  (N, 3, H, W) fp32 (the CPU path's layout)
// CPU reference: a plain loop in tests/gpu/test_moco_kernels.cpp (the same scale and bias in fp32).
//
// What is fused and why: conversion, normalisation, layout change and (for bf16) rounding are one pass, so
// the batch crosses PCIe as uint8 (a quarter of fp32) and the normalised tensor is written once. One thread
// per pixel: three bytes in, three values out.
#include "../src/cuda/check.h"
#include "image_normalize.cuh"

namespace moco::kernels {

namespace {

constexpr int kThreads = 256;

struct Affine {
  float scale[3], bias[3];
};

Affine imagenet_affine() {
  Affine a{};
  for (int ch = 0; ch < 3; ++ch) {
    a.scale[ch] = 1.f / (255.f * kImageStd[ch]);
    a.bias[ch] = -kImageMean[ch] / kImageStd[ch];
  }
  return a;
}

__global__ void to_bf16_nhwc_kernel(int64_t pixels, Affine a, const uint8_t* __restrict__ in,  // (N, H, W, 3)
                                    __nv_bfloat16* __restrict__ out) {                        // (N, H, W, 3)
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < pixels; p += stride)
    for (int ch = 0; ch < 3; ++ch)
      out[p * 3 + ch] = __float2bfloat16_rn(__fmaf_rn((float)in[p * 3 + ch], a.scale[ch], a.bias[ch]));
}

__global__ void to_f32_nchw_kernel(int64_t n, int64_t hw, Affine a, const uint8_t* __restrict__ in,  // (N, H, W, 3)
                                   float* __restrict__ out) {                                       // (N, 3, H, W)
  const int64_t pixels = n * hw;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < pixels; p += stride) {
    const int64_t img = p / hw, pos = p % hw;
    for (int ch = 0; ch < 3; ++ch)
      out[(img * 3 + ch) * hw + pos] = __fmaf_rn((float)in[p * 3 + ch], a.scale[ch], a.bias[ch]);
  }
}

int grid_for(int64_t items) {
  int64_t blocks = (items + kThreads - 1) / kThreads;
  return (int)(blocks < 1 ? 1 : (blocks > 65535 * 4 ? 65535 * 4 : blocks));
}

void check_shape(const char* who, int64_t n, int64_t h, int64_t w) {
  MOCO_CHECK(n >= 0 && h >= 1 && w >= 1, who, ": need N >= 0, H, W >= 1, got N=", n, " H=", h, " W=", w);
}

}  // namespace

void image_to_bf16_nhwc(int64_t n, int64_t h, int64_t w, const uint8_t* images, __nv_bfloat16* out,
                        cudaStream_t stream) {
  check_shape("image_to_bf16_nhwc", n, h, w);
  if (n == 0) return;
  to_bf16_nhwc_kernel<<<grid_for(n * h * w), kThreads, 0, stream>>>(n * h * w, imagenet_affine(), images, out);
  MOCO_CUDA_CHECK_LAUNCH();
}

void image_to_f32_nchw(int64_t n, int64_t h, int64_t w, const uint8_t* images, float* out, cudaStream_t stream) {
  check_shape("image_to_f32_nchw", n, h, w);
  if (n == 0) return;
  to_f32_nchw_kernel<<<grid_for(n * h * w), kThreads, 0, stream>>>(n, h * w, imagenet_affine(), images, out);
  MOCO_CUDA_CHECK_LAUNCH();
}

}  // namespace moco::kernels

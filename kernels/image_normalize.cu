// uint8 images to normalised network input, on the device after a (small, uint8) host-to-device copy.
//
// What it computes: images (N, H, W, 3) uint8 -> out (N, H, W, 3) of T (fp32 or bf16), v = u * scale_ch +
// bias_ch with scale_ch = 1 / (255 std_ch) and bias_ch = -mean_ch / std_ch: torchvision's ToTensor + Normalize,
// in the GPU step's layout and dtype (DESIGN decision 6), bf16 rounded to nearest even once.
// CPU reference: the loops in tests/gpu/test_moco_kernels.cpp, the same fused multiply-add in fp32 (exact
// match) and the plain formula in double (within fp32 and bf16 rounding).
//
// What is fused and why: conversion, normalisation and (for bf16) rounding are one pass, so the batch crosses
// PCIe as uint8 (a quarter of fp32) and the normalised tensor is written once. One thread per pixel: three
// bytes in, three values out.
#include "../src/cuda/check.h"
#include "image_normalize.cuh"
#include "vec_io.cuh"

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

template <class T>
__global__ void image_to_nhwc_kernel(int64_t pixels, Affine a, const uint8_t* __restrict__ in,  // (N, H, W, 3)
                                     T* __restrict__ out) {                                    // (N, H, W, 3)
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < pixels; p += stride)
    for (int ch = 0; ch < 3; ++ch)
      out[p * 3 + ch] = vec::from_f<T>(__fmaf_rn((float)in[p * 3 + ch], a.scale[ch], a.bias[ch]));
}

int grid_for(int64_t items) {
  int64_t blocks = (items + kThreads - 1) / kThreads;
  return (int)(blocks < 1 ? 1 : (blocks > 65535 * 4 ? 65535 * 4 : blocks));
}

}  // namespace

template <class T>
void image_to_nhwc(int64_t n, int64_t h, int64_t w, const uint8_t* images, T* out, cudaStream_t stream) {
  MOCO_CHECK(n >= 0 && h >= 1 && w >= 1, "image_to_nhwc: need N >= 0, H, W >= 1, got N=", n, " H=", h, " W=", w);
  if (n == 0) return;
  MOCO_CHECK(images && out, "image_to_nhwc: images and out must be non-null");
  image_to_nhwc_kernel<T><<<grid_for(n * h * w), kThreads, 0, stream>>>(n * h * w, imagenet_affine(), images, out);
  MOCO_CUDA_CHECK_LAUNCH();
}

template void image_to_nhwc<float>(int64_t, int64_t, int64_t, const uint8_t*, float*, cudaStream_t);
template void image_to_nhwc<__nv_bfloat16>(int64_t, int64_t, int64_t, const uint8_t*, __nv_bfloat16*, cudaStream_t);

}  // namespace moco::kernels

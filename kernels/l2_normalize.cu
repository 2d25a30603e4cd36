// Row L2 normalisation of the MoCo features, forward and backward: one warp per row.
//
// What it computes (x, y, dy, dx (N, C); norms (N)):
//   forward:  norms_i = ||x_i||, y_i = x_i / max(norms_i, 1e-12)          (torch F.normalize, dim=1)
//   backward: dx_i = (dy_i - y_i <dy_i, y_i>) / norms_i, or dy_i / 1e-12 where norms_i <= 1e-12
// CPU references: cpu::l2_normalize_forward / cpu::l2_normalize_backward (src/cpu/l2norm.cpp).
//
// What is fused and why: the norm (or the dot product) and the scaling are one launch; a row (C = 128 in
// MoCo) is read twice by the same warp, the second time from L1/L2, instead of a reduction kernel plus a
// scaling kernel. The backward uses the saved output y and norms, so x need not be kept.
#include "../src/cuda/check.h"
#include "l2_normalize.cuh"

namespace moco::kernels {

namespace {

constexpr int kWarp = 32;
constexpr int kThreads = 256;  // 8 rows per block
constexpr float kNormEps = 1e-12f;  // torch.nn.functional.normalize default

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__global__ void forward_kernel(int64_t n, int64_t c, const float* __restrict__ x,  // (N, C)
                               float* __restrict__ y,                              // (N, C)
                               float* __restrict__ norms) {                        // (N)
  const int64_t row = (int64_t)blockIdx.x * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= n) return;
  const float* xi = x + row * c;
  float sq = 0.f;
  for (int64_t j = lane; j < c; j += kWarp) sq += xi[j] * xi[j];
  const float norm = sqrtf(warp_sum(sq));
  if (lane == 0) norms[row] = norm;
  const float inv = 1.f / fmaxf(norm, kNormEps);
  for (int64_t j = lane; j < c; j += kWarp) y[row * c + j] = xi[j] * inv;
}

__global__ void backward_kernel(int64_t n, int64_t c, const float* __restrict__ y,  // (N, C)
                                const float* __restrict__ norms,                    // (N)
                                const float* dy,                                    // (N, C); may alias dx
                                float* dx) {                                        // (N, C)
  const int64_t row = (int64_t)blockIdx.x * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= n) return;
  const float norm = norms[row];
  const float* yi = y + row * c;
  const float* dyi = dy + row * c;
  float* dxi = dx + row * c;
  if (norm <= kNormEps) {  // y = x / eps: a plain scale
    for (int64_t j = lane; j < c; j += kWarp) dxi[j] = dyi[j] / kNormEps;
    return;
  }
  float dot = 0.f;
  for (int64_t j = lane; j < c; j += kWarp) dot += dyi[j] * yi[j];
  dot = warp_sum(dot);  // every lane has read all of its dy before any lane writes dx (the shuffle syncs)
  const float inv = 1.f / norm;
  for (int64_t j = lane; j < c; j += kWarp) dxi[j] = (dyi[j] - yi[j] * dot) * inv;
}

int rows_grid(int64_t n) { return (int)((n + kThreads / kWarp - 1) / (kThreads / kWarp)); }

}  // namespace

void l2_normalize_forward(int64_t n, int64_t c, const float* x, float* y, float* norms, cudaStream_t stream) {
  MOCO_CHECK(n >= 0 && c >= 1, "l2_normalize_forward: need N >= 0 and C >= 1, got N=", n, " C=", c);
  if (n == 0) return;
  forward_kernel<<<rows_grid(n), kThreads, 0, stream>>>(n, c, x, y, norms);
  MOCO_CUDA_CHECK_LAUNCH();
}

void l2_normalize_backward(int64_t n, int64_t c, const float* y, const float* norms, const float* dy, float* dx,
                           cudaStream_t stream) {
  MOCO_CHECK(n >= 0 && c >= 1, "l2_normalize_backward: need N >= 0 and C >= 1, got N=", n, " C=", c);
  if (n == 0) return;
  backward_kernel<<<rows_grid(n), kThreads, 0, stream>>>(n, c, y, norms, dy, dx);
  MOCO_CUDA_CHECK_LAUNCH();
}

}  // namespace moco::kernels

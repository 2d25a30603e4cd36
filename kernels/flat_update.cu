// Momentum (EMA) update of the key encoder and the SGD step, each one launch over a flat fp32 buffer.
//
// What they compute:
//   momentum_update:   theta_k = theta_k * m + theta_q * (1 - m)          (CPU reference: cpu::momentum_update)
//                      with m and 1 - m rounded to float from double, each product rounded, as in PyTorch
//   sgd_momentum_step: d = g + wd * p; buf = mu * buf + d; p -= lr * buf  (CPU reference: cpu::sgd_momentum_step)
// Why flat: every parameter of an encoder lives in one buffer, so ~28M parameters are one memory-bound
// pass instead of ~160 small launches. Both kernels read and write with float4 when all pointers are
// 16-byte aligned (cudaMalloc gives 256, and registry offsets are multiples of 8 elements) and finish the tail element by element.
#include "../src/cuda/check.h"
#include "flat_update.cuh"

namespace moco::kernels {

namespace {

constexpr int kThreads = 256;

int grid_for(int64_t n4) {
  int64_t blocks = (n4 + kThreads - 1) / kThreads;
  return (int)(blocks < 1 ? 1 : (blocks > 65535 * 4 ? 65535 * 4 : blocks));
}

// Each product rounded, then the sum (__fmul_rn, __fadd_rn: no fused multiply-add), as PyTorch's two
// multiplications and its addition round them.
__device__ __forceinline__ float ema(float k, float q, float keep, float take) {
  return __fadd_rn(__fmul_rn(k, keep), __fmul_rn(q, take));
}

__global__ void momentum_update_kernel(int64_t n, float keep, float take, const float* __restrict__ q,
                                       float* __restrict__ k) {
  const int64_t n4 = n / 4;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n4; i += stride) {
    float4 a = reinterpret_cast<const float4*>(q)[i];
    float4 b = reinterpret_cast<float4*>(k)[i];
    b.x = ema(b.x, a.x, keep, take);
    b.y = ema(b.y, a.y, keep, take);
    b.z = ema(b.z, a.z, keep, take);
    b.w = ema(b.w, a.w, keep, take);
    reinterpret_cast<float4*>(k)[i] = b;
  }
  for (int64_t i = n4 * 4 + blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride)
    k[i] = ema(k[i], q[i], keep, take);
}

__device__ __forceinline__ void sgd_one(float& p, float g, float& b, float lr, float mu, float wd) {
  float d = g + wd * p;
  b = mu * b + d;
  p -= lr * b;
}

__global__ void sgd_kernel(int64_t n, float lr, float mu, float wd, float* __restrict__ p, const float* __restrict__ g,
                           float* __restrict__ buf) {
  const int64_t n4 = n / 4;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n4; i += stride) {
    float4 pv = reinterpret_cast<float4*>(p)[i];
    float4 gv = reinterpret_cast<const float4*>(g)[i];
    float4 bv = reinterpret_cast<float4*>(buf)[i];
    sgd_one(pv.x, gv.x, bv.x, lr, mu, wd);
    sgd_one(pv.y, gv.y, bv.y, lr, mu, wd);
    sgd_one(pv.z, gv.z, bv.z, lr, mu, wd);
    sgd_one(pv.w, gv.w, bv.w, lr, mu, wd);
    reinterpret_cast<float4*>(p)[i] = pv;
    reinterpret_cast<float4*>(buf)[i] = bv;
  }
  for (int64_t i = n4 * 4 + blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride)
    sgd_one(p[i], g[i], buf[i], lr, mu, wd);
}

void check_aligned(const void* p, const char* what) {
  MOCO_CHECK(reinterpret_cast<uintptr_t>(p) % 16 == 0, what, " is not 16-byte aligned (", p,
             "); flat buffers must start 16-byte aligned, as cudaMalloc returns them");
}

}  // namespace

void momentum_update(int64_t n, double m, const float* theta_q, float* theta_k, cudaStream_t stream) {
  if (n == 0) return;
  check_aligned(theta_q, "theta_q");
  check_aligned(theta_k, "theta_k");
  momentum_update_kernel<<<grid_for(n / 4 + 1), kThreads, 0, stream>>>(n, (float)m, (float)(1.0 - m), theta_q,
                                                                       theta_k);
  MOCO_CUDA_CHECK_LAUNCH();
}

void sgd_momentum_step(int64_t n, float lr, float momentum, float weight_decay, float* param, const float* grad,
                       float* buf, cudaStream_t stream) {
  if (n == 0) return;
  check_aligned(param, "param");
  check_aligned(grad, "grad");
  check_aligned(buf, "momentum buffer");
  sgd_kernel<<<grid_for(n / 4 + 1), kThreads, 0, stream>>>(n, lr, momentum, weight_decay, param, grad, buf);
  MOCO_CUDA_CHECK_LAUNCH();
}

}  // namespace moco::kernels

// The MoCo logits and their backward: one cuBLAS GEMM for the K negatives plus a one-warp-per-row kernel for
// the positive.
//
// What they compute (row-major; q, key (N, C), queue (K, C), logits (N, 1+K)):
//   forward:  logits[i, 0]     = <q_i, key_i> * inv_t                      (l_pos)
//             logits[i, 1 + r] = <q_i, queue_r> * inv_t                    (l_neg)
//   backward: dq[i, :] = (dlogits[i, 0] * key_i + sum_r dlogits[i, 1 + r] * queue_r) * inv_t
// CPU references: cpu::moco_logits_forward / cpu::moco_logits_backward (src/cpu/contrastive.cpp).
//
// What is fused and why: l_neg is written by the GEMM straight into columns 1..K of the logits (C pointer
// offset by one element, ldc = 1 + K, alpha = inv_t), so there is no (N, K) temporary, no concatenation and
// no separate scaling pass: the 67 MB of logits at N=256, K=65536 are written once. In the backward the GEMM
// reads dlogits[:, 1:] in place the same way (ldb = 1 + K). The column-0 terms are N dot products (forward)
// and an N x C axpy (backward): tiny next to the GEMM, one small launch each.
//
// cuBLAS is column-major; a row-major (R, S) matrix is a column-major (S, R) one, so
//   forward : l_neg^T (K, N; ld 1+K) = queue_cm^T (K, C) . q_cm (C, N)       -> gemm(T, N, m=K, n=N, k=C)
//   backward: dq^T    (C, N; ld C)   = queue_cm (C, K) . dlogits_cm (K, N; ld 1+K) -> gemm(N, N, m=C, n=N, k=K)
// fp32 runs with CUBLAS_COMPUTE_32F (no TF32: the logits are the loss's input and must match the CPU to
// ~1e-6); bf16 inputs accumulate in fp32 on tensor cores.
#include <climits>

#include "../src/cuda/check.h"
#include "moco_logits.cuh"

namespace moco::kernels {

namespace {

constexpr int kWarp = 32;
constexpr int kThreads = 256;  // 8 rows per block in the one-warp-per-row kernels

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// l_pos: one warp per row i, logits[i * (1 + K)] = <q_i, key_i> * inv_t.
template <class T>
__global__ void positive_logit_kernel(int64_t n, int64_t c, int64_t k, const T* __restrict__ q,  // (N, C)
                                      const T* __restrict__ key,                                // (N, C)
                                      float inv_t, float* __restrict__ logits) {                // (N, 1+K)
  const int64_t row = (int64_t)blockIdx.x * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= n) return;
  const T* qi = q + row * c;
  const T* ki = key + row * c;
  float acc = 0.f;
  for (int64_t j = lane; j < c; j += kWarp) acc += to_float(qi[j]) * to_float(ki[j]);
  acc = warp_sum(acc);
  if (lane == 0) logits[row * (1 + k)] = acc * inv_t;
}

// The column-0 term of the backward: dq[i, j] += inv_t * dlogits[i, 0] * key[i, j].
__global__ void positive_grad_kernel(int64_t n, int64_t c, int64_t k, const float* __restrict__ dlogits,  // (N, 1+K)
                                     const float* __restrict__ key,                                     // (N, C)
                                     float inv_t, float* __restrict__ dq) {                             // (N, C)
  const int64_t total = n * c;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    const int64_t i = idx / c;
    dq[idx] += inv_t * dlogits[i * (1 + k)] * key[idx];
  }
}

void check_shapes(const char* who, int64_t n, int64_t c, int64_t k) {
  MOCO_CHECK(n >= 1 && c >= 1 && k >= 1, who, ": need N, C, K >= 1, got N=", n, " C=", c, " K=", k);
  MOCO_CHECK(n <= INT_MAX && c <= INT_MAX && k < INT_MAX, who, ": N=", n, " C=", c, " K=", k,
             " exceed cuBLAS's int dimensions");
}

int rows_grid(int64_t n) { return (int)((n + kThreads / kWarp - 1) / (kThreads / kWarp)); }

template <class T>
void logits_forward(cublasHandle_t blas, cudaDataType_t type, int64_t n, int64_t c, int64_t k, const T* q,
                    const T* key, const T* queue, float inv_t, float* logits, cudaStream_t stream) {
  MOCO_CUBLAS_CHECK(cublasSetStream(blas, stream));
  MOCO_CUBLAS_CHECK(cublasSetPointerMode(blas, CUBLAS_POINTER_MODE_HOST));
  const float alpha = inv_t, beta = 0.f;
  // l_neg^T (K, N; ld 1+K) = queue_cm^T (K, C) . q_cm (C, N), written at logits + 1
  MOCO_CUBLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)k, (int)n, (int)c, &alpha, queue, type, (int)c,
                                 q, type, (int)c, &beta, logits + 1, CUDA_R_32F, (int)(k + 1), CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT));
  positive_logit_kernel<T><<<rows_grid(n), kThreads, 0, stream>>>(n, c, k, q, key, inv_t, logits);
  MOCO_CUDA_CHECK_LAUNCH();
}

}  // namespace

void moco_logits_forward(cublasHandle_t blas, int64_t n, int64_t c, int64_t k, const float* q, const float* key,
                         const float* queue, float inv_t, float* logits, cudaStream_t stream) {
  check_shapes("moco_logits_forward", n, c, k);
  logits_forward<float>(blas, CUDA_R_32F, n, c, k, q, key, queue, inv_t, logits, stream);
}

void moco_logits_forward_bf16(cublasHandle_t blas, int64_t n, int64_t c, int64_t k, const __nv_bfloat16* q,
                              const __nv_bfloat16* key, const __nv_bfloat16* queue, float inv_t, float* logits,
                              cudaStream_t stream) {
  check_shapes("moco_logits_forward_bf16", n, c, k);
  logits_forward<__nv_bfloat16>(blas, CUDA_R_16BF, n, c, k, q, key, queue, inv_t, logits, stream);
}

void moco_logits_backward(cublasHandle_t blas, int64_t n, int64_t c, int64_t k, const float* dlogits,
                          const float* key, const float* queue, float inv_t, float* dq, cudaStream_t stream) {
  check_shapes("moco_logits_backward", n, c, k);
  MOCO_CUBLAS_CHECK(cublasSetStream(blas, stream));
  MOCO_CUBLAS_CHECK(cublasSetPointerMode(blas, CUBLAS_POINTER_MODE_HOST));
  const float alpha = inv_t, beta = 0.f;
  // dq^T (C, N; ld C) = queue_cm (C, K) . dlogits[:, 1:]_cm (K, N; ld 1+K); beta = 0 never reads dq
  MOCO_CUBLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)c, (int)n, (int)k, &alpha, queue, CUDA_R_32F,
                                 (int)c, dlogits + 1, CUDA_R_32F, (int)(k + 1), &beta, dq, CUDA_R_32F, (int)c,
                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  const int64_t total = n * c;
  int64_t blocks = (total + kThreads - 1) / kThreads;
  if (blocks > 65535 * 4) blocks = 65535 * 4;
  positive_grad_kernel<<<(int)blocks, kThreads, 0, stream>>>(n, c, k, dlogits, key, inv_t, dq);
  MOCO_CUDA_CHECK_LAUNCH();
}

}  // namespace moco::kernels

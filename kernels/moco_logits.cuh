// Launchers for the MoCo logits and their backward (raw pointers and sizes only; no Tensor). All matrices
// are row-major; the cuBLAS handle is the caller's (see src/cuda/blas_handle.h) and is bound to `stream`.
#pragma once
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace moco::kernels {

// logits (N, 1+K) fp32: column 0 = <q_i, key_i> * inv_t (l_pos), columns 1..K = q . queue^T * inv_t (l_neg).
// q, key (N, C); queue (K, C). fp32 GEMM (no TF32). CPU reference: cpu::moco_logits_forward.
void moco_logits_forward(cublasHandle_t blas, int64_t n, int64_t c, int64_t k, const float* q, const float* key,
                         const float* queue, float inv_t, float* logits, cudaStream_t stream);

// The same with bf16 q, key, queue and fp32 accumulation and output (CUBLAS_COMPUTE_32F on tensor cores).
// CPU reference: cpu::moco_logits_forward on the bf16 values widened to float.
void moco_logits_forward_bf16(cublasHandle_t blas, int64_t n, int64_t c, int64_t k, const __nv_bfloat16* q,
                              const __nv_bfloat16* key, const __nv_bfloat16* queue, float inv_t, float* logits,
                              cudaStream_t stream);

// dq (N, C) = (dlogits[:, 0] * key + dlogits[:, 1:] . queue) * inv_t, from dlogits (N, 1+K); key (N, C) and
// queue (K, C) get no gradient. dq is overwritten. CPU reference: cpu::moco_logits_backward.
void moco_logits_backward(cublasHandle_t blas, int64_t n, int64_t c, int64_t k, const float* dlogits,
                          const float* key, const float* queue, float inv_t, float* dq, cudaStream_t stream);

}  // namespace moco::kernels

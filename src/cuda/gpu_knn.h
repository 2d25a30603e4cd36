// The kNN monitor's scoring on the GPU (FeatureExtractor::knn_top1 of the GPU extractor): the bank on the
// device, the cosine similarities of a chunk of queries as fp32 cuBLAS GEMMs, and the selection of the k
// nearest and their vote in kernels/knn_vote.cu. The result is moco::knn_top1's (its reference) for the
// same features; k above kernels::kKnnMaxK is scored by it, on the CPU.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "moco/knn.h"

namespace moco::cuda {

// The most values one GEMM operand may hold: cuBLAS kernels may index a matrix with 32 bits, and ImageNet's
// bank of 2048-dim features holds 2.6e9.
constexpr int64_t kMaxGemmElements = INT32_MAX;

// sims (rows, B) row-major = q (rows, D) . bank (B, D)^T, as fp32 cuBLAS GEMMs over slices of whole bank rows of
// at most max_slice values each. Enqueued on the handle's stream.
void bank_similarities(cublasHandle_t blas, const float* bank, int64_t b, int64_t d, const float* q, int64_t rows,
                       float* sims, int64_t max_slice = kMaxGemmElements);

// max_chunk: queries scored per GEMM and vote (at most; fewer when their similarities would pass 1 GiB).
// max_slice: bank_similarities' (the tests make it small).
double knn_top1(const FeatureSet& bank, const FeatureSet& query, int classes, int k, double t, cudaStream_t stream,
                int64_t max_chunk = 1024, int64_t max_slice = kMaxGemmElements);

}  // namespace moco::cuda

// The kNN monitor's scoring on the GPU (FeatureExtractor::knn_top1 of the GPU extractor): the bank on the
// device, the cosine similarities of a chunk of queries as one fp32 cuBLAS GEMM, and the selection of the k
// nearest and their vote in kernels/knn_vote.cu. The result is moco::knn_top1's (its reference) for the
// same features; k above kernels::kKnnMaxK is scored by it, on the CPU.
#pragma once
#include <cuda_runtime.h>

#include "moco/knn.h"

namespace moco::cuda {

// max_chunk: queries scored per GEMM and vote (at most; fewer when their similarities would pass 1 GiB).
double knn_top1(const FeatureSet& bank, const FeatureSet& query, int classes, int k, double t, cudaStream_t stream,
                int64_t max_chunk = 1024);

}  // namespace moco::cuda

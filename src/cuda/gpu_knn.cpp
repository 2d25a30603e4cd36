#include "gpu_knn.h"

#include <algorithm>
#include <cstdio>

#include "blas_handle.h"
#include "check.h"
#include "device_buffer.h"
#include "knn_vote.cuh"

namespace moco::cuda {

void bank_similarities(cublasHandle_t blas, const float* bank, int64_t b, int64_t d, const float* q, int64_t rows,
                       float* sims, int64_t max_slice) {
  // the queries and the similarities are one operand each (the caller's chunks keep them small); the bank is sliced
  MOCO_CHECK(d >= 1 && d <= max_slice && rows * d <= kMaxGemmElements && rows * b <= kMaxGemmElements,
             "kNN similarities: ", rows, " queries of dim ", d, " against ", b, " features do not fit GEMMs of at most ",
             max_slice, " values per bank slice and ", kMaxGemmElements, " per operand");
  const int64_t slice = max_slice / d;  // bank rows per GEMM
  const float one = 1.f, zero = 0.f;
  for (int64_t b0 = 0; b0 < b; b0 += slice) {
    const int64_t m = std::min(slice, b - b0);
    // sims[:, b0:b0+m]^T (m, rows; column-major, ld B) = bank[b0:b0+m] (m, D) . q^T (D, rows)
    MOCO_CUBLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)m, (int)rows, (int)d, &one, bank + b0 * d,
                                   CUDA_R_32F, (int)d, q, CUDA_R_32F, (int)d, &zero, sims + b0, CUDA_R_32F, (int)b,
                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
}

double knn_top1(const FeatureSet& bank, const FeatureSet& query, int classes, int k, double t, cudaStream_t stream,
                int64_t max_chunk, int64_t max_slice) {
  check_knn_inputs(bank, query, classes, t);
  MOCO_CHECK(bank.n <= INT32_MAX && bank.dim <= INT32_MAX, "kNN on the GPU: a bank of ", bank.n, " features of dim ",
             bank.dim, "; cuBLAS takes at most 2^31-1 of each");
  MOCO_CHECK(max_chunk >= 1, "kNN on the GPU: max_chunk ", max_chunk, ", expected >= 1");
  k = (int)std::min<int64_t>(k, bank.n);
  if (k > kernels::kKnnMaxK) return moco::knn_top1(bank, query, classes, k, t);
  const int64_t d = bank.dim;
  // Queries per chunk: their similarities to the whole bank take at most 256 Mi floats (1 GiB).
  const int64_t chunk = std::clamp<int64_t>((int64_t(1) << 28) / bank.n, 1, max_chunk);
  // The kNN monitor runs beside the training step's memory: when the bank and the chunk's buffers do not fit
  // in what is free (with 10% to spare), score on the CPU rather than end the run.
  const double need = 4.0 * (double)(bank.n * d + bank.n + chunk * d + chunk * bank.n) +
                      8.0 * (double)(chunk * classes) + 4.0 * (double)chunk;
  size_t free_bytes = 0, total_bytes = 0;
  MOCO_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  if (need > 0.9 * (double)free_bytes) {
    std::fprintf(stderr, "kNN: the bank's %.2f GB do not fit in the GPU's %.2f GB free; scoring on the CPU\n",
                 need / 1e9, (double)free_bytes / 1e9);
    return moco::knn_top1(bank, query, classes, k, t);
  }
  DeviceBuffer<float> bank_dev(bank.features, "kNN bank features");  // (B, D)
  DeviceBuffer<int> labels_dev(bank.labels, "kNN bank labels");       // (B)
  DeviceBuffer<float> q_dev((size_t)(chunk * d), "kNN queries");      // (chunk, D)
  DeviceBuffer<float> sims((size_t)(chunk * bank.n), "kNN similarities");  // (chunk, B)
  DeviceBuffer<double> votes((size_t)(chunk * classes), "kNN votes");      // (chunk, classes)
  DeviceBuffer<int> pred_dev((size_t)chunk, "kNN predictions");            // (chunk)
  std::vector<int> pred((size_t)chunk);                                    // (chunk)
  BlasHandle blas;
  MOCO_CUBLAS_CHECK(cublasSetStream(blas.get(), stream));
  MOCO_CUDA_CHECK(cudaDeviceSynchronize());  // the uploads ran on the legacy stream
  int64_t correct = 0;
  for (int64_t q0 = 0; q0 < query.n; q0 += chunk) {
    const int64_t rows = std::min(chunk, query.n - q0);
    MOCO_CUDA_CHECK(cudaMemcpyAsync(q_dev.get(), query.features.data() + q0 * d, (size_t)(rows * d) * sizeof(float),
                                    cudaMemcpyHostToDevice, stream));
    bank_similarities(blas.get(), bank_dev.get(), bank.n, d, q_dev.get(), rows, sims.get(), max_slice);
    kernels::knn_vote(rows, bank.n, k, classes, t, sims.get(), labels_dev.get(), votes.get(), pred_dev.get(), stream);
    MOCO_CUDA_CHECK(cudaMemcpyAsync(pred.data(), pred_dev.get(), (size_t)rows * sizeof(int), cudaMemcpyDeviceToHost,
                                    stream));
    MOCO_CUDA_CHECK(cudaStreamSynchronize(stream));
    for (int64_t r = 0; r < rows; ++r) correct += pred[(size_t)r] == query.labels[(size_t)(q0 + r)];
  }
  return 100.0 * (double)correct / (double)query.n;
}

}  // namespace moco::cuda

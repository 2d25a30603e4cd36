// Row-major GEMM. float goes to OpenBLAS (cblas_sgemm): the CPU path is also the CI trainer and the demo,
// and a plain loop is ~20x slower than a tuned kernel on the same cores. double is a plain loop: it is the
// finite-difference oracle, where readability matters and speed does not. Both are checked against PyTorch
// (tests/test_*_vs_torch.cpp).
#include <cblas.h>

#include <cstddef>
#include <vector>

#include "moco/cpu_ops.h"

namespace moco::cpu {

template <>
void gemm<float>(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 const float* B, float beta, float* C) {
  if (M == 0 || N == 0) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)M,
              (int)N, (int)K, alpha, A, trans_a ? (int)M : (int)K, B, trans_b ? (int)K : (int)N, beta, C, (int)N);
}

template <>
void gemm<double>(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
                  const double* B, double beta, double* C) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0;
      for (int64_t p = 0; p < K; ++p)
        acc += (trans_a ? A[p * M + i] : A[i * K + p]) * (trans_b ? B[j * K + p] : B[p * N + j]);
      C[i * N + j] = (beta == 0.0 ? 0.0 : beta * C[i * N + j]) + alpha * acc;
    }
}

}  // namespace moco::cpu

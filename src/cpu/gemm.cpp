// Row-major GEMM. Loop orders keep the innermost loop unit-stride so the compiler vectorises it. Sums are
// accumulated in double whatever T is: the CPU path is the reference the GPU is checked against, and the
// MoCo gradient cancels heavily in the L2-normalisation backward, so float accumulation over long sums
// (K = Ci*k*k up to 4608) would make our float32 step several times less accurate than PyTorch's.
#include <cstddef>
#include <vector>

#include "moco/cpu_ops.h"

namespace moco::cpu {

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, const T* B, T beta, T* C) {
  if (!trans_b) {
    // C[i, :] = beta * C[i, :] + alpha * sum_p A(i, p) * B[p, :], the row accumulated in double
    std::vector<double> acc((size_t)N);
    for (int64_t i = 0; i < M; ++i) {
      T* c = C + i * N;
      for (int64_t j = 0; j < N; ++j) acc[j] = 0.0;
      for (int64_t p = 0; p < K; ++p) {
        const double a = (double)(trans_a ? A[p * M + i] : A[i * K + p]);
        if (a == 0.0) continue;
        const T* b = B + p * N;
        for (int64_t j = 0; j < N; ++j) acc[j] += a * (double)b[j];
      }
      for (int64_t j = 0; j < N; ++j) c[j] = (T)((beta == T(0) ? 0.0 : (double)beta * c[j]) + (double)alpha * acc[j]);
    }
    return;
  }
  // B is (N, K): C[i, j] = alpha * dot(A(i, :), B[j, :]); gather A's row once if A is transposed.
  std::vector<T> arow(trans_a ? K : 0);
  for (int64_t i = 0; i < M; ++i) {
    const T* a = A + i * K;
    if (trans_a) {
      for (int64_t p = 0; p < K; ++p) arow[p] = A[p * M + i];
      a = arow.data();
    }
    T* c = C + i * N;
    for (int64_t j = 0; j < N; ++j) {
      const T* b = B + j * K;
      double acc = 0;
      for (int64_t p = 0; p < K; ++p) acc += (double)a[p] * (double)b[p];
      c[j] = (T)((beta == T(0) ? 0.0 : (double)beta * c[j]) + (double)alpha * acc);
    }
  }
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, const float*, float, float*);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, const double*, double, double*);

}  // namespace moco::cpu

// Row-major GEMM. Loop orders keep the innermost loop unit-stride over C and B so the compiler vectorises
// it; good enough for the CPU path, which is the reference and the CI trainer, not the product.
#include <vector>

#include "moco/cpu_ops.h"

namespace moco::cpu {

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, const T* B, T beta, T* C) {
  for (int64_t i = 0; i < M * N; ++i) C[i] = beta == T(0) ? T(0) : beta * C[i];
  if (!trans_b) {
    // C[i, :] += alpha * A(i, p) * B[p, :]
    for (int64_t i = 0; i < M; ++i) {
      T* c = C + i * N;
      for (int64_t p = 0; p < K; ++p) {
        T a = alpha * (trans_a ? A[p * M + i] : A[i * K + p]);
        if (a == T(0)) continue;
        const T* b = B + p * N;
        for (int64_t j = 0; j < N; ++j) c[j] += a * b[j];
      }
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
      T acc = 0;
      for (int64_t p = 0; p < K; ++p) acc += a[p] * b[p];
      c[j] += alpha * acc;
    }
  }
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, const float*, float, float*);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, const double*, double, double*);

}  // namespace moco::cpu

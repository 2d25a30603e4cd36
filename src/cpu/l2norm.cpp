#include <algorithm>
#include <cmath>

#include "moco/cpu_ops.h"

namespace moco::cpu {

constexpr double kNormEps = 1e-12;  // torch.nn.functional.normalize default

template <class T>
void l2_normalize_forward(int64_t n, int64_t c, const T* x, T* y, T* norms) {
  for (int64_t i = 0; i < n; ++i) {
    double sq = 0;
    for (int64_t j = 0; j < c; ++j) sq += (double)x[i * c + j] * x[i * c + j];
    double norm = std::sqrt(sq);
    norms[i] = (T)norm;
    double denom = std::max(norm, kNormEps);
    for (int64_t j = 0; j < c; ++j) y[i * c + j] = (T)(x[i * c + j] / denom);
  }
}

template <class T>
void l2_normalize_backward(int64_t n, int64_t c, const T* y, const T* norms, const T* dy, T* dx) {
  for (int64_t i = 0; i < n; ++i) {
    double norm = norms[i];
    if (norm <= kNormEps) {  // y = x / eps: a plain scale
      for (int64_t j = 0; j < c; ++j) dx[i * c + j] = (T)(dy[i * c + j] / kNormEps);
      continue;
    }
    // dx = (dy - y * <dy, y>) / ||x||
    double dot = 0;
    for (int64_t j = 0; j < c; ++j) dot += (double)dy[i * c + j] * y[i * c + j];
    for (int64_t j = 0; j < c; ++j) dx[i * c + j] = (T)((dy[i * c + j] - y[i * c + j] * dot) / norm);
  }
}

#define MOCO_INSTANTIATE_L2(T)                                                           \
  template void l2_normalize_forward<T>(int64_t, int64_t, const T*, T*, T*);             \
  template void l2_normalize_backward<T>(int64_t, int64_t, const T*, const T*, const T*, T*);
MOCO_INSTANTIATE_L2(float)
MOCO_INSTANTIATE_L2(double)

}  // namespace moco::cpu

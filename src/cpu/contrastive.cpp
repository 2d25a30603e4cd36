// The contrastive head of the MoCo step: logits against the positive key and the queue, and the
// (K+1)-way cross-entropy with the positive at index 0.
#include <algorithm>
#include <cmath>

#include "moco/cpu_ops.h"

namespace moco::cpu {

template <class T>
void moco_logits_forward(int64_t n, int64_t c, int64_t k, const T* q, const T* key, const T* queue, T inv_t, T* logits) {
  for (int64_t i = 0; i < n; ++i) {
    const T* qi = q + i * c;
    T* row = logits + i * (1 + k);
    T pos = 0;
    for (int64_t j = 0; j < c; ++j) pos += qi[j] * key[i * c + j];
    row[0] = pos * inv_t;
    for (int64_t r = 0; r < k; ++r) {
      const T* e = queue + r * c;
      T acc = 0;
      for (int64_t j = 0; j < c; ++j) acc += qi[j] * e[j];
      row[1 + r] = acc * inv_t;
    }
  }
}

template <class T>
void moco_logits_backward(int64_t n, int64_t c, int64_t k, const T* dlogits, const T* key, const T* queue, T inv_t, T* dq) {
  for (int64_t i = 0; i < n; ++i) {
    const T* drow = dlogits + i * (1 + k);
    T* out = dq + i * c;
    for (int64_t j = 0; j < c; ++j) out[j] = drow[0] * key[i * c + j];
    for (int64_t r = 0; r < k; ++r) {
      T d = drow[1 + r];
      const T* e = queue + r * c;
      for (int64_t j = 0; j < c; ++j) out[j] += d * e[j];
    }
    for (int64_t j = 0; j < c; ++j) out[j] *= inv_t;
  }
}

template <class T>
T softmax_xent_label0(int64_t n, int64_t m, const T* logits, T* dlogits) {
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    const T* z = logits + i * m;
    double mx = z[0];
    for (int64_t j = 1; j < m; ++j) mx = std::max(mx, (double)z[j]);
    double sum = 0;
    for (int64_t j = 0; j < m; ++j) sum += std::exp((double)z[j] - mx);
    double lse = mx + std::log(sum);
    total += lse - z[0];
    if (dlogits)
      for (int64_t j = 0; j < m; ++j)
        dlogits[i * m + j] = (T)((std::exp((double)z[j] - lse) - (j == 0 ? 1.0 : 0.0)) / (double)n);
  }
  return (T)(total / (double)n);
}

template <class T>
int64_t count_label0_in_topk(int64_t n, int64_t m, const T* logits, int topk) {
  int64_t hits = 0;
  for (int64_t i = 0; i < n; ++i) {
    const T* z = logits + i * m;
    int64_t above = 0;  // entries strictly greater than the positive
    for (int64_t j = 1; j < m; ++j) above += z[j] > z[0];
    hits += above < topk;
  }
  return hits;
}

#define MOCO_INSTANTIATE_CONTRASTIVE(T)                                                                              \
  template void moco_logits_forward<T>(int64_t, int64_t, int64_t, const T*, const T*, const T*, T, T*);             \
  template void moco_logits_backward<T>(int64_t, int64_t, int64_t, const T*, const T*, const T*, T, T*);            \
  template T softmax_xent_label0<T>(int64_t, int64_t, const T*, T*);                                                \
  template int64_t count_label0_in_topk<T>(int64_t, int64_t, const T*, int);
MOCO_INSTANTIATE_CONTRASTIVE(float)
MOCO_INSTANTIATE_CONTRASTIVE(double)

}  // namespace moco::cpu

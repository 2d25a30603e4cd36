// The contrastive head of the MoCo step: logits against the positive key and the queue, and the
// (K+1)-way cross-entropy with the positive at index 0.
#include <algorithm>
#include <cmath>
#include <vector>

#include "moco/cpu_ops.h"
#include "moco/parallel.h"

namespace moco::cpu {

namespace {

// a . b in double, over four interleaved partial sums: one running sum is a chain of dependent adds that
// neither pipelines nor vectorises; four independent ones do both (the fused head spent most of its time
// here). The order is fixed, so the result does not depend on anything but the inputs.
template <class T>
double dot_double(const T* a, const T* b, int64_t c) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t j = 0;
  for (; j + 4 <= c; j += 4) {
    s0 += (double)a[j] * b[j];
    s1 += (double)a[j + 1] * b[j + 1];
    s2 += (double)a[j + 2] * b[j + 2];
    s3 += (double)a[j + 3] * b[j + 3];
  }
  for (; j < c; ++j) s0 += (double)a[j] * b[j];
  return (s0 + s1) + (s2 + s3);
}

}  // namespace

template <class T>
void moco_logits_forward(int64_t n, int64_t c, int64_t k, const T* q, const T* key, const T* queue, T inv_t, T* logits) {
  for (int64_t i = 0; i < n; ++i) {
    const T* qi = q + i * c;
    T* row = logits + i * (1 + k);
    row[0] = (T)(dot_double(qi, key + i * c, c) * inv_t);  // the same sums as the fused head below
    for (int64_t r = 0; r < k; ++r) row[1 + r] = (T)(dot_double(qi, queue + r * c, c) * inv_t);
  }
}

template <class T>
void moco_logits_backward(int64_t n, int64_t c, int64_t k, const T* dlogits, const T* key, const T* queue, T inv_t, T* dq) {
  std::vector<double> acc((size_t)c);  // (C) one row of dq, accumulated in double
  for (int64_t i = 0; i < n; ++i) {
    const T* drow = dlogits + i * (1 + k);
    for (int64_t j = 0; j < c; ++j) acc[j] = (double)drow[0] * key[i * c + j];
    for (int64_t r = 0; r < k; ++r) {
      const double d = drow[1 + r];
      const T* e = queue + r * c;
      for (int64_t j = 0; j < c; ++j) acc[j] += d * e[j];
    }
    for (int64_t j = 0; j < c; ++j) dq[i * c + j] = (T)(acc[j] * inv_t);
  }
}

template <class T>
T softmax_xent(int64_t n, int64_t m, const T* logits, const int64_t* labels, T* dlogits) {
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    const T* z = logits + i * m;
    const int64_t y = labels ? labels[i] : 0;
    double mx = z[0];
    for (int64_t j = 1; j < m; ++j) mx = std::max(mx, (double)z[j]);
    double sum = 0;
    for (int64_t j = 0; j < m; ++j) sum += std::exp((double)z[j] - mx);
    const double lse = mx + std::log(sum);
    total += lse - z[y];
    if (dlogits)
      for (int64_t j = 0; j < m; ++j)
        dlogits[i * m + j] = (T)((std::exp((double)z[j] - lse) - (j == y ? 1.0 : 0.0)) / (double)n);
  }
  return (T)(total / (double)n);
}

template <class T>
T softmax_xent_label0(int64_t n, int64_t m, const T* logits, T* dlogits) {
  return softmax_xent<T>(n, m, logits, nullptr, dlogits);
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

template <class T>
T contrastive_loss_forward_backward(int64_t n, int64_t c, int64_t k, const T* q, const T* key, const T* queue, T inv_t,
                                    T* dq, int64_t* hits1, int64_t* hits5) {
  const int64_t m = 1 + k;
  std::vector<double> row_loss((size_t)n);  // (N) summed in row order below, so threads do not change it
  std::vector<int64_t> row_above((size_t)n);  // (N) negatives scoring strictly higher than the positive
  parallel_range(n, 2, [&](int64_t i0, int64_t i1) {
    std::vector<double> z((size_t)m);    // (1+K) one row of logits
    std::vector<double> acc((size_t)c);  // (C) one row of dq
    for (int64_t i = i0; i < i1; ++i) {
      const T* qi = q + i * c;
      z[0] = dot_double(qi, key + i * c, c) * inv_t;
      for (int64_t r = 0; r < k; ++r) z[1 + r] = dot_double(qi, queue + r * c, c) * inv_t;
      double mx = z[0];
      int64_t above = 0;
      for (int64_t r = 1; r < m; ++r) {
        mx = std::max(mx, z[r]);
        above += z[r] > z[0];
      }
      row_above[(size_t)i] = above;
      const double z0 = z[0];
      double sum = 0;
      for (int64_t r = 0; r < m; ++r) {  // z becomes exp(z - max): each exponential is taken once
        z[r] = std::exp(z[r] - mx);
        sum += z[r];
      }
      const double lse = mx + std::log(sum);
      row_loss[(size_t)i] = lse - z0;
      // dloss/dz_r = (softmax_r - [r == 0]) / n; dq = inv_t * (dz_0 * key_i + sum_r dz_r * queue_r)
      const double scale = (double)inv_t / (double)n, inv_sum = 1.0 / sum;
      const double dz0 = z[0] * inv_sum - 1.0;
      for (int64_t j = 0; j < c; ++j) acc[j] = dz0 * key[i * c + j];
      for (int64_t r = 0; r < k; ++r) {
        const double dz = z[1 + r] * inv_sum;
        const T* e = queue + r * c;
        for (int64_t j = 0; j < c; ++j) acc[j] += dz * e[j];
      }
      for (int64_t j = 0; j < c; ++j) dq[i * c + j] = (T)(acc[j] * scale);
    }
  });
  double total = 0;
  int64_t h1 = 0, h5 = 0;
  for (int64_t i = 0; i < n; ++i) {
    total += row_loss[(size_t)i];
    h1 += row_above[(size_t)i] < 1;
    h5 += row_above[(size_t)i] < 5;
  }
  if (hits1) *hits1 = h1;
  if (hits5) *hits5 = h5;
  return (T)(total / (double)n);
}

#define MOCO_INSTANTIATE_CONTRASTIVE(T)                                                                              \
  template void moco_logits_forward<T>(int64_t, int64_t, int64_t, const T*, const T*, const T*, T, T*);             \
  template void moco_logits_backward<T>(int64_t, int64_t, int64_t, const T*, const T*, const T*, T, T*);            \
  template T softmax_xent<T>(int64_t, int64_t, const T*, const int64_t*, T*);                                      \
  template T softmax_xent_label0<T>(int64_t, int64_t, const T*, T*);                                                \
  template int64_t count_label0_in_topk<T>(int64_t, int64_t, const T*, int);                                      \
  template T contrastive_loss_forward_backward<T>(int64_t, int64_t, int64_t, const T*, const T*, const T*, T, T*,   \
                                                  int64_t*, int64_t*);
MOCO_INSTANTIATE_CONTRASTIVE(float)
MOCO_INSTANTIATE_CONTRASTIVE(double)

}  // namespace moco::cpu

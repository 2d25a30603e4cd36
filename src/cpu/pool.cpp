#include <cmath>
#include <limits>

#include "moco/cpu_ops.h"

namespace moco::cpu {

template <class T>
void maxpool_forward(const PoolShape& s, const T* x, T* y, int64_t* argmax) {
  const int64_t ho = s.ho(), wo = s.wo();
  for (int64_t p = 0; p < s.n * s.c; ++p) {
    const T* in = x + p * s.h * s.w;
    for (int64_t oy = 0; oy < ho; ++oy)
      for (int64_t ox = 0; ox < wo; ++ox) {
        T best = -std::numeric_limits<T>::infinity();
        int64_t best_i = -1;
        for (int64_t i = 0; i < s.k; ++i) {
          int64_t iy = oy * s.stride - s.pad + i;
          if (iy < 0 || iy >= s.h) continue;
          for (int64_t j = 0; j < s.k; ++j) {
            int64_t ix = ox * s.stride - s.pad + j;
            if (ix < 0 || ix >= s.w) continue;
            // strict '>' keeps the first maximum in scan order, and a NaN wins, as in torch
            if (best_i < 0 || in[iy * s.w + ix] > best || std::isnan(in[iy * s.w + ix])) {
              best = in[iy * s.w + ix];
              best_i = iy * s.w + ix;
            }
          }
        }
        y[(p * ho + oy) * wo + ox] = best;
        argmax[(p * ho + oy) * wo + ox] = best_i;
      }
  }
}

template <class T>
void maxpool_backward(const PoolShape& s, const int64_t* argmax, const T* dy, T* dx) {
  const int64_t plane_out = s.ho() * s.wo(), plane_in = s.h * s.w;
  for (int64_t i = 0; i < s.n * s.c * plane_in; ++i) dx[i] = T(0);
  for (int64_t p = 0; p < s.n * s.c; ++p)
    for (int64_t o = 0; o < plane_out; ++o) dx[p * plane_in + argmax[p * plane_out + o]] += dy[p * plane_out + o];
}

template <class T>
void avgpool_forward(int64_t n, int64_t c, int64_t hw, const T* x, T* y) {
  for (int64_t p = 0; p < n * c; ++p) {
    double acc = 0;
    for (int64_t i = 0; i < hw; ++i) acc += x[p * hw + i];
    y[p] = (T)(acc / (double)hw);
  }
}

template <class T>
void avgpool_backward(int64_t n, int64_t c, int64_t hw, const T* dy, T* dx) {
  for (int64_t p = 0; p < n * c; ++p)
    for (int64_t i = 0; i < hw; ++i) dx[p * hw + i] = dy[p] / T(hw);
}

#define MOCO_INSTANTIATE_POOL(T)                                                          \
  template void maxpool_forward<T>(const PoolShape&, const T*, T*, int64_t*);             \
  template void maxpool_backward<T>(const PoolShape&, const int64_t*, const T*, T*);      \
  template void avgpool_forward<T>(int64_t, int64_t, int64_t, const T*, T*);              \
  template void avgpool_backward<T>(int64_t, int64_t, int64_t, const T*, T*);
MOCO_INSTANTIATE_POOL(float)
MOCO_INSTANTIATE_POOL(double)

}  // namespace moco::cpu

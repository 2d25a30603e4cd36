#include "moco/cpu_ops.h"

namespace moco::cpu {

template <class T>
void linear_forward(int64_t n, int64_t in, int64_t out, const T* x, const T* w, const T* b, T* y) {
  gemm<T>(false, true, n, out, in, T(1), x, w, T(0), y);  // y = x W^T
  if (b)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t o = 0; o < out; ++o) y[i * out + o] += b[o];
}

template <class T>
void linear_backward(int64_t n, int64_t in, int64_t out, const T* x, const T* w, const T* dy, T* dx, T* dw, T* db) {
  if (dx) gemm<T>(false, false, n, in, out, T(1), dy, w, T(0), dx);  // dx = dy W
  if (dw) gemm<T>(true, false, out, in, n, T(1), dy, x, T(1), dw);   // dw += dy^T x
  if (db)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t o = 0; o < out; ++o) db[o] += dy[i * out + o];
}

#define MOCO_INSTANTIATE_LINEAR(T)                                                                 \
  template void linear_forward<T>(int64_t, int64_t, int64_t, const T*, const T*, const T*, T*);  \
  template void linear_backward<T>(int64_t, int64_t, int64_t, const T*, const T*, const T*, T*, T*, T*);
MOCO_INSTANTIATE_LINEAR(float)
MOCO_INSTANTIATE_LINEAR(double)

}  // namespace moco::cpu

#include "moco/cpu_ops.h"
#include "moco/parallel.h"

namespace moco::cpu {

// NaN passes through (NaN <= 0 is false), as in torch.relu: a NaN must reach the loss and stop the run,
// not be silently turned into zeros.
// Elementwise loops split across the pool above this many elements.
constexpr int64_t kGrain = 1 << 15;

template <class T> void relu_forward(int64_t n, const T* x, T* y) {
  parallel_range(n, kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = x[i] <= T(0) ? T(0) : x[i];
  });
}
template <class T> void relu_backward(int64_t n, const T* y, const T* dy, T* dx) {
  parallel_range(n, kGrain, [&](int64_t b, int64_t e) {
    // dy is read unconditionally: a load under the condition may not be if-converted (it could fault), and
    // the branch it leaves mispredicts on about half of a ReLU's outputs; as a select the loop vectorises.
    for (int64_t i = b; i < e; ++i) {
      const T g = dy[i];
      dx[i] = y[i] > T(0) ? g : T(0);
    }
  });
}
template <class T> void add_forward(int64_t n, const T* a, const T* b, T* y) {
  parallel_range(n, kGrain, [&](int64_t b0, int64_t e) {
    for (int64_t i = b0; i < e; ++i) y[i] = a[i] + b[i];
  });
}

#define MOCO_INSTANTIATE_POINTWISE(T)                               \
  template void relu_forward<T>(int64_t, const T*, T*);             \
  template void relu_backward<T>(int64_t, const T*, const T*, T*);  \
  template void add_forward<T>(int64_t, const T*, const T*, T*);
MOCO_INSTANTIATE_POINTWISE(float)
MOCO_INSTANTIATE_POINTWISE(double)

}  // namespace moco::cpu

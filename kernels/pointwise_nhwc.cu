// Elementwise leaf ops over flat activations (declared in nhwc_ops.cuh): ReLU forward and backward, add, and
// the dtype casts. Layout does not matter to them; they serve the channels-last network.
//
// What they compute (fp32 arithmetic, one rounding to the destination type on store):
//   relu_forward:  y = x <= 0 ? 0 : x            (a NaN propagates)   CPU: cpu::relu_forward
//   relu_backward: dx = y > 0 ? dy : 0           (from the output y)   CPU: cpu::relu_backward
//   add_forward:   y = a + b                                           CPU: cpu::add_forward
//   cast:          y = (Dst) x                                         CPU: a plain conversion (tests)
// Nothing is fused: the fused forms live in the BN kernels; these serve the places where an op stands alone.
// Memory-bound, so each thread moves one 16-byte vector of T per operand when every pointer is aligned
// (the cast moves 4 elements per thread), and a scalar loop finishes the tail. Outputs may alias inputs:
// every element is read and then written by the same thread, so no pointer is __restrict__.
#include "../src/cuda/check.h"
#include "nhwc_ops.cuh"
#include "vec_io.cuh"

namespace moco::kernels {

namespace {

constexpr int kThreads = 256;

struct Identity {
  __device__ float operator()(float v) const { return v; }
};
struct Relu {
  __device__ float operator()(float v) const { return v <= 0.f ? 0.f : v; }  // not fmaxf: NaN must survive
};
struct ReluBackward {
  __device__ float operator()(float y, float dy) const { return y > 0.f ? dy : 0.f; }
};
struct Add {
  __device__ float operator()(float a, float b) const { return a + b; }
};

// y[i] = op(x[i]) over n elements, V per vector step.
template <class Src, class Dst, int V, class Op>
__global__ void __launch_bounds__(kThreads) map1_kernel(int64_t n, const Src* x, Dst* y, Op op) {  // (n), (n)
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  const int64_t first = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t nv = n / V;
  for (int64_t i = first; i < nv; i += stride) {
    float v[V];
    vec::load<Src, V>(x + i * V, v);
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] = op(v[k]);
    vec::store<Dst, V>(y + i * V, v);
  }
  for (int64_t i = nv * V + first; i < n; i += stride) {  // the tail (empty when V == 1)
    float v[1];
    vec::load<Src, 1>(x + i, v);
    v[0] = op(v[0]);
    vec::store<Dst, 1>(y + i, v);
  }
}

// y[i] = op(a[i], b[i]) over n elements.
template <class T, int V, class Op>
__global__ void __launch_bounds__(kThreads) map2_kernel(int64_t n, const T* a, const T* b, T* y, Op op) {  // (n) each
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  const int64_t first = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t nv = n / V;
  for (int64_t i = first; i < nv; i += stride) {
    float va[V], vb[V];
    vec::load<T, V>(a + i * V, va);
    vec::load<T, V>(b + i * V, vb);
#pragma unroll
    for (int k = 0; k < V; ++k) va[k] = op(va[k], vb[k]);
    vec::store<T, V>(y + i * V, va);
  }
  for (int64_t i = nv * V + first; i < n; i += stride) {
    float va[1], vb[1];
    vec::load<T, 1>(a + i, va);
    vec::load<T, 1>(b + i, vb);
    va[0] = op(va[0], vb[0]);
    vec::store<T, 1>(y + i, va);
  }
}

// V elements per step when every pointer is aligned to V elements of its type, else 1.
template <int V, class Src, class Dst, class Op>
void map1(const char* who, int64_t n, const Src* x, Dst* y, Op op, cudaStream_t stream) {
  MOCO_CHECK(n >= 0, who, ": n=", n, " is negative");
  if (n == 0) return;
  MOCO_CHECK(x && y, who, ": x and y must be non-null");
  if (vec::aligned(x, V * (int64_t)sizeof(Src)) && vec::aligned(y, V * (int64_t)sizeof(Dst)))
    map1_kernel<Src, Dst, V, Op><<<vec::grid_for(n / V + 1, kThreads), kThreads, 0, stream>>>(n, x, y, op);
  else
    map1_kernel<Src, Dst, 1, Op><<<vec::grid_for(n, kThreads), kThreads, 0, stream>>>(n, x, y, op);
  MOCO_CUDA_CHECK_LAUNCH();
}

template <class T, class Op>
void map2(const char* who, int64_t n, const T* a, const T* b, T* y, Op op, cudaStream_t stream) {
  MOCO_CHECK(n >= 0, who, ": n=", n, " is negative");
  if (n == 0) return;
  MOCO_CHECK(a && b && y, who, ": inputs and output must be non-null");
  constexpr int V = vec::kVec16<T>;
  if (vec::aligned(a, 16) && vec::aligned(b, 16) && vec::aligned(y, 16))
    map2_kernel<T, V, Op><<<vec::grid_for(n / V + 1, kThreads), kThreads, 0, stream>>>(n, a, b, y, op);
  else
    map2_kernel<T, 1, Op><<<vec::grid_for(n, kThreads), kThreads, 0, stream>>>(n, a, b, y, op);
  MOCO_CUDA_CHECK_LAUNCH();
}

}  // namespace

template <class T>
void relu_forward(int64_t n, const T* x, T* y, cudaStream_t stream) {
  map1<vec::kVec16<T>>("relu_forward", n, x, y, Relu{}, stream);
}

template <class T>
void relu_backward(int64_t n, const T* y, const T* dy, T* dx, cudaStream_t stream) {
  map2("relu_backward", n, y, dy, dx, ReluBackward{}, stream);
}

template <class T>
void add_forward(int64_t n, const T* a, const T* b, T* y, cudaStream_t stream) {
  map2("add_forward", n, a, b, y, Add{}, stream);
}

template <class Src, class Dst>
void cast(int64_t n, const Src* x, Dst* y, cudaStream_t stream) {
  map1<4>("cast", n, x, y, Identity{}, stream);  // 4 elements: 16 bytes of float, 8 of bf16
}

#define MOCO_INSTANTIATE_POINTWISE_NHWC(T)                                               \
  template void relu_forward<T>(int64_t, const T*, T*, cudaStream_t);                   \
  template void relu_backward<T>(int64_t, const T*, const T*, T*, cudaStream_t);        \
  template void add_forward<T>(int64_t, const T*, const T*, T*, cudaStream_t);
MOCO_INSTANTIATE_POINTWISE_NHWC(float)
MOCO_INSTANTIATE_POINTWISE_NHWC(__nv_bfloat16)

template void cast<float, float>(int64_t, const float*, float*, cudaStream_t);
template void cast<float, __nv_bfloat16>(int64_t, const float*, __nv_bfloat16*, cudaStream_t);
template void cast<__nv_bfloat16, float>(int64_t, const __nv_bfloat16*, float*, cudaStream_t);
template void cast<__nv_bfloat16, __nv_bfloat16>(int64_t, const __nv_bfloat16*, __nv_bfloat16*, cudaStream_t);

}  // namespace moco::kernels

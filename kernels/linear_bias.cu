// The bias of a linear layer over rows (N, O) (declared in nhwc_ops.cuh).
//
// What it computes:
//   bias_add_forward: y[i, o] += bias[o]                (fp32 bias, the sum rounded once to T)
//   bias_backward:    db[o] += sum_i dy[i, o]           (fp32, accumulated)
// CPU reference: the bias terms of cpu::linear_forward / cpu::linear_backward (src/cpu/linear.cpp).
// Not fused into the GEMM: cuBLAS writes y, then one light pass adds the bias.
// bias_backward is deterministic: each thread sums a fixed set of rows of one column in fp32 and a fixed
// tree combines them; no atomics, so db is bit-identical from run to run.
#include "../src/cuda/check.h"
#include "nhwc_ops.cuh"
#include "vec_io.cuh"

namespace moco::kernels {

namespace {

constexpr int kThreads = 256;
constexpr int kColX = 32, kRowY = 8;  // bias_backward block: columns x lanes over rows

template <class T>
__global__ void __launch_bounds__(kThreads)
    bias_add_kernel(int64_t n, int64_t o, const float* __restrict__ bias,  // (O)
                    T* __restrict__ y) {                                 // (N, O)
  const int64_t total = n * o, stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride)
    y[i] = vec::from_f<T>(vec::to_f(y[i]) + bias[i % o]);
}

template <class T>
__global__ void __launch_bounds__(kColX* kRowY)
    bias_backward_kernel(int64_t n, int64_t o, const T* __restrict__ dy,  // (N, O)
                         float* __restrict__ db) {                       // (O), accumulated
  __shared__ float sh[kRowY][kColX];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t col = (int64_t)blockIdx.x * kColX + tx;
  float acc = 0.f;
  if (col < o)
    for (int64_t i = ty; i < n; i += kRowY) acc += vec::to_f(dy[i * o + col]);
  sh[ty][tx] = acc;
  for (int s = kRowY / 2; s > 0; s /= 2) {
    __syncthreads();
    if (ty < s) sh[ty][tx] += sh[ty + s][tx];
  }
  if (ty == 0 && col < o) db[col] += sh[0][tx];
}

}  // namespace

template <class T>
void bias_add_forward(int64_t n, int64_t o, const float* bias, T* y, cudaStream_t stream) {
  MOCO_CHECK(n >= 0 && o >= 1, "bias_add_forward: need N >= 0, O >= 1, got N=", n, " O=", o);
  if (n == 0) return;
  MOCO_CHECK(bias && y, "bias_add_forward: bias and y must be non-null");
  bias_add_kernel<T><<<vec::grid_for(n * o, kThreads), kThreads, 0, stream>>>(n, o, bias, y);
  MOCO_CUDA_CHECK_LAUNCH();
}

template <class T>
void bias_backward(int64_t n, int64_t o, const T* dy, float* db, cudaStream_t stream) {
  MOCO_CHECK(n >= 0 && o >= 1, "bias_backward: need N >= 0, O >= 1, got N=", n, " O=", o);
  if (n == 0) return;  // db += 0
  MOCO_CHECK(dy && db, "bias_backward: dy and db must be non-null");
  const int64_t blocks = (o + kColX - 1) / kColX;
  MOCO_CHECK(blocks <= INT32_MAX, "bias_backward: O=", o, " exceeds the grid");
  bias_backward_kernel<T><<<(unsigned)blocks, dim3(kColX, kRowY), 0, stream>>>(n, o, dy, db);
  MOCO_CUDA_CHECK_LAUNCH();
}

#define MOCO_INSTANTIATE_BIAS(T)                                                             \
  template void bias_add_forward<T>(int64_t, int64_t, const float*, T*, cudaStream_t);      \
  template void bias_backward<T>(int64_t, int64_t, const T*, float*, cudaStream_t);
MOCO_INSTANTIATE_BIAS(float)
MOCO_INSTANTIATE_BIAS(__nv_bfloat16)

}  // namespace moco::kernels

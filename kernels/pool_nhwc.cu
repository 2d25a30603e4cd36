// Pooling over channels-last activations (declared in nhwc_ops.cuh): the stem's 3x3 / stride 2 / padding 1
// max-pool with its argmax, and the global average pool before the head, each with its backward.
//
// What they compute:
//   maxpool3x3s2_forward:  y[n, oy, ox, c] = max over the window rows 2oy-1..2oy+1, cols 2ox-1..2ox+1 (inside
//                          the image; padding never wins); argmax = the winner's place in the window,
//                          (iy - 2oy + 1) * 3 + (ix - 2ox + 1), scanning the window row-major and replacing
//                          on a strictly greater value or on a NaN (so the first maximum wins, and a NaN
//                          wins; among several NaNs the last one, exactly like the CPU reference and torch).
//                          A byte: a quarter of the int32 position's traffic and memory (205 MB at batch 256
//                          became 51 MB); none at all without a backward to come (the key encoder).
//   maxpool3x3s2_backward: dx[n, iy, ix, c] = sum of dy over the (at most 2 x 2) windows that contain (iy, ix)
//                          and chose it, summed in row-major window order; a gather, so no zero-fill and no
//                          atomics, and the order equals the CPU's scatter order (bit-identical in fp32).
//   global_avgpool_forward:  y[n, c] = sum_p x[n, p, c] / HW (fp32, fixed-order tree: deterministic)
//   global_avgpool_backward: dx[n, p, c] = dy[n, c] / HW
// CPU references: cpu::maxpool_forward / _backward and cpu::avgpool_forward / _backward (src/cpu/pool.cpp,
// NCHW, with the same argmax convention).
// One thread per output element with C innermost: a warp covers consecutive channels, so every access is
// coalesced without a channel-vector path. The max-pool's index arithmetic runs in 32 bits whenever every
// index fits (the stem's at batch 256: 205M input elements): a 64-bit division is a long software routine on
// the GPU, and each element needed six.
#include <cmath>

#include "../src/cuda/check.h"
#include "nhwc_ops.cuh"
#include "vec_io.cuh"

namespace moco::kernels {

namespace {

constexpr int kThreads = 256;
constexpr int kColX = 32, kRowY = 8;  // avgpool block: channels x lanes over positions

// Four blocks an SM (at most 64 registers, far above what it needs): unbounded, ptxas spilled 48 bytes of the
// fp32 64-bit-index variant at 32 registers.
template <class T, class I>
__global__ void __launch_bounds__(kThreads, 4)
    maxpool_forward_kernel(I n, I h, I w, I c, I ho, I wo,
                           const T* __restrict__ x,              // (N, H, W, C)
                           T* __restrict__ y,                    // (N, Ho, Wo, C)
                           uint8_t* __restrict__ argmax) {       // (N, Ho, Wo, C) or null
  const I total = n * ho * wo * c, stride = (I)gridDim.x * blockDim.x;
  for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
    const I ch = i % c;
    I t = i / c;
    const I ox = t % wo;
    t /= wo;
    const I oy = t % ho, img = t / ho;
    const T* plane = x + img * h * w * c + ch;
    float best = -INFINITY;
    int best_k = -1;  // the winner's place in the window, 0..8
    for (I iy = 2 * oy - 1; iy <= 2 * oy + 1; ++iy) {
      if (iy < 0 || iy >= h) continue;
      for (I ix = 2 * ox - 1; ix <= 2 * ox + 1; ++ix) {
        if (ix < 0 || ix >= w) continue;
        const float v = vec::to_f(plane[(iy * w + ix) * c]);
        if (best_k < 0 || v > best || isnan(v)) {
          best = v;
          best_k = (int)(iy - 2 * oy + 1) * 3 + (int)(ix - 2 * ox + 1);
        }
      }
    }
    y[i] = vec::from_f<T>(best);
    if (argmax) argmax[i] = (uint8_t)best_k;
  }
}

template <class T, class I>
__global__ void __launch_bounds__(kThreads)
    maxpool_backward_kernel(I n, I h, I w, I c, I ho, I wo,
                            const uint8_t* __restrict__ argmax,  // (N, Ho, Wo, C)
                            const T* __restrict__ dy,            // (N, Ho, Wo, C)
                            T* __restrict__ dx) {                // (N, H, W, C)
  const I total = n * h * w * c, stride = (I)gridDim.x * blockDim.x;
  for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
    const I ch = i % c;
    I t = i / c;
    const I ix = t % w;
    t /= w;
    const I iy = t % h, img = t / h;
    // windows oy with 2oy - 1 <= iy <= 2oy + 1: oy in [iy / 2, (iy + 1) / 2], clipped to the output
    const I oy1 = min((iy + 1) / 2, ho - 1), ox1 = min((ix + 1) / 2, wo - 1);
    float acc = 0.f;
    for (I oy = iy / 2; oy <= oy1; ++oy)
      for (I ox = ix / 2; ox <= ox1; ++ox) {
        const I o = ((img * ho + oy) * wo + ox) * c + ch;
        const int k = (int)(iy - 2 * oy + 1) * 3 + (int)(ix - 2 * ox + 1);  // this input's place in window o
        if (argmax[o] == k) acc += vec::to_f(dy[o]);
      }
    dx[i] = vec::from_f<T>(acc);
  }
}

template <class T>
__global__ void __launch_bounds__(kColX* kRowY)
    avgpool_forward_kernel(int64_t n, int64_t hw, int64_t c,
                           const T* __restrict__ x,  // (N, HW, C)
                           T* __restrict__ y) {      // (N, C)
  __shared__ float sh[kRowY][kColX];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t ch = (int64_t)blockIdx.x * kColX + tx;
  for (int64_t img = blockIdx.y; img < n; img += gridDim.y) {  // uniform over the block: barriers are safe
    float acc = 0.f;
    if (ch < c)
      for (int64_t p = ty; p < hw; p += kRowY) acc += vec::to_f(x[(img * hw + p) * c + ch]);
    sh[ty][tx] = acc;
    for (int s = kRowY / 2; s > 0; s /= 2) {
      __syncthreads();
      if (ty < s) sh[ty][tx] += sh[ty + s][tx];
    }
    if (ty == 0 && ch < c) y[img * c + ch] = vec::from_f<T>(sh[0][tx] / (float)hw);
    __syncthreads();  // sh is reused by the next image
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    avgpool_backward_kernel(int64_t n, int64_t hw, int64_t c,
                            const T* __restrict__ dy,  // (N, C)
                            T* __restrict__ dx) {      // (N, HW, C)
  const int64_t total = n * hw * c, stride = (int64_t)gridDim.x * blockDim.x;
  const float den = (float)hw;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride)
    dx[i] = vec::from_f<T>(vec::to_f(dy[(i / (hw * c)) * c + i % c]) / den);  // divide, as the CPU does
}

// Whether every flat index of a max-pool over `elements` input elements (the larger side), and the grid-stride
// loop's last step past them, fit an int32.
bool fits_int32(int64_t elements, unsigned blocks) {
  return elements + (int64_t)blocks * kThreads <= (int64_t)INT32_MAX;
}

void check_pool_shape(const char* who, int64_t n, int64_t h, int64_t w, int64_t c) {
  MOCO_CHECK(n >= 0 && h >= 1 && w >= 1 && c >= 1, who, ": need N >= 0, H, W, C >= 1, got N=", n, " H=", h,
             " W=", w, " C=", c);
}

}  // namespace

template <class T>
void maxpool3x3s2_forward(int64_t n, int64_t h, int64_t w, int64_t c, const T* x, T* y, uint8_t* argmax,
                          cudaStream_t stream) {
  check_pool_shape("maxpool3x3s2_forward", n, h, w, c);
  if (n == 0) return;
  MOCO_CHECK(x && y, "maxpool3x3s2_forward: x and y must be non-null");
  const int64_t ho = (h - 1) / 2 + 1, wo = (w - 1) / 2 + 1;
  const unsigned blocks = vec::grid_for(n * ho * wo * c, kThreads);
  if (fits_int32(n * h * w * c, blocks))
    maxpool_forward_kernel<T, int32_t><<<blocks, kThreads, 0, stream>>>((int32_t)n, (int32_t)h, (int32_t)w,
                                                                        (int32_t)c, (int32_t)ho, (int32_t)wo, x, y,
                                                                        argmax);
  else
    maxpool_forward_kernel<T, int64_t><<<blocks, kThreads, 0, stream>>>(n, h, w, c, ho, wo, x, y, argmax);
  MOCO_CUDA_CHECK_LAUNCH();
}

template <class T>
void maxpool3x3s2_backward(int64_t n, int64_t h, int64_t w, int64_t c, const uint8_t* argmax, const T* dy, T* dx,
                           cudaStream_t stream) {
  check_pool_shape("maxpool3x3s2_backward", n, h, w, c);
  if (n == 0) return;
  MOCO_CHECK(argmax && dy && dx, "maxpool3x3s2_backward: argmax, dy and dx must be non-null");
  const int64_t ho = (h - 1) / 2 + 1, wo = (w - 1) / 2 + 1;
  const unsigned blocks = vec::grid_for(n * h * w * c, kThreads);
  if (fits_int32(n * h * w * c, blocks))
    maxpool_backward_kernel<T, int32_t><<<blocks, kThreads, 0, stream>>>((int32_t)n, (int32_t)h, (int32_t)w,
                                                                         (int32_t)c, (int32_t)ho, (int32_t)wo, argmax,
                                                                         dy, dx);
  else
    maxpool_backward_kernel<T, int64_t><<<blocks, kThreads, 0, stream>>>(n, h, w, c, ho, wo, argmax, dy, dx);
  MOCO_CUDA_CHECK_LAUNCH();
}

template <class T>
void global_avgpool_forward(int64_t n, int64_t hw, int64_t c, const T* x, T* y, cudaStream_t stream) {
  MOCO_CHECK(n >= 0 && hw >= 1 && c >= 1, "global_avgpool_forward: need N >= 0, HW, C >= 1, got N=", n, " HW=", hw,
             " C=", c);
  if (n == 0) return;
  MOCO_CHECK(x && y, "global_avgpool_forward: x and y must be non-null");
  const int64_t tiles = (c + kColX - 1) / kColX;
  MOCO_CHECK(tiles <= INT32_MAX, "global_avgpool_forward: C=", c, " exceeds the grid");
  const dim3 grid((unsigned)tiles, (unsigned)(n < 65535 ? n : 65535));
  avgpool_forward_kernel<T><<<grid, dim3(kColX, kRowY), 0, stream>>>(n, hw, c, x, y);
  MOCO_CUDA_CHECK_LAUNCH();
}

template <class T>
void global_avgpool_backward(int64_t n, int64_t hw, int64_t c, const T* dy, T* dx, cudaStream_t stream) {
  MOCO_CHECK(n >= 0 && hw >= 1 && c >= 1, "global_avgpool_backward: need N >= 0, HW, C >= 1, got N=", n, " HW=", hw,
             " C=", c);
  if (n == 0) return;
  MOCO_CHECK(dy && dx, "global_avgpool_backward: dy and dx must be non-null");
  avgpool_backward_kernel<T><<<vec::grid_for(n * hw * c, kThreads), kThreads, 0, stream>>>(n, hw, c, dy, dx);
  MOCO_CUDA_CHECK_LAUNCH();
}

#define MOCO_INSTANTIATE_POOL_NHWC(T)                                                                             \
  template void maxpool3x3s2_forward<T>(int64_t, int64_t, int64_t, int64_t, const T*, T*, uint8_t*, cudaStream_t); \
  template void maxpool3x3s2_backward<T>(int64_t, int64_t, int64_t, int64_t, const uint8_t*, const T*, T*,         \
                                         cudaStream_t);                                                            \
  template void global_avgpool_forward<T>(int64_t, int64_t, int64_t, const T*, T*, cudaStream_t);                 \
  template void global_avgpool_backward<T>(int64_t, int64_t, int64_t, const T*, T*, cudaStream_t);
MOCO_INSTANTIATE_POOL_NHWC(float)
MOCO_INSTANTIATE_POOL_NHWC(__nv_bfloat16)

}  // namespace moco::kernels

// Layout conversions at the network's edges (declared in nhwc_ops.cuh):
//   nchw_to_nhwc: x (N, C, HW) fp32 -> y (N, HW, C) of T (rounded once): the loader's images into the network
//   nhwc_to_nchw: x (N, HW, C) of T -> y (N, C, HW) fp32 (exact): activations back to the CPU layout
// CPU reference: the plain index permutation (done on the host in the tests).
// Each image is a (C, HW) <-> (HW, C) transpose, done in 32 x 32 tiles through shared memory so that both
// the read and the write are coalesced (the 33-float row pitch keeps the column reads free of bank conflicts).
#include "../src/cuda/check.h"
#include "nhwc_ops.cuh"
#include "vec_io.cuh"

namespace moco::kernels {

namespace {

constexpr int kTile = 32, kRows = 8;  // tile edge; block = kTile x kRows threads, each moving kTile / kRows values

// grid (HW tiles, C tiles, images, strided); tile[cc][pp] holds x[img, c0 + cc, p0 + pp]
template <class T>
__global__ void __launch_bounds__(kTile* kRows)
    nchw_to_nhwc_kernel(int64_t n, int64_t c, int64_t hw,
                        const float* __restrict__ x,  // (N, C, HW)
                        T* __restrict__ y) {          // (N, HW, C)
  __shared__ float tile[kTile][kTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t p0 = (int64_t)blockIdx.x * kTile, c0 = (int64_t)blockIdx.y * kTile;
  for (int64_t img = blockIdx.z; img < n; img += gridDim.z) {
    for (int j = ty; j < kTile; j += kRows)
      if (c0 + j < c && p0 + tx < hw) tile[j][tx] = x[(img * c + c0 + j) * hw + p0 + tx];
    __syncthreads();
    for (int j = ty; j < kTile; j += kRows)
      if (p0 + j < hw && c0 + tx < c) y[(img * hw + p0 + j) * c + c0 + tx] = vec::from_f<T>(tile[tx][j]);
    __syncthreads();  // the tile is reused by the next image
  }
}

// grid (C tiles, HW tiles, images, strided); tile[pp][cc] holds x[img, p0 + pp, c0 + cc]
template <class T>
__global__ void __launch_bounds__(kTile* kRows)
    nhwc_to_nchw_kernel(int64_t n, int64_t c, int64_t hw,
                        const T* __restrict__ x,  // (N, HW, C)
                        float* __restrict__ y) {  // (N, C, HW)
  __shared__ float tile[kTile][kTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c0 = (int64_t)blockIdx.x * kTile, p0 = (int64_t)blockIdx.y * kTile;
  for (int64_t img = blockIdx.z; img < n; img += gridDim.z) {
    for (int j = ty; j < kTile; j += kRows)
      if (p0 + j < hw && c0 + tx < c) tile[j][tx] = vec::to_f(x[(img * hw + p0 + j) * c + c0 + tx]);
    __syncthreads();
    for (int j = ty; j < kTile; j += kRows)
      if (c0 + j < c && p0 + tx < hw) y[(img * c + c0 + j) * hw + p0 + tx] = tile[tx][j];
    __syncthreads();
  }
}

// (tiles along the contiguous input axis, tiles along the other, images)
dim3 transpose_grid(const char* who, int64_t fast, int64_t slow, int64_t n) {
  const int64_t gx = (fast + kTile - 1) / kTile, gy = (slow + kTile - 1) / kTile;
  MOCO_CHECK(gx <= INT32_MAX && gy <= 65535, who, ": a (", slow, ", ", fast, ") plane exceeds the grid");
  return dim3((unsigned)gx, (unsigned)gy, (unsigned)(n < 65535 ? n : 65535));
}

void check_shape(const char* who, int64_t n, int64_t c, int64_t hw) {
  MOCO_CHECK(n >= 0 && c >= 1 && hw >= 1, who, ": need N >= 0, C, HW >= 1, got N=", n, " C=", c, " HW=", hw);
}

}  // namespace

template <class T>
void nchw_to_nhwc(int64_t n, int64_t c, int64_t hw, const float* x, T* y, cudaStream_t stream) {
  check_shape("nchw_to_nhwc", n, c, hw);
  if (n == 0) return;
  MOCO_CHECK(x && y, "nchw_to_nhwc: x and y must be non-null");
  nchw_to_nhwc_kernel<T><<<transpose_grid("nchw_to_nhwc", hw, c, n), dim3(kTile, kRows), 0, stream>>>(n, c, hw, x, y);
  MOCO_CUDA_CHECK_LAUNCH();
}

template <class T>
void nhwc_to_nchw(int64_t n, int64_t c, int64_t hw, const T* x, float* y, cudaStream_t stream) {
  check_shape("nhwc_to_nchw", n, c, hw);
  if (n == 0) return;
  MOCO_CHECK(x && y, "nhwc_to_nchw: x and y must be non-null");
  nhwc_to_nchw_kernel<T><<<transpose_grid("nhwc_to_nchw", c, hw, n), dim3(kTile, kRows), 0, stream>>>(n, c, hw, x, y);
  MOCO_CUDA_CHECK_LAUNCH();
}

template void nchw_to_nhwc<float>(int64_t, int64_t, int64_t, const float*, float*, cudaStream_t);
template void nchw_to_nhwc<__nv_bfloat16>(int64_t, int64_t, int64_t, const float*, __nv_bfloat16*, cudaStream_t);
template void nhwc_to_nchw<float>(int64_t, int64_t, int64_t, const float*, float*, cudaStream_t);
template void nhwc_to_nchw<__nv_bfloat16>(int64_t, int64_t, int64_t, const __nv_bfloat16*, float*, cudaStream_t);

}  // namespace moco::kernels

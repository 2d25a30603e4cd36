// The 2x2 space-to-depth transforms of a stride-2 stem convolution: its input, its filter, and its filter
// gradient mapped back (the identity and the layouts are in stem_space_to_depth.cuh).
//
// What it computes: z[n, Y, X, (by * 2 + bx) * Ci + c] = x[n, 2Y + by - p, 2X + bx - p, c] (0 outside x and
// in channels >= 4 Ci); w2[o, a, b, (by * 2 + bx) * Ci + c] = w[o, 2a + by, 2b + bx, c] (0 past the kernel);
// dw = dw2 read back at the same places. Nothing is fused: each is one pass of copies.
// CPU reference: cpu::conv2d_forward / conv2d_backward (the transformed convolution must give their sums;
// tests/gpu/test_convolution.cpp checks the whole stem form against them).
//
// Values are copied as bits (U: uint16_t for bf16, uint32_t for fp32), so the transforms are exact.
#include <type_traits>

#include "../src/cuda/check.h"
#include "stem_space_to_depth.cuh"
#include "vec_io.cuh"

namespace moco::kernels {

namespace {

constexpr int kThreads = 256;
constexpr int kZ = (int)kSpaceToDepthChannels;

// One thread per z pixel: its 16 channels gathered from a 2x2 block of x pixels into registers (CI a template
// parameter, so every index is static and nothing goes to local memory), then stored as 16-byte vectors
// (a pixel is 32 bytes in bf16, 64 in fp32, and z starts 16-byte aligned).
template <class U, int CI>
__global__ void __launch_bounds__(kThreads)
    input_kernel(int64_t pixels, int64_t h, int64_t w, int64_t pad, int64_t h_read, int64_t w_read, int64_t hz,
                 int64_t wz, const U* __restrict__ x,  // (N, H, W, CI)
                 U* __restrict__ z) {      // (N, Hz, Wz, 16)
  static_assert(std::is_same_v<U, uint16_t> || std::is_same_v<U, uint32_t>, "U holds a bf16 or an fp32");
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < pixels; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t xo = i % wz, t = i / wz, yo = t % hz, n = t / hz;
    U v[kZ];  // z's 16 channels of this pixel
#pragma unroll
    for (int q = 0; q < kZ; ++q) v[q] = 0;
#pragma unroll
    for (int by = 0; by < 2; ++by) {
      const int64_t iy = 2 * yo + by - pad;
      if (iy < 0 || iy >= h_read) continue;
#pragma unroll
      for (int bx = 0; bx < 2; ++bx) {
        const int64_t ix = 2 * xo + bx - pad;
        if (ix < 0 || ix >= w_read) continue;
        const U* src = x + ((n * h + iy) * w + ix) * CI;
#pragma unroll
        for (int c = 0; c < CI; ++c) v[(by * 2 + bx) * CI + c] = src[c];
      }
    }
    uint4* dst = reinterpret_cast<uint4*>(z + i * kZ);
    if constexpr (std::is_same_v<U, uint16_t>) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const U* q = v + 8 * j;
        dst[j] = make_uint4((uint32_t)q[0] | ((uint32_t)q[1] << 16), (uint32_t)q[2] | ((uint32_t)q[3] << 16),
                            (uint32_t)q[4] | ((uint32_t)q[5] << 16), (uint32_t)q[6] | ((uint32_t)q[7] << 16));
      }
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j) dst[j] = make_uint4(v[4 * j], v[4 * j + 1], v[4 * j + 2], v[4 * j + 3]);
    }
  }
}

// One thread per w2 element.
template <class U>
__global__ void weight_kernel(int64_t total, int64_t kh, int64_t kw, int64_t kh2, int64_t kw2, int64_t ci,
                              const U* __restrict__ w,  // (Co, kh, kw, Ci)
                              U* __restrict__ w2) {     // (Co, kh2, kw2, 16)
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t q = i % kZ, b = (i / kZ) % kw2, a = (i / kZ / kw2) % kh2, o = i / (kZ * kw2 * kh2);
    U v = 0;
    if (q < 4 * ci) {
      const int64_t quad = q / ci, c = q % ci, ky = 2 * a + quad / 2, kx = 2 * b + quad % 2;
      if (ky < kh && kx < kw) v = w[((o * kh + ky) * kw + kx) * ci + c];
    }
    w2[i] = v;
  }
}

// One thread per dw element.
template <class U>
__global__ void weight_grad_kernel(int64_t total, int64_t kh, int64_t kw, int64_t kh2, int64_t kw2, int64_t ci,
                                   const U* __restrict__ dw2,  // (Co, kh2, kw2, 16)
                                   U* __restrict__ dw) {       // (Co, kh, kw, Ci)
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t c = i % ci, kx = (i / ci) % kw, ky = (i / ci / kw) % kh, o = i / (ci * kw * kh);
    dw[i] = dw2[((o * kh2 + ky / 2) * kw2 + kx / 2) * kZ + ((ky % 2) * 2 + kx % 2) * ci + c];
  }
}

void check_elem(const char* who, size_t elem) {
  MOCO_CHECK(elem == 2 || elem == 4, who, ": element size ", elem, " bytes is not bf16 (2) or fp32 (4)");
}

// The filter transforms' arguments: a filter (Co, kh, kw, Ci) with Ci that fits 16 channels, and both pointers.
void check_filter(const char* who, size_t elem, int64_t co, int64_t kh, int64_t kw, int64_t ci, const void* from,
                  const void* to) {
  check_elem(who, elem);
  MOCO_CHECK(co >= 1 && kh >= 1 && kw >= 1 && ci >= 1 && ci <= kSpaceToDepthMaxCi && from && to, who,
             ": need Co, kh, kw >= 1, 1 <= Ci <= ", kSpaceToDepthMaxCi, " and non-null pointers, got Co=", co,
             " kh=", kh, " kw=", kw, " Ci=", ci);
}

template <class U>
void launch_input(int64_t n, int64_t h, int64_t w, int64_t ci, int64_t pad, int64_t h_read, int64_t w_read,
                  int64_t hz, int64_t wz, const void* x, void* z, cudaStream_t stream) {
  const int64_t pixels = n * hz * wz;
  const unsigned grid = vec::grid_for(pixels, kThreads);
  const U* xs = static_cast<const U*>(x);
  U* zs = static_cast<U*>(z);
  auto launch = [&](auto kernel) {
    kernel<<<grid, kThreads, 0, stream>>>(pixels, h, w, pad, h_read, w_read, hz, wz, xs, zs);
  };
  switch (ci) {
    case 1: launch(input_kernel<U, 1>); break;
    case 2: launch(input_kernel<U, 2>); break;
    case 3: launch(input_kernel<U, 3>); break;
    default: launch(input_kernel<U, 4>); break;
  }
  MOCO_CUDA_CHECK_LAUNCH();
}

}  // namespace

void space_to_depth_input(int64_t n, int64_t h, int64_t w, int64_t ci, int64_t pad, int64_t h_read, int64_t w_read,
                          int64_t hz, int64_t wz, size_t elem, const void* x, void* z, cudaStream_t stream) {
  const char* who = "space_to_depth_input";
  check_elem(who, elem);
  MOCO_CHECK(n >= 1 && h >= 1 && w >= 1 && hz >= 1 && wz >= 1 && pad >= 0, who, ": need N, H, W, Hz, Wz >= 1 and "
             "pad >= 0, got N=", n, " H=", h, " W=", w, " Hz=", hz, " Wz=", wz, " pad=", pad);
  MOCO_CHECK(ci >= 1 && ci <= kSpaceToDepthMaxCi, who, ": Ci=", ci, " does not fit 16 channels (expected 1 to ",
             kSpaceToDepthMaxCi, ")");
  MOCO_CHECK(h_read >= 0 && h_read <= h && w_read >= 0 && w_read <= w, who, ": the rows and columns read, ",
             h_read, " x ", w_read, ", must lie within x's ", h, " x ", w);
  MOCO_CHECK(x && z && vec::aligned(z, 16), who, ": x (", x, ") must be non-null and z (", z,
             ") non-null and 16-byte aligned");
  if (elem == 2)
    launch_input<uint16_t>(n, h, w, ci, pad, h_read, w_read, hz, wz, x, z, stream);
  else
    launch_input<uint32_t>(n, h, w, ci, pad, h_read, w_read, hz, wz, x, z, stream);
}

void space_to_depth_weight(int64_t co, int64_t kh, int64_t kw, int64_t ci, size_t elem, const void* w, void* w2,
                           cudaStream_t stream) {
  check_filter("space_to_depth_weight", elem, co, kh, kw, ci, w, w2);
  const int64_t kh2 = (kh + 1) / 2, kw2 = (kw + 1) / 2, total = co * kh2 * kw2 * kZ;
  const unsigned grid = vec::grid_for(total, kThreads);
  if (elem == 2)
    weight_kernel<uint16_t><<<grid, kThreads, 0, stream>>>(total, kh, kw, kh2, kw2, ci, static_cast<const uint16_t*>(w),
                                                           static_cast<uint16_t*>(w2));
  else
    weight_kernel<uint32_t><<<grid, kThreads, 0, stream>>>(total, kh, kw, kh2, kw2, ci, static_cast<const uint32_t*>(w),
                                                           static_cast<uint32_t*>(w2));
  MOCO_CUDA_CHECK_LAUNCH();
}

void space_to_depth_weight_grad(int64_t co, int64_t kh, int64_t kw, int64_t ci, size_t elem, const void* dw2,
                                void* dw, cudaStream_t stream) {
  check_filter("space_to_depth_weight_grad", elem, co, kh, kw, ci, dw2, dw);
  const int64_t kh2 = (kh + 1) / 2, kw2 = (kw + 1) / 2, total = co * kh * kw * ci;
  const unsigned grid = vec::grid_for(total, kThreads);
  if (elem == 2)
    weight_grad_kernel<uint16_t><<<grid, kThreads, 0, stream>>>(total, kh, kw, kh2, kw2, ci,
                                                                static_cast<const uint16_t*>(dw2),
                                                                static_cast<uint16_t*>(dw));
  else
    weight_grad_kernel<uint32_t><<<grid, kThreads, 0, stream>>>(total, kh, kw, kh2, kw2, ci,
                                                                static_cast<const uint32_t*>(dw2),
                                                                static_cast<uint32_t*>(dw));
  MOCO_CUDA_CHECK_LAUNCH();
}

}  // namespace moco::kernels

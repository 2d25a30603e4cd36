// Launchers for a stride-2 convolution with few input channels (the ResNet stem) run as a stride-1 one over
// a 2x2 space-to-depth input (raw pointers and sizes only; no Tensor). Convolutions uses them for its
// space-to-depth stem form (src/cuda/convolution_stem.cpp).
//
// The identity. A stride-2 convolution with kernel (kh, kw) and padding p over x (N, H, W, Ci) is the
// stride-1, unpadded convolution with kernel (kh2, kw2) = (ceil(kh / 2), ceil(kw / 2)) over z (N, Hz, Wz, 16):
//   z[n, Y, X, (by * 2 + bx) * Ci + c] = x[n, 2Y + by - p, 2X + bx - p, c]  (0 outside x; channels >= 4 Ci: 0)
//   w2[o, a, b, (by * 2 + bx) * Ci + c] = w[o, 2a + by, 2b + bx, c]        (0 where 2a + by >= kh or 2b + bx >= kw)
// with Hz = Ho + kh2 - 1 and Wz = Wo + kw2 - 1. Output row oy reads x rows 2 oy + ky - p, ky < kh, which are
// z's rows oy + ky / 2, sub-row ky % 2: every product of the direct convolution appears exactly once, and the
// others multiply a zero. The filter gradient maps back the same way, dw[o, ky, kx, c] = dw2[o, ky / 2,
// kx / 2, ((ky % 2) * 2 + kx % 2) * Ci + c]. Only the order of the fp32 sums differs from the direct form.
// CPU reference: cpu::conv2d_forward and cpu::conv2d_backward's dw on x and w (tests/gpu/test_convolution.cpp
// holds the whole path, these transforms and cuDNN's stride-1 convolution, against them).
//
// Layouts are channels-last, as Convolutions takes them: x (N, H, W, Ci), w (Co, kh, kw, Ci). elem is the
// element size, 2 (bf16) or 4 (fp32): the transforms only move values, so they copy bits.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace moco::kernels {

constexpr int64_t kSpaceToDepthChannels = 16;  // z's channels: 4 Ci (Ci <= 4), zero-padded to 16
constexpr int64_t kSpaceToDepthMaxCi = kSpaceToDepthChannels / 4;

// z (N, Hz, Wz, 16) from x (N, H, W, Ci), 1 <= Ci <= 4. z must not overlap x. Only x's first h_read rows and
// w_read columns are copied, the rest count as zeros: the direct convolution never reads them, and z would put
// them against a zero weight, where an Inf or NaN would still make a NaN.
void space_to_depth_input(int64_t n, int64_t h, int64_t w, int64_t ci, int64_t pad, int64_t h_read, int64_t w_read,
                          int64_t hz, int64_t wz, size_t elem, const void* x, void* z, cudaStream_t stream);
// w2 (Co, kh2, kw2, 16) from w (Co, kh, kw, Ci).
void space_to_depth_weight(int64_t co, int64_t kh, int64_t kw, int64_t ci, size_t elem, const void* w, void* w2,
                           cudaStream_t stream);
// dw (Co, kh, kw, Ci) from dw2 (Co, kh2, kw2, 16): overwrites dw; the entries of dw2 that multiplied a
// structural zero of w2 are dropped.
void space_to_depth_weight_grad(int64_t co, int64_t kh, int64_t kw, int64_t ci, size_t elem, const void* dw2,
                                void* dw, cudaStream_t stream);

}  // namespace moco::kernels

// Convolution as im2col + GEMM, the reference: doubles always, floats when the build has no oneDNN or
// MOCO_CONV=im2col (conv_onednn.cpp takes floats otherwise); a 1x1 stride-1 convolution without padding (ResNet-50's conv1 and conv3 of
// every bottleneck) needs no im2col at all: its "columns" are the input image itself. The receptive fields of a chunk of g images sit side by side in col
// (Ci*kh*kw, g*Ho*Wo); each image's GEMM reads its column block (leading dimension g*P) and writes its
// output, or reads its dy, in place in the (N, C, H, W) tensors, so no layout copies are needed. g is chosen
// so col stays near kColBudget floats and every thread of the pool gets chunks; chunk c belongs to slot
// c % threads (parallel.h), and the weight gradient is summed per slot, then over slots in order, so the
// result does not depend on timing.
#include <algorithm>
#include <cstddef>
#include <memory>
#include <type_traits>
#include <vector>

#include "conv_onednn.h"

#include "moco/cpu_ops.h"
#include "moco/parallel.h"

namespace moco::cpu {

static constexpr int64_t kColBudget = 1 << 22;  // floats in col per chunk (16 MiB in f32)

// Uninitialised scratch: every element is written before it is read, and zero-filling large buffers on
// every call cost 7% of a CPU step.
template <class T>
struct Scratch {
  std::unique_ptr<T[]> p;
  explicit Scratch(int64_t n) : p(new T[(size_t)n]) {}
  T* data() { return p.get(); }
};

// x[n] (Ci, H*W) is already the (R, P) column matrix: no copy, no scatter back.
static bool is_pointwise(const ConvShape& s) { return s.kh == 1 && s.kw == 1 && s.stride == 1 && s.pad == 0; }

static int64_t images_per_chunk(const ConvShape& s, int threads) {
  const int64_t per_image = s.ci * s.kh * s.kw * s.ho() * s.wo();
  const int64_t fair = (s.n + threads - 1) / threads;  // so that every slot has work
  return std::max<int64_t>(1, std::min<int64_t>(fair, kColBudget / std::max<int64_t>(per_image, 1)));
}

// One image's receptive fields into col rows of length `ld` (the chunk's g*P), starting at column 0 of `col`.
// The valid output columns of each row are computed once, so the inner loop has no bounds test.
template <class T>
static void im2col(const ConvShape& s, const T* x, T* col, int64_t ld) {
  const int64_t ho = s.ho(), wo = s.wo();
  for (int64_t c = 0; c < s.ci; ++c)
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j) {
        T* out = col + ((c * s.kh + i) * s.kw + j) * ld;
        // ox is valid when 0 <= ox*stride - pad + j < w
        const int64_t ox_lo = std::min(wo, std::max<int64_t>(0, (s.pad - j + s.stride - 1) / s.stride));
        const int64_t ox_hi = std::max(ox_lo, std::min(wo, (s.w + s.pad - j + s.stride - 1) / s.stride));
        for (int64_t oy = 0; oy < ho; ++oy) {
          T* row = out + oy * wo;
          const int64_t iy = oy * s.stride - s.pad + i;
          if (iy < 0 || iy >= s.h) {
            std::fill_n(row, wo, T(0));
            continue;
          }
          const T* in = x + (c * s.h + iy) * s.w - s.pad + j;  // in[ox * stride] is x(c, iy, ox*stride - pad + j)
          std::fill_n(row, ox_lo, T(0));
          if (s.stride == 1)  // the common case (3x3 convs of every stage) is one contiguous copy
            std::copy(in + ox_lo, in + ox_hi, row + ox_lo);
          else
            for (int64_t ox = ox_lo; ox < ox_hi; ++ox) row[ox] = in[ox * s.stride];
          std::fill_n(row + ox_hi, wo - ox_hi, T(0));
        }
      }
}

// The adjoint of im2col: adds each column entry back to the input position it was read from. The valid
// output columns of each row are computed once, as in im2col, so the inner loop has no bounds test and a
// stride-1 row is a contiguous, vectorised add.
template <class T>
static void col2im_add(const ConvShape& s, const T* col, int64_t ld, T* dx) {
  const int64_t ho = s.ho(), wo = s.wo();
  for (int64_t c = 0; c < s.ci; ++c)
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j) {
        const T* in = col + ((c * s.kh + i) * s.kw + j) * ld;
        const int64_t ox_lo = std::min(wo, std::max<int64_t>(0, (s.pad - j + s.stride - 1) / s.stride));
        const int64_t ox_hi = std::max(ox_lo, std::min(wo, (s.w + s.pad - j + s.stride - 1) / s.stride));
        for (int64_t oy = 0; oy < ho; ++oy) {
          const int64_t iy = oy * s.stride - s.pad + i;
          if (iy < 0 || iy >= s.h) continue;
          const T* row = in + oy * wo;
          T* out = dx + (c * s.h + iy) * s.w - s.pad + j;  // out[ox * stride] is dx(c, iy, ox*stride - pad + j)
          if (s.stride == 1)
            for (int64_t ox = ox_lo; ox < ox_hi; ++ox) out[ox] += row[ox];
          else
            for (int64_t ox = ox_lo; ox < ox_hi; ++ox) out[ox * s.stride] += row[ox];
        }
      }
}

template <class T>
void conv2d_forward(const ConvShape& s, const T* x, const T* w, T* y) {
#ifdef MOCO_HAVE_ONEDNN
  if constexpr (std::is_same_v<T, float>)
    if (onednn_conv_enabled()) return onednn_conv_forward(s, x, w, y);
#endif
  const int64_t P = s.ho() * s.wo();
  if (is_pointwise(s)) {  // y[n] (Co, P) = w (Co, Ci) * x[n] (Ci, P), images spread over the pool
    parallel_range(s.n, 1, [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n)
        gemm_ld<T>(false, false, s.co, P, s.ci, T(1), w, s.ci, x + n * s.ci * P, P, T(0), y + n * s.co * P, P);
    });
    return;
  }
  const int threads = cpu_threads();
  const int64_t R = s.ci * s.kh * s.kw, G = images_per_chunk(s, threads);
  const int64_t chunks = (s.n + G - 1) / G;
  parallel_slots([&](int slot) {
    Scratch<T> col(R * G * P);  // (R, g*P) receptive fields of a chunk
    for (int64_t chunk = slot; chunk < chunks; chunk += threads) {
      const int64_t n0 = chunk * G, g = std::min(G, s.n - n0), ld = g * P;
      for (int64_t j = 0; j < g; ++j) im2col(s, x + (n0 + j) * s.ci * s.h * s.w, col.data() + j * P, ld);
      // one GEMM per image straight into y[n] (Co, P), reading its column block of col (leading dim ld)
      for (int64_t j = 0; j < g; ++j)
        gemm_ld<T>(false, false, s.co, P, R, T(1), w, R, col.data() + j * P, ld, T(0), y + (n0 + j) * s.co * P, P);
    }
  });
}

template <class T>
void conv2d_backward(const ConvShape& s, const T* x, const T* w, const T* dy, T* dx, T* dw) {
#ifdef MOCO_HAVE_ONEDNN
  if constexpr (std::is_same_v<T, float>)
    if (onednn_conv_enabled()) return onednn_conv_backward(s, x, w, dy, dx, dw);
#endif
  const int threads = cpu_threads();
  const int64_t P = s.ho() * s.wo(), R = s.ci * s.kh * s.kw, G = images_per_chunk(s, threads);
  const int64_t chunks = (s.n + G - 1) / G;
  std::vector<std::vector<T>> dw_slot(dw ? threads : 0, std::vector<T>((size_t)(s.co * R), T(0)));  // (Co, R) each
  const bool pointwise = is_pointwise(s);
  parallel_slots([&](int slot) {
    Scratch<T> col(pointwise ? 0 : R * G * P);  // (R, g*P) receptive fields, then their gradient
    for (int64_t chunk = slot; chunk < chunks; chunk += threads) {
      const int64_t n0 = chunk * G, g = std::min(G, s.n - n0);
      // image j's columns: its block of col (leading dim g*P), or for a pointwise conv x[n] itself (dim P)
      const int64_t ld = pointwise ? P : g * P;
      auto cols = [&](int64_t j) -> const T* {
        return pointwise ? x + (n0 + j) * s.ci * P : col.data() + j * P;
      };
      if (dw) {
        if (!pointwise)
          for (int64_t j = 0; j < g; ++j) im2col(s, x + (n0 + j) * s.ci * s.h * s.w, col.data() + j * P, ld);
        for (int64_t j = 0; j < g; ++j)  // dw += dy[n] (Co, P) * col_n^T (P, R)
          gemm_ld<T>(false, true, s.co, R, P, T(1), dy + (n0 + j) * s.co * P, P, cols(j), ld, T(1),
                     dw_slot[slot].data(), R);
      }
      if (dx && pointwise) {
        for (int64_t j = 0; j < g; ++j)  // dx[n] (Ci, P) = w^T (Ci, Co) * dy[n] (Co, P), written in place
          gemm_ld<T>(true, false, R, P, s.co, T(1), w, R, dy + (n0 + j) * s.co * P, P, T(0),
                     dx + (n0 + j) * s.ci * P, P);
      } else if (dx) {
        for (int64_t j = 0; j < g; ++j)  // dcol_n (R, P) = w^T (R, Co) * dy[n] (Co, P)
          gemm_ld<T>(true, false, R, P, s.co, T(1), w, R, dy + (n0 + j) * s.co * P, P, T(0), col.data() + j * P, ld);
        for (int64_t j = 0; j < g; ++j) {
          T* dxn = dx + (n0 + j) * s.ci * s.h * s.w;
          std::fill_n(dxn, s.ci * s.h * s.w, T(0));
          col2im_add(s, col.data() + j * P, ld, dxn);
        }
      }
    }
  });
  for (const auto& part : dw_slot)  // slots in order: the same sum every run
    for (int64_t i = 0; i < s.co * R; ++i) dw[i] += part[(size_t)i];
}

template void conv2d_forward<float>(const ConvShape&, const float*, const float*, float*);
template void conv2d_forward<double>(const ConvShape&, const double*, const double*, double*);
template void conv2d_backward<float>(const ConvShape&, const float*, const float*, const float*, float*, float*);
template void conv2d_backward<double>(const ConvShape&, const double*, const double*, const double*, double*, double*);

}  // namespace moco::cpu

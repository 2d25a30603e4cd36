// Convolution as im2col + GEMM, one image at a time: col (Ci*kh*kw, Ho*Wo) holds the receptive fields.
#include <cstddef>
#include <vector>

#include "moco/cpu_ops.h"

namespace moco::cpu {

template <class T>
static void im2col(const ConvShape& s, const T* x, T* col) {
  const int64_t ho = s.ho(), wo = s.wo();
  for (int64_t c = 0; c < s.ci; ++c)
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j) {
        T* out = col + ((c * s.kh + i) * s.kw + j) * ho * wo;
        for (int64_t oy = 0; oy < ho; ++oy) {
          int64_t iy = oy * s.stride - s.pad + i;
          for (int64_t ox = 0; ox < wo; ++ox) {
            int64_t ix = ox * s.stride - s.pad + j;
            bool inside = iy >= 0 && iy < s.h && ix >= 0 && ix < s.w;
            out[oy * wo + ox] = inside ? x[(c * s.h + iy) * s.w + ix] : T(0);
          }
        }
      }
}

template <class T>
static void col2im_add(const ConvShape& s, const T* col, T* dx) {
  const int64_t ho = s.ho(), wo = s.wo();
  for (int64_t c = 0; c < s.ci; ++c)
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j) {
        const T* in = col + ((c * s.kh + i) * s.kw + j) * ho * wo;
        for (int64_t oy = 0; oy < ho; ++oy) {
          int64_t iy = oy * s.stride - s.pad + i;
          if (iy < 0 || iy >= s.h) continue;
          for (int64_t ox = 0; ox < wo; ++ox) {
            int64_t ix = ox * s.stride - s.pad + j;
            if (ix >= 0 && ix < s.w) dx[(c * s.h + iy) * s.w + ix] += in[oy * wo + ox];
          }
        }
      }
}

template <class T>
void conv2d_forward(const ConvShape& s, const T* x, const T* w, T* y) {
  const int64_t P = s.ho() * s.wo(), R = s.ci * s.kh * s.kw;
  std::vector<T> col((size_t)(R * P));  // (Ci*kh*kw, Ho*Wo)
  for (int64_t n = 0; n < s.n; ++n) {
    im2col(s, x + n * s.ci * s.h * s.w, col.data());
    gemm<T>(false, false, s.co, P, R, T(1), w, col.data(), T(0), y + n * s.co * P);
  }
}

template <class T>
void conv2d_backward(const ConvShape& s, const T* x, const T* w, const T* dy, T* dx, T* dw) {
  const int64_t P = s.ho() * s.wo(), R = s.ci * s.kh * s.kw;
  std::vector<T> col((size_t)(R * P));  // (Ci*kh*kw, Ho*Wo)
  for (int64_t n = 0; n < s.n; ++n) {
    const T* dyn = dy + n * s.co * P;  // (Co, Ho*Wo)
    if (dw) {
      im2col(s, x + n * s.ci * s.h * s.w, col.data());
      gemm<T>(false, true, s.co, R, P, T(1), dyn, col.data(), T(1), dw);  // dw += dy * col^T
    }
    if (dx) {
      gemm<T>(true, false, R, P, s.co, T(1), w, dyn, T(0), col.data());  // dcol = w^T * dy
      T* dxn = dx + n * s.ci * s.h * s.w;
      for (int64_t i = 0; i < s.ci * s.h * s.w; ++i) dxn[i] = T(0);
      col2im_add(s, col.data(), dxn);
    }
  }
}

template void conv2d_forward<float>(const ConvShape&, const float*, const float*, float*);
template void conv2d_forward<double>(const ConvShape&, const double*, const double*, double*);
template void conv2d_backward<float>(const ConvShape&, const float*, const float*, const float*, float*, float*);
template void conv2d_backward<double>(const ConvShape&, const double*, const double*, const double*, double*, double*);

}  // namespace moco::cpu

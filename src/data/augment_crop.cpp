// RandomResizedCrop: the box draw (torchvision get_params) and the bilinear resize of a box.
#include <algorithm>
#include <cmath>
#include <vector>

#include "moco/augment.h"
#include "moco/error.h"
#include "py_round.h"

namespace moco {

namespace {

constexpr double kRatioLo = 3.0 / 4.0, kRatioHi = 4.0 / 3.0;

}  // namespace

CropBox rrc_fallback_box(int h, int w) {
  MOCO_CHECK(h > 0 && w > 0, "rrc_fallback_box: image is ", h, "x", w, ", expected both sides > 0");
  CropBox b;
  double in_ratio = (double)w / (double)h;
  if (in_ratio < kRatioLo) {
    b.w = w;
    b.h = py_round(b.w / kRatioLo);
  } else if (in_ratio > kRatioHi) {
    b.h = h;
    b.w = py_round(b.h * kRatioHi);
  } else {
    b.w = w;
    b.h = h;
  }
  b.top = (h - b.h) / 2;   // floor division of non-negative numbers, as Python's //
  b.left = (w - b.w) / 2;
  return b;
}

CropBox random_resized_crop_box(int h, int w, float scale_lo, float scale_hi, Rng& rng) {
  MOCO_CHECK(h > 0 && w > 0, "random_resized_crop_box: image is ", h, "x", w, ", expected both sides > 0");
  MOCO_CHECK(scale_lo > 0.f && scale_lo <= scale_hi, "random_resized_crop_box: scale (", scale_lo, ", ",
             scale_hi, ") expected 0 < lo <= hi");
  const double area = (double)h * (double)w;
  const double log_lo = std::log(kRatioLo), log_hi = std::log(kRatioHi);
  for (int attempt = 0; attempt < 10; ++attempt) {
    double target_area = area * rng.uniform(scale_lo, scale_hi);
    double aspect = std::exp(rng.uniform(log_lo, log_hi));
    int cw = py_round(std::sqrt(target_area * aspect));
    int ch = py_round(std::sqrt(target_area / aspect));
    if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
      CropBox b;
      b.h = ch;
      b.w = cw;
      b.top = (int)rng.below((uint64_t)(h - ch + 1));  // torchvision draws the row first, then the column
      b.left = (int)rng.below((uint64_t)(w - cw + 1));
      return b;
    }
  }
  return rrc_fallback_box(h, w);
}

namespace {

// The source taps of the output coordinates of one axis: output k reads the count[k] consecutive source
// pixels from first[k], with weights w[k * stride + t], t < count[k].
//   Growing the axis or keeping its size (in <= out): PyTorch's upsample_bilinear2d with align_corners=False,
//   which is also PIL's bilinear there: src = (dst + 0.5) * in / out - 0.5, negative values clamped to 0, the
//   neighbours floor(src) and floor(src) + 1 with weights 1 - frac and frac (the last pixel alone past the end).
//   Shrinking it (in > out): PIL's bilinear, which is antialiased (torchvision's PIL path; tensor resizes with
//   antialias=True compute the same): the triangle filter stretched by scale = in / out around the centre
//   (dst + 0.5) * scale, over the source pixels j from int(centre - scale + 0.5) to int(centre + scale + 0.5),
//   exclusive and clamped to [0, in), each weighted by max(0, 1 - |j + 0.5 - centre| / scale), normalised to
//   sum 1. Without it a shrunk view samples 2 of every `scale` pixels per axis and aliases: tens of grey
//   levels from PIL's result, against less than one with it (tests/test_augment.cpp, AugmentResize).
struct AxisTaps {
  int stride = 0;               // the most taps of any output
  std::vector<int> first, count;  // (outputs)
  std::vector<float> w;         // (outputs, stride)
};

// `scale_weights` multiplies every weight (1/255 on one axis turns bytes into [0, 1] in the same pass).
AxisTaps axis_taps(int in, int out, int from, int n, float scale_weights) {
  AxisTaps t;
  const double scale = (double)in / (double)out;
  t.stride = in <= out ? 2 : (int)std::ceil(2.0 * scale) + 1;  // the widest span the shrinking rule can take
  t.first.resize((size_t)n);
  t.count.resize((size_t)n);
  t.w.assign((size_t)n * t.stride, 0.f);
  std::vector<double> wd((size_t)t.stride);
  for (int k = 0; k < n; ++k) {
    float* w = t.w.data() + (size_t)k * t.stride;
    if (in <= out) {
      double src = ((double)(from + k) + 0.5) * scale - 0.5;
      if (src < 0.0) src = 0.0;
      const int i0 = std::min((int)src, in - 1);
      const double l1 = src - (double)i0;
      t.first[(size_t)k] = i0;
      t.count[(size_t)k] = i0 + 1 < in ? 2 : 1;
      w[0] = (float)((t.count[(size_t)k] == 2 ? 1.0 - l1 : 1.0) * scale_weights);
      if (t.count[(size_t)k] == 2) w[1] = (float)(l1 * scale_weights);
      continue;
    }
    const double centre = ((double)(from + k) + 0.5) * scale;
    const int lo = std::max((int)(centre - scale + 0.5), 0);
    const int hi = std::min((int)(centre + scale + 0.5), in);
    double sum = 0.0;
    for (int j = lo; j < hi; ++j) sum += wd[(size_t)(j - lo)] = std::max(0.0, 1.0 - std::fabs((j + 0.5 - centre) / scale));
    t.first[(size_t)k] = lo;
    t.count[(size_t)k] = hi - lo;
    for (int j = 0; j < hi - lo; ++j) w[j] = (float)(wd[(size_t)j] / sum * scale_weights);
  }
  // Every output as `stride` taps inside [0, in) where the axis has room: the ones near its end start earlier,
  // their weights moved up behind zeros. Each sum then adds the same products in the same order (zeros add
  // nothing), and a pass along x runs a fixed number of taps that the compiler unrolls (resize_row).
  if (in >= t.stride)
    for (int k = 0; k < n; ++k) {
      const int shift = t.first[(size_t)k] + t.stride - in;
      if (shift <= 0) continue;
      float* w = t.w.data() + (size_t)k * t.stride;
      for (int j = t.stride - 1; j >= 0; --j) w[j] = j >= shift ? w[j - shift] : 0.f;
      t.first[(size_t)k] -= shift;
      t.count[(size_t)k] += shift;
    }
  return t;
}

// Along x: the (n, 3) outputs of one row blended along y (row: (width, 3) values). K > 0: every output sums
// exactly K taps (the weights past its count are 0 and their pixels inside the row), a loop the compiler
// unrolls; K = 0: each output its own count.
template <int K>
void resize_row_taps(const float* row, const AxisTaps& cols, int n, float* out /* (n, 3) */) {
  for (int x = 0; x < n; ++x) {
    const float* p = row + (size_t)cols.first[(size_t)x] * 3;
    const float* w = cols.w.data() + (size_t)x * cols.stride;
    const int count = K > 0 ? K : cols.count[(size_t)x];
    float r = 0.f, g = 0.f, b = 0.f;
    for (int t = 0; t < count; ++t) {
      r += w[t] * p[3 * t];
      g += w[t] * p[3 * t + 1];
      b += w[t] * p[3 * t + 2];
    }
    out[3 * x] = r, out[3 * x + 1] = g, out[3 * x + 2] = b;
  }
}

// A row of `width` pixels: a fixed tap count where every output's taps, padded to the stride, stay inside it.
void resize_row(const float* row, int width, const AxisTaps& cols, int n, float* out /* (n, 3) */) {
  switch (width >= cols.stride ? cols.stride : 0) {
    case 2: return resize_row_taps<2>(row, cols, n, out);
    case 3: return resize_row_taps<3>(row, cols, n, out);
    case 4: return resize_row_taps<4>(row, cols, n, out);
    case 5: return resize_row_taps<5>(row, cols, n, out);
    case 6: return resize_row_taps<6>(row, cols, n, out);
    case 7: return resize_row_taps<7>(row, cols, n, out);
    case 8: return resize_row_taps<8>(row, cols, n, out);
    default: return resize_row_taps<0>(row, cols, n, out);
  }
}

// Along y: out[i] = sum_t w[t] * rows[t][i] over `len` bytes of source rows; contiguous, so the compiler
// vectorises it.
void blend_rows(const uint8_t* const* rows, const float* w, int count, size_t len, float* out) {
  for (size_t i = 0; i < len; ++i) out[i] = 0.f;
  for (int t = 0; t < count; ++t) {
    const uint8_t* r = rows[t];
    const float wt = w[t];
    for (size_t i = 0; i < len; ++i) out[i] += wt * (float)r[i];
  }
}

}  // namespace

void resize_bilinear(const Image& img, const CropBox& box, int dst_h, int dst_w, const CropBox& win,
                     float* out) {
  MOCO_CHECK(img.h > 0 && img.w > 0 && img.pixels.size() == (size_t)img.h * img.w * 3,
             "resize_bilinear: image ", img.h, "x", img.w, " holds ", img.pixels.size(), " bytes, expected ",
             (size_t)img.h * img.w * 3);
  MOCO_CHECK(box.h > 0 && box.w > 0 && box.top >= 0 && box.left >= 0 && box.top + box.h <= img.h &&
                 box.left + box.w <= img.w,
             "resize_bilinear: box (top ", box.top, ", left ", box.left, ", h ", box.h, ", w ", box.w,
             ") is not inside the ", img.h, "x", img.w, " image");
  MOCO_CHECK(dst_h > 0 && dst_w > 0 && win.top >= 0 && win.left >= 0 && win.h > 0 && win.w > 0 &&
                 win.top + win.h <= dst_h && win.left + win.w <= dst_w,
             "resize_bilinear: window (top ", win.top, ", left ", win.left, ", h ", win.h, ", w ", win.w,
             ") is not inside the ", dst_h, "x", dst_w, " output");
  constexpr int kMaxSide = 1 << 14;
  MOCO_CHECK(win.w <= kMaxSide && box.w <= kMaxSide, "resize_bilinear: window width ", win.w, " or box width ",
             box.w, " exceeds ", kMaxSide);
  const AxisTaps cols = axis_taps(box.w, dst_w, win.left, win.w, 1.f);
  const AxisTaps rows = axis_taps(box.h, dst_h, win.top, win.h, 1.f / 255.f);  // and bytes to [0, 1]
  auto source_row = [&](int sy) {  // the box's row sy, from its first pixel: (box.w, 3) bytes
    return img.pixels.data() + ((size_t)(box.top + sy) * img.w + box.left) * 3;
  };
  const size_t out_len = (size_t)win.w * 3;
  thread_local std::vector<const uint8_t*> row_ptr;  // (rows.stride) the source rows one output row blends
  row_ptr.resize((size_t)rows.stride);
  // Separable: each output row first blends its source rows at the box's full width (contiguous, so the
  // compiler vectorises it), then is resized along x. This order, against resizing every source row along x
  // first, took 0.53 to 0.62 ms instead of 1.3 to 1.4 for a whole 500x375 photo and 0.24 instead of 0.33 for
  // a box grown to 224 (bench_augment's resize lines, one core here).
  thread_local std::vector<float> along_y;  // (box.w, 3): one output row blended at the box's width
  along_y.resize((size_t)box.w * 3);
  for (int y = 0; y < win.h; ++y) {
    for (int t = 0; t < rows.count[(size_t)y]; ++t) row_ptr[(size_t)t] = source_row(rows.first[(size_t)y] + t);
    blend_rows(row_ptr.data(), rows.w.data() + (size_t)y * rows.stride, rows.count[(size_t)y], (size_t)box.w * 3,
               along_y.data());
    resize_row(along_y.data(), box.w, cols, win.w, out + (size_t)y * out_len);
  }
}

}  // namespace moco

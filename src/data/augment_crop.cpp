// RandomResizedCrop: the box draw (torchvision get_params) and the bilinear resize of a box.
#include <algorithm>
#include <cmath>
#include <vector>

#include "moco/augment.h"
#include "moco/error.h"
#include "py_round.h"
#include "transpose_pixels.h"

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

// PIL's resampling of 8-bit images (its Resample.c, as torchvision's PIL path calls it: crop the box, then
// resize it with the bilinear filter) in its fixed point: 1 = 2^22.
constexpr int kPrecisionBits = 32 - 8 - 2;

// The taps of the outputs [from, from + n) of one axis resized from `in` to `out` pixels: output k reads
// count[k] source pixels from first[k] with fixed-point weights w[k * stride + t]. PIL's bilinear filter is
// the triangle 1 - |x| stretched by scale = in / out when shrinking (antialiased) and by 1 when growing,
// centred on (k + 0.5) scale, over the source pixels j in [int(centre - support + 0.5),
// int(centre + support + 0.5)) clamped to [0, in), each weighted by the filter at j + 0.5 - centre; the
// weights are normalised to sum 1 in double and rounded to the fixed point, halves away from zero.
struct AxisTaps {
  int stride = 0;                 // the most taps of any output
  std::vector<int> first, count;  // (outputs)
  std::vector<int32_t> w;         // (outputs, stride)
};

AxisTaps axis_taps(int in, int out, int from, int n) {
  AxisTaps t;
  const double scale = (double)(float)in / (double)out;  // PIL takes the box's size as a float
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = filterscale;                   // the triangle's support, 1, stretched
  const double inv = 1.0 / filterscale;
  t.stride = (int)std::ceil(support) * 2 + 1;
  t.first.resize((size_t)n);
  t.count.resize((size_t)n);
  t.w.assign((size_t)n * t.stride, 0);
  std::vector<double> k((size_t)t.stride);
  for (int j = 0; j < n; ++j) {
    const double centre = ((double)(from + j) + 0.5) * scale;
    const int lo = std::max((int)(centre - support + 0.5), 0);
    const int count = std::min((int)(centre + support + 0.5), in) - lo;
    double sum = 0.0;
    for (int x = 0; x < count; ++x) {
      const double d = std::fabs(((double)(x + lo) - centre + 0.5) * inv);
      sum += k[(size_t)x] = d < 1.0 ? 1.0 - d : 0.0;
    }
    int32_t* w = t.w.data() + (size_t)j * t.stride;
    for (int x = 0; x < count; ++x) {
      const double v = (sum != 0.0 ? k[(size_t)x] / sum : k[(size_t)x]) * (double)(1 << kPrecisionBits);
      w[x] = (int32_t)(v < 0 ? v - 0.5 : v + 0.5);
    }
    t.first[(size_t)j] = lo;
    t.count[(size_t)j] = count;
  }
  return t;
}

// The fixed-point sum rounded and clamped to a byte, as PIL's clip8 of (2^21 + sum) >> 22.
inline uint8_t to_byte(int32_t acc) {
  const int32_t v = (acc + (1 << (kPrecisionBits - 1))) >> kPrecisionBits;
  return (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// One pass of PIL's over whole lines: out[i] = the byte of sum_t w[t] lines[t][i] over `len` bytes; contiguous,
// so the compiler vectorises it. Along y the lines are rows (of the box, or of the pass along x); along x they
// are columns, transposed (of the box, or of the pass along y). Built for AVX2 (eight 32-bit products an instruction) and for the baseline, chosen at
// load time by the CPU.
__attribute__((target_clones("avx2", "default"))) void blend_rows(const uint8_t* const* rows, const int32_t* w,
                                                                   int count, size_t len, int32_t* acc,
                                                                   uint8_t* out) {
  for (size_t i = 0; i < len; ++i) acc[i] = 0;
  for (int t = 0; t < count; ++t) {
    const uint8_t* r = rows[t];
    const int32_t wt = w[t];
    for (size_t i = 0; i < len; ++i) acc[i] += wt * (int32_t)r[i];
  }
  for (size_t i = 0; i < len; ++i) out[i] = to_byte(acc[i]);
}

// One pass along y over whole lines: output line k of `n` is the blend of taps.count[k] lines of `len` bytes,
// source line j at src + (j - src_first) * src_stride (src_first: the first line the taps read).
void pass_along_y(const uint8_t* src, size_t src_stride, int src_first, const AxisTaps& taps, int n, size_t len,
                  uint8_t* dst /* (n, len) */) {
  thread_local std::vector<const uint8_t*> line;  // (taps.stride) the source lines one output line reads
  thread_local std::vector<int32_t> acc;          // (len) fixed-point sums of one output line
  line.resize((size_t)taps.stride);
  acc.resize(len);
  for (int k = 0; k < n; ++k) {
    for (int t = 0; t < taps.count[(size_t)k]; ++t)
      line[(size_t)t] = src + (size_t)(taps.first[(size_t)k] + t - src_first) * src_stride;
    blend_rows(line.data(), taps.w.data() + (size_t)k * taps.stride, taps.count[(size_t)k], len, acc.data(),
               dst + (size_t)k * len);
  }
}

// One pass along x over `rows` rows of `cols` pixels (rows src_stride bytes apart, column 0 the first the taps
// read): on the rows transposed, so that each output column is a blend of whole source columns, contiguous
// like the pass along y; the pixel-by-pixel form took about twice as long
// (bench/results/2026-11-26-resize-as-pil.md).
void pass_along_x(const uint8_t* src, size_t src_stride, int rows, int cols, int src_first, const AxisTaps& taps,
                  int n, uint8_t* dst /* (rows, n, 3) */) {
  const size_t col_len = (size_t)rows * 3;
  thread_local std::vector<uint8_t> columns;  // (cols, rows, 3): the source, transposed
  thread_local std::vector<uint8_t> blended;  // (n, rows, 3): the pass, transposed
  columns.resize((size_t)cols * col_len);
  blended.resize((size_t)n * col_len);
  transpose_pixels(src, src_stride, rows, cols, columns.data());
  pass_along_y(columns.data(), col_len, src_first, taps, n, col_len, blended.data());
  transpose_pixels(blended.data(), col_len, n, rows, dst);
}

}  // namespace

bool pil_resizes_y_first(int in_h, int in_w, int out_h, int out_w, PillowResize pillow) {
  return pillow == PillowResize::Pillow13 && out_h < in_h && in_h - out_h > 2 * (in_w - out_w);
}

void resize_bilinear(const Image& img, const CropBox& box, int dst_h, int dst_w, const CropBox& win,
                     PillowResize pillow, uint8_t* out) {
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
  const AxisTaps cols = axis_taps(box.w, dst_w, win.left, win.w);
  const AxisTaps rows = axis_taps(box.h, dst_h, win.top, win.h);
  // The source pixels the window reads: rows [first_row, last_row) x columns [first_col, last_col) of the box.
  const int first_row = rows.first[0];
  const int last_row = rows.first[(size_t)win.h - 1] + rows.count[(size_t)win.h - 1];
  const int first_col = cols.first[0];
  const int last_col = cols.first[(size_t)win.w - 1] + cols.count[(size_t)win.w - 1];
  const int n_rows = last_row - first_row, n_cols = last_col - first_col;
  const size_t img_stride = (size_t)img.w * 3;
  const uint8_t* src = img.pixels.data() + ((size_t)(box.top + first_row) * img.w + box.left + first_col) * 3;
  // Both passes round to bytes, so their order shows in the last bit: PIL's choice, from the whole resize's
  // sizes (the window only keeps part of that resize).
  thread_local std::vector<uint8_t> first_pass;  // (n_rows, win.w, 3) along x first; (win.h, n_cols, 3) along y
  if (pil_resizes_y_first(box.h, box.w, dst_h, dst_w, pillow)) {
    first_pass.resize((size_t)win.h * n_cols * 3);
    pass_along_y(src, img_stride, first_row, rows, win.h, (size_t)n_cols * 3, first_pass.data());
    pass_along_x(first_pass.data(), (size_t)n_cols * 3, win.h, n_cols, first_col, cols, win.w, out);
  } else {
    first_pass.resize((size_t)n_rows * win.w * 3);
    pass_along_x(src, img_stride, n_rows, n_cols, first_col, cols, win.w, first_pass.data());
    pass_along_y(first_pass.data(), (size_t)win.w * 3, first_row, rows, win.h, (size_t)win.w * 3, out);
  }
}

}  // namespace moco

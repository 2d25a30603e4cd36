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

// Source taps of one output coordinate along one axis (PyTorch upsample_bilinear2d, align_corners=False):
// src = (dst + 0.5) * in / out - 0.5, negative values clamped to 0, upper neighbour clamped to in - 1.
struct Tap {
  int i0, i1;
  float l1;  // weight of i1; i0 gets 1 - l1
};

Tap bilinear_tap(int dst, int in, int out) {
  double src = ((double)dst + 0.5) * ((double)in / (double)out) - 0.5;
  if (src < 0.0) src = 0.0;
  int i0 = std::min((int)src, in - 1);
  Tap t;
  t.i0 = i0;
  t.i1 = std::min(i0 + 1, in - 1);
  t.l1 = (float)(src - (double)i0);
  return t;
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
  MOCO_CHECK(win.w <= kMaxSide, "resize_bilinear: window width ", win.w, " exceeds ", kMaxSide);
  // Column taps are the same for every row: compute them once (absolute byte offsets into a row).
  thread_local std::vector<Tap> col_taps;  // (win.w)
  col_taps.resize((size_t)win.w);
  for (int x = 0; x < win.w; ++x) {
    Tap t = bilinear_tap(win.left + x, box.w, dst_w);
    t.i0 = (box.left + t.i0) * 3;
    t.i1 = (box.left + t.i1) * 3;
    col_taps[(size_t)x] = t;
  }
  // Separable: each source row the output needs is interpolated along x once, into one of two row buffers,
  // then each output row blends its two rows along y. When upsampling, consecutive output rows share source
  // rows, so most rows are interpolated once instead of once per output row that reads them; the y blend is
  // a contiguous loop the compiler vectorises (bench_augment). The arithmetic per value is unchanged:
  // top = wx0 * a + wx1 * b on each row, then (wy0 * top + wy1 * bot) / 255.
  const uint8_t* px = img.pixels.data();  // (H, W, 3)
  const size_t row_len = (size_t)win.w * 3;
  thread_local std::vector<float> row_buf[2];  // (win.w, 3) each: one source row interpolated along x
  int row_of[2] = {-1, -1};                    // which source row each buffer holds
  for (auto& r : row_buf) r.resize(row_len);
  // The buffer holding source row `sy`, filled if needed without evicting row `keep`.
  auto source_row = [&](int sy, int keep) -> const float* {
    for (int k = 0; k < 2; ++k)
      if (row_of[k] == sy) return row_buf[k].data();
    const int k = row_of[0] == keep ? 1 : 0;
    const uint8_t* src = px + (size_t)(box.top + sy) * img.w * 3;
    float* dst = row_buf[k].data();
    for (int x = 0; x < win.w; ++x) {
      const Tap& tx = col_taps[(size_t)x];
      const float wx1 = tx.l1, wx0 = 1.f - tx.l1;
      for (int c = 0; c < 3; ++c) dst[x * 3 + c] = wx0 * src[tx.i0 + c] + wx1 * src[tx.i1 + c];
    }
    row_of[k] = sy;
    return dst;
  };
  const float inv255 = 1.f / 255.f;
  for (int y = 0; y < win.h; ++y) {
    Tap ty = bilinear_tap(win.top + y, box.h, dst_h);
    const float* top = source_row(ty.i0, ty.i1);
    const float* bot = source_row(ty.i1, ty.i0);
    const float wy1 = ty.l1, wy0 = 1.f - ty.l1;
    float* o = out + (size_t)y * row_len;  // (win.w, 3)
    for (size_t i = 0; i < row_len; ++i) o[i] = (wy0 * top[i] + wy1 * bot[i]) * inv255;
  }
}

}  // namespace moco

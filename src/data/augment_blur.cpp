// GaussianBlur of the MoCo v2 recipe, as PIL computes it.
//
// The authors' code blurs the PIL image with ImageFilter.GaussianBlur(radius=sigma), sigma uniform in
// [0.1, 2.0]. PIL's "radius" is the standard deviation, and PIL does not convolve with a Gaussian: it runs
// three box blurs along x, then three along y, whose composition approximates the Gaussian of that sigma
// (extended box filtering, Gwosdek et al. 2011). Each box has a real radius r, chosen so that three boxes have
// variance sigma^2: 2 floor(r) + 1 pixels of weight 1 / (2r + 1), and one more pixel at either end carrying
// the fraction left over. Outside the image the edge pixel repeats. PIL blurs 8-bit images and works in fixed
// point (1 = 2^24), rounding to 8 bits after every pass; so does this file, on the 8-bit view, and the result
// is Pillow's, byte for byte (tools/pil_blur_fixtures.py, AugmentBlur.MatchesPillowExactly). Sigma is in
// pixels of the view, because the blur runs after the crop has been resized to S.
#include <cmath>
#include <cstdint>
#include <vector>

#include "moco/augment.h"
#include "moco/error.h"
#include "transpose_pixels.h"

namespace moco {

namespace {

// One output row of a pass: d = (inner * window + edge * (before + after) + 2^23) >> 24, per byte. The
// pointers never alias a written one, and the weights are values, so the loop vectorises; built twice, for
// AVX2 (eight 32-bit products an instruction) and for the baseline, chosen at load time by the CPU.
__attribute__((target_clones("avx2", "default"))) void box_row(const uint32_t* __restrict window,
                                                                const uint8_t* __restrict before,
                                                                const uint8_t* __restrict after, uint32_t inner,
                                                                uint32_t edge, size_t n, uint8_t* __restrict d) {
  for (size_t i = 0; i < n; ++i)
    d[i] = (uint8_t)((window[i] * inner + (uint32_t)(before[i] + after[i]) * edge + (1u << 23)) >> 24);
}

// The window moves down one row: window += after - leaving, per byte.
void slide(uint32_t* __restrict window, const uint8_t* __restrict after, const uint8_t* __restrict leaving,
           size_t n) {
  for (size_t i = 0; i < n; ++i) window[i] += (uint32_t)after[i] - leaving[i];
}

// Three of PIL's box passes down the columns of img (h rows of `row` bytes; row = 3 w), in place, tmp
// (h, row) as scratch. A running sum per column keeps each output's window of 2 radius + 1 rows, edge rows
// repeated, so a pass costs the same at any radius, and the loops over a row vectorise.
void box_passes_down(uint8_t* img, uint8_t* tmp, int h, size_t row, const BlurBox& box) {
  const int r = box.radius;
  auto at = [&](const uint8_t* src, int y) { return src + (size_t)(y < 0 ? 0 : y >= h ? h - 1 : y) * row; };
  thread_local std::vector<uint32_t> window;  // (row): each column's sum over rows y - r .. y + r
  window.resize(row);
  for (int pass = 0; pass < kBlurPasses; ++pass) {
    const uint8_t* src = pass % 2 == 0 ? img : tmp;  // img -> tmp -> img -> tmp, copied back below
    uint8_t* dst = pass % 2 == 0 ? tmp : img;
    for (size_t i = 0; i < row; ++i) window[i] = 0;
    for (int j = -r; j <= r; ++j) {
      const uint8_t* s = at(src, j);
      for (size_t i = 0; i < row; ++i) window[i] += s[i];
    }
    for (int y = 0; y < h; ++y) {
      const uint8_t* before = at(src, y - r - 1);
      const uint8_t* after = at(src, y + r + 1);
      box_row(window.data(), before, after, box.inner, box.edge, row, dst + (size_t)y * row);
      slide(window.data(), after, at(src, y - r), row);
    }
  }
  for (size_t i = 0; i < (size_t)h * row; ++i) img[i] = tmp[i];  // three passes ended in tmp
}

}  // namespace

float pil_box_radius(float sigma) {
  MOCO_CHECK(sigma > 0.f && sigma <= 100.f, "gaussian_blur: sigma ", sigma, " expected in (0, 100]");
  // The three boxes' variances add up to sigma^2; a box of integer radius l has variance l (l + 1) / 3, and the
  // fraction a moves it the rest of the way. Rounded as PIL rounds it: float, with the square root and the
  // floor taken in double, so that the box's fixed-point weights come out the same.
  const float var = sigma * sigma / (float)kBlurPasses;
  const float big_l = (float)std::sqrt(12.0 * (double)var + 1.0);
  const float l = (float)std::floor(((double)big_l - 1.0) / 2.0);
  float a = (2.f * l + 1.f) * (l * (l + 1.f) - 3.f * var);
  a = a / (6.f * (var - (l + 1.f) * (l + 1.f)));
  return l + a;
}

BlurBox pil_blur_box(float sigma) {
  const float r = pil_box_radius(sigma);
  BlurBox box;
  box.radius = (int)r;
  box.inner = (uint32_t)((float)(1u << 24) / (r * 2.f + 1.f));  // truncated, as PIL's assignment does
  box.edge = ((1u << 24) - (uint32_t)(2 * box.radius + 1) * box.inner) / 2;
  return box;
}

void gaussian_blur(uint8_t* hwc, int h, int w, float sigma) {
  MOCO_CHECK(h > 0 && w > 0, "gaussian_blur: image is ", h, "x", w, ", expected both sides > 0");
  const BlurBox box = pil_blur_box(sigma);
  const size_t values = (size_t)h * w * 3;
  thread_local std::vector<uint8_t> turned, tmp;  // (w, h, 3), scratch of either orientation
  turned.resize(values), tmp.resize(values);
  // along x as PIL does it, on the transposed image: then along y
  transpose_pixels(hwc, (size_t)w * 3, h, w, turned.data());
  box_passes_down(turned.data(), tmp.data(), w, (size_t)h * 3, box);
  transpose_pixels(turned.data(), (size_t)h * 3, w, h, hwc);
  box_passes_down(hwc, tmp.data(), h, (size_t)w * 3, box);
}

}  // namespace moco

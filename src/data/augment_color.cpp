// Colour ops of the augmentations: RandomGrayscale, ColorJitter's four adjustments and their random draw.
//
// The authors' transforms run on PIL images, so these are PIL's arithmetic on 8-bit (n, 3) RGB, in place:
// - grey levels are convert("L"): (19595 R + 38470 G + 7471 B + 2^15) >> 16;
// - brightness, contrast and saturation are ImageEnhance's Image.blend(degenerate, image, factor): per byte
//   d + factor (v - d) in float, truncated, and clamped to [0, 255] when the factor lies outside [0, 1]. The
//   degenerate image is black, the mean grey level rounded to an integer, and each pixel's grey level;
// - hue is torchvision's PIL path: convert("HSV"), the hue byte plus int(255 shift) modulo 256, and back,
//   with PIL's own conversions in the float and double arithmetic it writes.
// The per-pixel arithmetic is include/moco/pil_pixel.h's, shared with the device. Every operation is rounded
// as PIL's C code rounds it (this file is built with -ffp-contract=off), so the views are Pillow's bytes
// (tools/pil_color_fixtures.py, AugmentColor.MatchesPillowExactly).
#include <algorithm>
#include <cmath>

#include "moco/augment.h"
#include "moco/error.h"
#include "moco/pil_pixel.h"

namespace moco {

uint8_t hue_turn(float shift) { return (uint8_t)(int32_t)((double)shift * 255.0); }

void to_grayscale(uint8_t* rgb, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint8_t* p = rgb + i * 3;
    p[0] = p[1] = p[2] = (uint8_t)pil::luma(p);
  }
}

void adjust_brightness(uint8_t* rgb, int64_t n, float factor) {
  for (int64_t i = 0; i < 3 * n; ++i) rgb[i] = pil::blend(0, rgb[i], factor);
}

int mean_grey_level(const uint8_t* rgb, int64_t n) {
  if (n <= 0) return 0;
  uint64_t sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += pil::luma(rgb + i * 3);
  return pil::mean_level(sum, n);
}

void adjust_contrast(uint8_t* rgb, int64_t n, float factor) {
  const int mean = mean_grey_level(rgb, n);
  for (int64_t i = 0; i < 3 * n; ++i) rgb[i] = pil::blend(mean, rgb[i], factor);
}

void adjust_saturation(uint8_t* rgb, int64_t n, float factor) {
  for (int64_t i = 0; i < n; ++i) {
    uint8_t* p = rgb + i * 3;
    const int grey = (int)pil::luma(p);
    for (int c = 0; c < 3; ++c) p[c] = pil::blend(grey, p[c], factor);
  }
}

void adjust_hue(uint8_t* rgb, int64_t n, float shift) {
  const uint8_t turn = hue_turn(shift);
  for (int64_t i = 0; i < n; ++i) pil::shift_hue(rgb + i * 3, turn);
}

ColorJitterParams draw_color_jitter(float brightness, float contrast, float saturation, float hue, Rng& rng) {
  MOCO_CHECK(brightness >= 0.f && contrast >= 0.f && saturation >= 0.f,
             "ColorJitter: brightness ", brightness, ", contrast ", contrast, ", saturation ", saturation,
             " expected >= 0");
  MOCO_CHECK(hue >= 0.f && hue <= 0.5f, "ColorJitter: hue ", hue, " expected in [0, 0.5]");
  ColorJitterParams p;
  // A uniform permutation of the four ops (Fisher-Yates from the back), drawn before the factors as
  // torchvision's get_params does.
  for (int i = 3; i >= 1; --i) std::swap(p.order[i], p.order[rng.below((uint64_t)i + 1)]);
  // Every factor is drawn even when its strength is 0 (then its range is the single point 1, or 0 for hue),
  // so the stream layout does not depend on the strengths.
  auto factor = [&](float x) { return (float)rng.uniform(std::max(0.0, 1.0 - x), 1.0 + x); };
  p.brightness = factor(brightness);
  p.contrast = factor(contrast);
  p.saturation = factor(saturation);
  p.hue = (float)rng.uniform(-(double)hue, (double)hue);
  return p;
}

void apply_color_jitter(uint8_t* rgb, int64_t n, const ColorJitterParams& p) {
  for (int k = 0; k < 4; ++k) {
    switch (p.order[k]) {
      case 0: adjust_brightness(rgb, n, p.brightness); break;
      case 1: adjust_contrast(rgb, n, p.contrast); break;
      case 2: adjust_saturation(rgb, n, p.saturation); break;
      default: adjust_hue(rgb, n, p.hue); break;
    }
  }
}

}  // namespace moco
